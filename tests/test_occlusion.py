"""Occluders stay in front of a mesh swap: the shared FF++ newsreader with a real photo of a
cup (skimage's coffee) slid across his lower face for frames 40-75 (composited where the
test knows, encoded with x264), and a public-domain donor (skimage's astronaut)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dfpipe.manifests.codec import decode_image
from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.pipeline.video.decode import iter_frames, probe
from dfpipe.pipeline.video.writing import write_video

from conftest import make_donor_dataset

pytestmark = pytest.mark.slow
N_FRAMES = 100
COVERED = range(40, 76)
CUP_SIZE = (84, 96)  # w, h


def _cup_at(index: int) -> tuple[int, int]:
    """Top-left corner of the cup in frame `index`: it slides across the lower face."""
    return 688 + 4 * (index - 40), 204


def _cup_rgba() -> np.ndarray:
    import skimage.data

    im = skimage.data.coffee()[20:300, 170:415]
    h, w = im.shape[:2]
    alpha = np.zeros((h, w), np.uint8)
    cv2.ellipse(alpha, (w // 2, h // 2 - 5), (w // 2 - 8, h // 2 - 12), 0, 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 2)
    return cv2.resize(np.dstack([im, alpha]), CUP_SIZE, interpolation=cv2.INTER_AREA)


def _cup_mask(index: int, shape: tuple[int, ...]) -> np.ndarray:
    """bool: where the cup covers frame `index`."""
    out = np.zeros(shape[:2], bool)
    if index in COVERED:
        x, y = _cup_at(index)
        out[y:y + CUP_SIZE[1], x:x + CUP_SIZE[0]] = _cup_rgba()[..., 3] > 128
    return out


@pytest.fixture(scope="module")
def reals(tmp_path_factory, real_video, retinaface_weights):
    root = tmp_path_factory.mktemp("occlusion")
    rgba = _cup_rgba()
    alpha = rgba[..., 3:].astype(np.float32) / 255.0

    def covered():
        for frame in iter_frames(real_video):
            if frame.index >= N_FRAMES:
                return
            image = frame.image.copy()
            if frame.index in COVERED:  # the cup photo in front of the face, where _cup_at says
                x, y = _cup_at(frame.index)
                region = image[y:y + CUP_SIZE[1], x:x + CUP_SIZE[0]].astype(np.float32)
                image[y:y + CUP_SIZE[1], x:x + CUP_SIZE[0]] = (alpha * rgba[..., :3] + (1 - alpha) * region).round().astype(np.uint8)
            yield image

    write_video(covered(), root / "cup.mp4", fps=probe(real_video).fps, crf=18)
    return make_donor_dataset(root, root / "cup.mp4")


def _video(ds, name: str) -> dict:
    videos = read_table(ds, "videos", VIDEOS_SCHEMA).to_pandas()
    return videos[videos.path.str.contains(name)].iloc[0].to_dict()


def test_the_overlay_moves_as_the_test_thinks(reals):
    """The truth the other tests compare with: the cup's pixels are where `_cup_mask` says."""
    frames = {f.index: f.image for f in iter_frames(reals / _video(reals, "cup")["path"]) if f.index in (30, 50)}
    x, y = _cup_at(50)
    rgba = _cup_rgba()
    solid = rgba[..., 3] == 255
    on_frame = lambda im: im[y:y + CUP_SIZE[1], x:x + CUP_SIZE[0]].astype(float)[solid]  # noqa: E731
    cup = rgba[..., :3].astype(float)[solid]
    assert np.abs(on_frame(frames[50]) - cup).mean() < 8  # there, up to yuv420 and x264
    assert np.abs(on_frame(frames[30]) - cup).mean() > 40  # not before frame 40


