"""Masks from the face mesh: the canonical topology's regions, mesh masks on real faces
(shared photos, a strongly turned FF++ frame), pair masks bounded by the mesh on the shared
NeuralTextures pair, and the masks stage's mesh fallback on an extracted dataset."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from dfpipe.pipeline.faces import topology as topo
from dfpipe.pipeline.faces.align import align_matrix, transform_points, warp_crop
from dfpipe.pipeline.faces.mesh import (
    EYE_RING_IMAGE_LEFT,
    EYE_RING_IMAGE_RIGHT,
    MOUTH_CORNER_IMAGE_LEFT,
    MOUTH_CORNER_IMAGE_RIGHT,
    NOSE_TIP,
    FaceMesher,
    canonical_face,
)
from dfpipe.pipeline.masks import facemask as fm
from dfpipe.pipeline.masks.pairmask import (
    PairMaskConfig,
    face_region_mask,
    grow_region,
    mesh_mask,
    mesh_pair_mask,
)
from dfpipe.pipeline.video.decode import Sampling, iter_frames
from conftest import make_pair_dataset

PHOTOS = ("fr_two_people.jpg", "fd1mb_kids_group.jpg", "fr_johnsnow_test1.jpg", "fr_kit_with_rose.jpg")
PAIR_FRAMES = (30, 150, 270)
SIZE = 256


@pytest.fixture(scope="module")
def mesher():
    return FaceMesher()


def _edges() -> set[tuple[int, int]]:
    _, triangles = canonical_face()
    return {(int(min(a, b)), int(max(a, b))) for t in triangles for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}


def _ring_edges(ring: tuple[int, ...]) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in zip(ring, ring[1:] + ring[:1])}


def _raster(points: np.ndarray, scale: float = 20.0) -> tuple[np.ndarray, int]:
    """Frontal canonical points (cm) in pixels of a 400 x 400 image."""
    shift = np.array([200.0, 200.0])
    return points * scale + shift, 400


# --------------------------------------------------------------------------- topology


def test_outline_is_the_one_closed_boundary_loop():
    loop = topo.outline()
    # MediaPipe's FACE_OVAL has 36 vertices; the triangulation's boundary is exactly that loop
    assert len(loop) == 36 == len(set(loop)) == len(topo.boundary_edges())
    assert _ring_edges(loop) == set(topo.boundary_edges())
    v, _ = canonical_face()
    assert loop[0] == int(np.argmax(v[:, 1])) == 10  # top of the forehead
    assert 152 in loop  # the chin
    # the frontal outline polygon bounds the whole triangulation: its fill equals the union
    pts, side = _raster(topo.frontal_points())
    polygon = np.zeros((side, side), np.uint8)
    cv2.fillPoly(polygon, [np.rint(pts[list(loop)] * 16).astype(np.int32)], 255, shift=4)
    union = fm.mesh_hull_mask(pts, (side, side), "full")
    iou = ((polygon > 0) & (union > 0)).sum() / ((polygon > 0) | (union > 0)).sum()
    assert iou > 0.99


def test_named_rings_follow_mesh_edges():
    edges = _edges()
    for ring in (topo.LIPS_OUTER, topo.LIPS_INNER, topo.EYE_IMAGE_LEFT, topo.EYE_IMAGE_RIGHT,
                 topo.BROW_IMAGE_LEFT, topo.BROW_IMAGE_RIGHT):
        assert _ring_edges(ring) <= edges, ring
    assert set(EYE_RING_IMAGE_LEFT) <= set(topo.EYE_IMAGE_LEFT)
    assert set(EYE_RING_IMAGE_RIGHT) <= set(topo.EYE_IMAGE_RIGHT)
    assert {MOUTH_CORNER_IMAGE_LEFT, MOUTH_CORNER_IMAGE_RIGHT} <= set(topo.LIPS_OUTER)
    front = topo.frontal_points()
    # the mouth opening lies inside the outer lips; brows above the eyes, eyes above the nose tip
    outer = front[list(topo.LIPS_OUTER)].astype(np.float32)
    assert all(cv2.pointPolygonTest(outer, tuple(map(float, front[i])), False) > 0 for i in topo.LIPS_INNER)
    for brow, eye in ((topo.BROW_IMAGE_LEFT, topo.EYE_IMAGE_LEFT), (topo.BROW_IMAGE_RIGHT, topo.EYE_IMAGE_RIGHT)):
        assert front[list(brow), 1].mean() < front[list(eye), 1].min()
        assert front[list(eye), 1].max() < front[NOSE_TIP, 1]
    assert front[topo.EYE_IMAGE_LEFT[0], 0] < front[topo.EYE_IMAGE_RIGHT[0], 0]  # image-left first


def test_regions_are_parts_of_the_face():
    full = {tuple(t) for t in topo.region_triangles("full").tolist()}
    front = topo.frontal_points()
    eye_line = front[[topo.EYE_IMAGE_LEFT[0], topo.EYE_IMAGE_RIGHT[0]], 1].mean()
    brows = front[list(topo.BROW_IMAGE_LEFT + topo.BROW_IMAGE_RIGHT), 1]
    for region in ("no_forehead", "inner"):
        tris = topo.region_triangles(region)
        assert {tuple(t) for t in tris.tolist()} < full
    # no_forehead: nothing above the upper eyelids (well below the brows), but the chin
    nf = topo.region_triangles("no_forehead")
    assert front[nf, 1].mean(axis=1).min() > brows.max()
    assert 152 in topo.region_vertices("no_forehead")
    assert front[nf, 1].mean(axis=1).min() > eye_line - 1.0
    # inner: brows, eyes, nose, mouth, no outline (jaw line, temples) vertex
    inner = set(topo.region_vertices("inner"))
    assert set(topo.LIPS_OUTER) | {NOSE_TIP} | set(topo.EYE_IMAGE_LEFT) <= inner
    assert not inner & set(topo.outline())
    with pytest.raises(ValueError, match="region"):
        topo.region_triangles("chin")


# --------------------------------------------------------------------------- mesh masks on photos


def _faces(photo, detector, mesher, name):
    image = photo(name)[..., :3]
    det = detector.detect([image])[0]
    points, scores = mesher.mesh(image, det.boxes, det.landmarks)
    keep = scores > 0.5
    return image, det.boxes[keep], det.landmarks[keep], points[keep]


def _grown_box(box: np.ndarray, shape: tuple[int, ...], grow: float = 0.15) -> np.ndarray:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    inside = np.zeros(shape[:2], bool)
    inside[max(0, int(y1 - grow * h)):int(y2 + grow * h) + 1, max(0, int(x1 - grow * w)):int(x2 + grow * w) + 1] = True
    return inside


@pytest.mark.parametrize("name", PHOTOS)
def test_mesh_mask_covers_the_face_and_stays_on_it(photo, detector, mesher, name):
    image, boxes, landmarks, points = _faces(photo, detector, mesher, name)
    assert len(boxes) >= 1
    for box, lm, pts in zip(boxes, landmarks, points):
        masks = {r: fm.mesh_hull_mask(pts[:, :2], image.shape, r) > 0 for r in fm.REGIONS}
        full = masks["full"]
        for x, y in np.rint(lm).astype(int):
            assert full[y, x], "every RetinaFace point lies on the mesh face"
        on = full[np.clip(np.rint(pts[:, 1]).astype(int), 0, image.shape[0] - 1),
                  np.clip(np.rint(pts[:, 0]).astype(int), 0, image.shape[1] - 1)]
        assert on.mean() > 0.95, "the mesh points lie inside their own outline"
        # the skin between the eyes and the mouth is inside, the background is not
        core = np.zeros(image.shape[:2], np.uint8)
        cv2.fillConvexPoly(core, np.rint(lm).astype(np.int32), 255)
        assert full[core > 0].all()
        assert (full & ~_grown_box(box, image.shape)).sum() < 0.02 * full.sum()
        # about the old mean-face fit's size where the face is frontal, not a sliver or a blob
        old = fm.landmark_hull_mask(lm, image.shape) > 0
        assert (full & old).sum() / (full | old).sum() > 0.6
        # regions nest: both are cut to the full face; inner's part below the eyes is in no_forehead
        assert not (masks["no_forehead"] & ~full).any() and not (masks["inner"] & ~full).any()
        assert 0.3 * full.sum() < masks["no_forehead"].sum() < 0.9 * full.sum()
        assert 0.2 * full.sum() < masks["inner"].sum() < 0.9 * full.sum()
        eye_y = int(lm[:2, 1].max())
        below = masks["inner"].copy()
        below[:eye_y] = False
        assert (below & masks["no_forehead"]).sum() > 0.9 * below.sum()
        assert np.nonzero(masks["no_forehead"])[0].min() > np.nonzero(full)[0].min()


@pytest.fixture(scope="module")
def turned_face(real_video, detector, mesher):
    """Frame 15 of the shared FF++ real video: the face turned about 30 degrees towards the
    image's left, in front of a blue studio background."""
    frame = next(f.image for f in iter_frames(real_video, Sampling(every=15)) if f.index == 15)
    det = detector.detect([frame])[0]
    points, _ = mesher.mesh(frame, det.boxes[:1], det.landmarks[:1])
    return frame, det.boxes[0], det.landmarks[0], points[0]