def test_target_look_finds_the_cup_and_nothing_on_the_plain_frames(reals):
    from dfpipe.pipeline.faces.align import transform_mesh
    from dfpipe.pipeline.faces.rows import face_mesher
    from dfpipe.pipeline.synth.meshswap import track_meshes
    from dfpipe.pipeline.synth.occlusion import TargetLook, evenly, unwarp
    from dfpipe.pipeline.synth.track import plan_track

    video = _video(reals, "cup")
    rows = read_table(reals, "faces", FACES_SCHEMA).to_pandas()
    rows = sorted(rows[rows.video_id == video["video_id"]].to_dict("records"), key=lambda r: r["frame_index"])
    look = TargetLook([(decode_image(r["image"]), transform_mesh(r["mesh"], r["matrix"])) for r in evenly(rows)])
    plan = plan_track(rows, n_frames=N_FRAMES)
    meshes = track_meshes(reals / video["path"], plan.boxes, plan.landmarks, face_mesher("cpu"))
    plain, recall, precision = [], [], []
    for frame in iter_frames(reals / video["path"]):
        mesh = meshes.get(frame.index)
        if mesh is None:
            continue
        found = look.occluded(frame.image, mesh) > 0
        if frame.index not in COVERED:
            plain.append(found[look.region].mean())
            continue
        truth = unwarp(np.repeat(_cup_mask(frame.index, frame.image.shape)[..., None] * np.uint8(255), 3, 2), mesh)[0][..., 0]
        truth = (truth > 128) & look.region  # Lab lightness of the white mask
        if truth.sum() < 0.02 * look.region.sum():  # the cup past the cheek, off the tested face
            continue
        recall.append((found & truth).sum() / max(truth.sum(), 1))
        grown = cv2.dilate(truth.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0  # the margin is on purpose
        precision.append((found & grown).sum() / max(found.sum(), 1))
    print("PLAIN", [(i, round(v, 3)) for i, v in enumerate(plain) if v > 0], "RECALL", np.median(recall), min(recall), "PREC", np.median(precision), min(precision))
    assert len(plain) >= 60 and len(recall) >= 30
    assert np.mean(np.array(plain) > 0) <= 0.05 and max(plain) < 0.05, plain
    assert np.median(recall) >= 0.85 and min(recall) >= 0.6, recall
    assert np.median(precision) >= 0.9, precision


@pytest.fixture(scope="module")
def fakes(reals, tmp_path_factory):
    """{occluders on/off: path of the lossless mesh swap}."""
    from dfpipe.pipeline.synth import SynthConfig, synthesize

    pairs = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    pairs.write_text(f"target_video_id,source_video_id\n{_video(reals, 'cup')['video_id']},{_video(reals, 'astro')['video_id']}\n")
    out = {}
    for occluders in (True, False):
        ds2 = pairs.parent / f"occluders-{occluders}"
        config = SynthConfig(pairs_file=str(pairs), qualities=("c0",), occluders=occluders)
        assert synthesize(reals, ds2, config, workers=0, progress=False).n_ok == 1
        (row,) = read_table(ds2, "videos", VIDEOS_SCHEMA).to_pandas().query("label == 'fake'").to_dict("records")
        out[occluders] = ds2 / row["path"]
    return out


def test_the_cup_stays_in_front_of_the_swapped_face(reals, fakes):
    real = {f.index: f.image for f in iter_frames(reals / _video(reals, "cup")["path"])}
    on = {f.index: f.image for f in iter_frames(fakes[True])}
    off = {f.index: f.image for f in iter_frames(fakes[False])}
    kept, painted, plain_same = [], [], []
    for i in range(N_FRAMES):
        a, b, c = (x[i].astype(float) for x in (real, on, off))
        if i in COVERED:
            cup = cv2.erode(_cup_mask(i, a.shape).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
            kept.append(np.abs(a - b).mean(-1)[cup].mean())
            painted.append(np.abs(a - c).mean(-1)[cup].mean())
        else:
            plain_same.append(np.abs(b - c).max())
    assert np.median(kept) < 4.0, kept  # lossless: the cup is the real frame's
    assert np.median(painted) > 10.0, painted  # without: the donor's skin over it
    assert np.median(plain_same) < 2.0, plain_same  # nothing covers: the same fake