def _blue(image: np.ndarray) -> np.ndarray:
    """The studio background of the FF++ clip: blue well above red (skin and hair are not)."""
    rgb = image.astype(np.int32)
    return rgb[..., 2] > rgb[..., 0] + 40


def test_mesh_mask_follows_a_turned_face(turned_face):
    from dfpipe.pipeline.faces.mesh import canonical_face, head_pose

    frame, box, lm, pts = turned_face
    yaw, _, _ = head_pose(pts, frame.shape, canonical_face()[0])
    assert yaw < -20, "the face is turned towards the image's left"
    mesh = fm.mesh_hull_mask(pts[:, :2], frame.shape) > 0
    old = fm.landmark_hull_mask(lm, frame.shape) > 0
    blue = _blue(frame)
    # the mean face fitted to 5 points spills onto the background beside the turned cheek;
    # the mesh's outline stays on the face
    assert (mesh & blue).sum() < 0.01 * mesh.sum()
    assert (old & blue).sum() > 3 * max(1, (mesh & blue).sum())
    # towards the turn it ends at the far cheek's edge (the detector's box edge there),
    # shortly past the nose tip; the mean face reaches well into the background
    nose_x = pts[NOSE_TIP, 0]
    width = box[2] - box[0]
    left = np.nonzero(mesh.any(axis=0))[0].min()
    assert left < nose_x and nose_x - left < 0.25 * width
    assert left > box[0] - 0.05 * width
    assert np.nonzero(old.any(axis=0))[0].min() < box[0] - 0.1 * width


# --------------------------------------------------------------------------- pair masks


@pytest.fixture(scope="module")
def nt_pairs(real_video, fake_video, detector, mesher):
    """(real crop, fake crop, mesh in crop pixels) of the NeuralTextures pair at a few frames:
    the mesh comes from the real frame, both frames are cropped with one matrix."""
    pick = Sampling(every=30)
    real = {f.index: f.image for f in iter_frames(real_video, pick) if f.index in PAIR_FRAMES}
    fake = {f.index: f.image for f in iter_frames(fake_video, pick) if f.index in PAIR_FRAMES}
    out = []
    for index in PAIR_FRAMES:
        det = detector.detect([real[index]])[0]
        points, _ = mesher.mesh(real[index], det.boxes[:1], det.landmarks[:1])
        m = align_matrix(det.landmarks[0], SIZE)
        crop_pts = transform_points(points[0][:, :2], m)
        np.testing.assert_allclose(mesh_mask(points[0].reshape(-1), m, SIZE), fm.mesh_hull_mask(crop_pts, (SIZE, SIZE)))
        out.append((warp_crop(real[index], m, SIZE), warp_crop(fake[index], m, SIZE), crop_pts))
    return out


def test_neural_textures_mask_is_one_filled_region_on_the_lower_face(nt_pairs):
    config = PairMaskConfig()
    for real, fake, pts in nt_pairs:
        face = fm.mesh_hull_mask(pts, (SIZE, SIZE))
        mask = mesh_pair_mask(real, fake, face, config)
        binary = (mask > 0).astype(np.uint8)
        n, _ = cv2.connectedComponents(binary, connectivity=8)
        assert n == 2, "one region"
        contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        assert (hierarchy[0][:, 3] < 0).all(), "no holes"
        filled = np.zeros_like(binary)
        cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
        assert (filled == binary).all()
        assert 0.02 < binary.mean() < 0.3, "a lower-face-sized region"
        ys, xs = np.nonzero(binary)
        assert ys.mean() > pts[NOSE_TIP, 1], "centred below the nose tip"
        assert (ys > pts[list(topo.EYE_IMAGE_LEFT + topo.EYE_IMAGE_RIGHT), 1].max()).mean() > 0.95, "below the eyes"
        # inside the mesh's face grown by mesh_within_face only (a moving jaw changes the
        # pixels just outside its outline too: up to 13% of the mask lies in that band here)
        assert not (binary & (grow_region(face, config.mesh_within_face) == 0)).any()
        assert (binary & (face == 0)).sum() < 0.2 * binary.sum()
        # the mouth itself is covered
        mouth = np.rint(pts[list(topo.LIPS_INNER)].mean(0)).astype(int)
        assert np.hypot(*(np.array([xs.mean(), ys.mean()]) - mouth)) < 0.12 * SIZE


def test_mesh_pair_mask_covers_a_swapped_face(nt_pairs):
    """A face swap (Grace Hopper's aligned face blended over the real crop through the
    mesh's no_forehead region): the recovered mask is that region, as one piece."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = cv2.cvtColor(cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    from dfpipe.pipeline.faces.detect import load_detector

    [det] = load_detector().detect([grace])
    donor = warp_crop(grace, align_matrix(det.landmarks[0], SIZE), SIZE)
    for real, _, pts in nt_pairs:
        region = fm.mesh_hull_mask(pts, (SIZE, SIZE), "no_forehead")
        alpha = cv2.GaussianBlur(region.astype(np.float32) / 255.0, (0, 0), 3)[..., None]
        fake = (real * (1 - alpha) + donor * alpha).astype(np.uint8)
        mask = mesh_pair_mask(real, fake, fm.mesh_hull_mask(pts, (SIZE, SIZE))) > 0
        iou = (mask & (region > 0)).sum() / (mask | (region > 0)).sum()
        assert iou > 0.75
        assert cv2.connectedComponents(mask.astype(np.uint8))[0] == 2


def test_face_region_prefers_the_mesh(nt_pairs, turned_face):
    frame, _, lm, pts = turned_face
    m = align_matrix(lm, SIZE)
    mask, source = face_region_mask(pts.reshape(-1), lm.reshape(-1), m, SIZE)
    assert source == "mesh" and (mask == fm.mesh_hull_mask(transform_points(pts[:, :2], m), (SIZE, SIZE))).all()
    mask, source = face_region_mask(None, lm.reshape(-1), m, SIZE)
    assert source == "landmarks" and mask.any()
    assert face_region_mask(None, None, m, SIZE) is None
    with pytest.raises(ValueError, match="468"):
        fm.mesh_hull_mask(pts[:100, :2], frame.shape)


# --------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def mesh_pair_dataset(tmp_path_factory, real_video, fake_video, retinaface_weights):
    """The shared FF++ pair ingested as real + fake and extracted with the mesh (3 frames)."""
    return make_pair_dataset(tmp_path_factory.mktemp("meshmasks"), real_video, fake_video)


def _fake_part(ds):
    from dfpipe.manifests.parts import part_path, read_table
    from dfpipe.manifests.schema import VIDEOS_SCHEMA

    videos = read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist()
    fake = next(v for v in videos if v["label"] == "fake")
    real = next(v for v in videos if v["label"] == "real")
    return part_path(ds, "faces", fake["video_id"]), part_path(ds, "faces", real["video_id"])


def _masked_rows(ds):
    from dfpipe.manifests.parts import read_table
    from dfpipe.manifests.schema import FACES_SCHEMA, MASKS_SCHEMA

    fake_path, _ = _fake_part(ds)
    return pq.read_table(fake_path, schema=FACES_SCHEMA).to_pylist(), read_table(ds, "masks", MASKS_SCHEMA).to_pylist()


def test_stage_pair_masks_lie_on_the_mesh_face(mesh_pair_dataset, tmp_path):
    from dfpipe.manifests.codec import decode_image
    from dfpipe.pipeline.masks.stage import mask_sources, masks

    ds = tmp_path / "ds"
    shutil.copytree(mesh_pair_dataset, ds)
    summary = masks(ds, workers=0, progress=False)
    assert mask_sources(summary) == {"pair": 3}
    rows, (marker,) = _masked_rows(ds)
    assert (marker["n_pair"], marker["n_mesh"], marker["n_landmarks"]) == (3, 0, 0)
    config = PairMaskConfig()
    for row in rows:
        assert row["mesh"] is not None
        face = mesh_mask(row["mesh"], row["matrix"], row["size"])
        mask = decode_image(row["mask"])
        mask = mask[..., 0] if mask.ndim == 3 else mask
        assert not ((mask > 0) & (grow_region(face, config.mesh_within_face) == 0)).any()


def test_stage_falls_back_to_the_mesh_then_the_landmarks(mesh_pair_dataset, tmp_path):
    from dfpipe.manifests.codec import decode_image
    from dfpipe.pipeline.masks.stage import mask_sources, masks

    # no real pair: every face gets its mesh's outline, source "mesh"
    ds = tmp_path / "ds"
    shutil.copytree(mesh_pair_dataset, ds)
    fake_path, real_path = _fake_part(ds)
    real_path.unlink()
    summary = masks(ds, workers=0, progress=False)
    assert mask_sources(summary) == {"mesh": 3}
    rows, (marker,) = _masked_rows(ds)
    assert (marker["n_mesh"], marker["n_landmarks"], marker["n_pair"]) == (3, 0, 0)
    for row in rows:
        mask = decode_image(row["mask"])
        mask = mask[..., 0] if mask.ndim == 3 else mask
        assert ((mask > 127) == (mesh_mask(row["mesh"], row["matrix"], row["size"]) > 0)).mean() > 0.99

    # an older part without the mesh column: the mean face on the 5 points, source "landmarks"
    ds2 = tmp_path / "ds2"
    shutil.copytree(mesh_pair_dataset, ds2)
    fake_path, real_path = _fake_part(ds2)
    real_path.unlink()
    table = pq.read_table(fake_path)
    old = table.drop_columns(["mesh"])
    pq.write_table(old, fake_path)
    assert "mesh" not in pq.read_schema(fake_path).names
    summary = masks(ds2, workers=0, progress=False)
    assert mask_sources(summary) == {"landmarks": 3}
    rows, (marker,) = _masked_rows(ds2)
    assert marker["n_landmarks"] == 3 and not marker["n_mesh"]
    assert all(r["mask_source"] == "landmarks" and r["mesh"] is None for r in rows)
