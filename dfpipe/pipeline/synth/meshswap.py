"""Mesh swap: the source person's face rendered in the target's pose and expression.

FF++'s graphics-based FaceSwap fits a 3D face to both people and renders the source's
texture in the target's pose; with a Face Mesh on both faces the same needs no fitting.
Each target frame gets its own mesh (Face Mesh on the frame, in the region of the track's
box), lightly smoothed over time; the source's frontal crop is warped onto it triangle by
triangle (`meshwarp.py`), so the swapped face opens its mouth, blinks and turns with the
target. Where the source has nothing to give, the target keeps its own pixels: the mouth
opening (teeth, tongue), and the eyes when the source's are shut and the target's open.
The blend mask is drawn from the target's mesh, inside the face outline and inside the
warped source face, so no pixel from around the source face comes along.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

from dfpipe.pipeline.faces.topology import (
    BROW_IMAGE_LEFT,
    BROW_IMAGE_RIGHT,
    EYE_IMAGE_LEFT,
    EYE_IMAGE_RIGHT,
    LIPS_INNER,
    outline,
)
from dfpipe.pipeline.synth.meshwarp import (
    destination_inverse,
    mesh_triangles,
    rasterize,
    remap_into,
    remap_tables,
    triangle_affines,
)

#: One-Euro filter of the target's mesh over frames (Casiez et al. 2012, as MediaPipe smooths
#: its landmarks): cut-off in cycles per frame at rest (Face Mesh's pixel of jitter on a
#: still face is smoothed away) ...
MESH_MIN_CUTOFF = 0.04
#: ... raised by this much per face size per frame of a point's speed (a mouth opening or a
#: head turning passes with little lag) ...
MESH_BETA = 25.0
#: ... and the speed itself smoothed with this cut-off
MESH_SPEED_CUTOFF = 0.2
#: the blend mask stays this share of the face's size inside the outline (the jaw line,
#: where background meets the face, is the target's)
INSET = 0.04
#: the outline is pulled this far towards the face's centre before it is filled
SHRINK = 0.97
#: feather of the mask edge, as a share of the face's size
FEATHER = 0.035
#: the mask stops this share of the face's size above the brow tops: higher up, the mesh
#: outline reaches into the forehead, where a source's fringe or hairline would come along
#: (a fringe often starts right above the brows); the forehead stays the target's
FOREHEAD = 0.02
#: how much of the donor's face shape the swapped face takes (1 = all of it, 0 = the target's)
SHAPE = 1.0
#: a source eye shut below this share of the target's opening takes the target's eye
EYE_OPEN_RATIO = 0.6


def eye_opening(mesh: np.ndarray) -> tuple[float, float]:
    """Lid distance over eye width of the image-left and image-right eyes."""
    m = np.asarray(mesh, np.float64)[:, :2]

    def ratio(top: int, bottom: int, a: int, b: int) -> float:
        return float(np.linalg.norm(m[top] - m[bottom]) / max(np.linalg.norm(m[a] - m[b]), 1e-6))

    return ratio(159, 145, 33, 133), ratio(386, 374, 362, 263)


def mouth_opening(mesh: np.ndarray) -> float:
    """Inner-lip gap over the mouth's width (0 closed, about 0.5 wide open)."""
    m = np.asarray(mesh, np.float64)[:, :2]
    return float(np.linalg.norm(m[13] - m[14]) / max(np.linalg.norm(m[78] - m[308]), 1e-6))


def face_size(mesh: np.ndarray) -> float:
    """Outer eye corners to chin: a scale of the face in pixels."""
    m = np.asarray(mesh, np.float64)[:, :2]
    return float(np.linalg.norm(m[33] - m[263]) + np.linalg.norm((m[33] + m[263]) / 2 - m[152]))


@lru_cache(maxsize=1)
def opening_triangles() -> dict[str, np.ndarray]:
    """Triangles spanning the mouth opening and each eye opening (all corners on the ring)."""
    tri = mesh_triangles()
    return {name: np.isin(tri, ring).all(axis=1)
            for name, ring in (("mouth", LIPS_INNER), ("eye_left", EYE_IMAGE_LEFT), ("eye_right", EYE_IMAGE_RIGHT))}


def blend_mask(meshes: Sequence[np.ndarray], shape: tuple[int, ...], holes: list[tuple[int, ...]]) -> np.ndarray:
    """uint8 soft mask: inside the face outline of every mesh of `meshes` (the target's, and
    the one its face is moved to), inset and feathered, without the polygons of `holes`
    (rings of mesh points) of any of them. One blur for all: the intersection is taken hard."""
    frame_meshes = [np.asarray(m, np.float64)[:, :2] for m in meshes]
    size = face_size(frame_meshes[0])
    sigma = max(1.0, FEATHER * size)
    # work in the faces' box (plus the blur's reach), not the whole frame: 10x less to blur
    h, w = shape[:2]
    pad = int(3 * sigma) + 2
    x0, y0 = np.maximum(np.floor(np.min([m.min(0) for m in frame_meshes], axis=0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(np.max([m.max(0) for m in frame_meshes], axis=0)).astype(int) + pad, (w, h))
    out = np.zeros(shape[:2], np.uint8)
    if x1 <= x0 or y1 <= y0:
        return out
    hard = None
    for frame_pts in frame_meshes:
        pts = frame_pts - (x0, y0)
        one = np.zeros((y1 - y0, x1 - x0), np.uint8)
        ring = pts[list(outline())]
        centre = pts[[1, 168]].mean(0)  # between the nose tip and the bridge
        ring = centre + SHRINK * (ring - centre)  # off the temples and jaw, where hair and background meet the face
        cv2.fillPoly(one, [np.rint(ring * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        hard = one if hard is None else np.minimum(hard, one)
    inset = max(1, int(round(INSET * size)))
    hard = cv2.erode(hard, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * inset + 1,) * 2))
    for frame_pts in frame_meshes:
        pts = frame_pts - (x0, y0)
        for ring in holes:
            cv2.fillPoly(hard, [np.rint(pts[list(ring)] * 16).astype(np.int32)], 0, cv2.LINE_AA, shift=4)
        _cut_forehead(hard, pts, size)
    soft = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), sigma)
    # keep the soft edge inside the hard region: fully opaque deep inside, 0 at the outline
    out[y0:y1, x0:x1] = np.clip(np.minimum(soft * 2.0 - 255.0, hard.astype(np.float32)), 0, 255).astype(np.uint8)
    return out


def _face_up(pts: np.ndarray) -> np.ndarray:
    """Unit vector perpendicular to the eye line, from the chin towards the forehead."""
    eyes = pts[263] - pts[33]
    up = np.array([eyes[1], -eyes[0]]) / max(np.linalg.norm(eyes), 1e-6)
    return up if np.dot(pts[10] - pts[152], up) >= 0 else -up


def _cut_forehead(mask: np.ndarray, pts: np.ndarray, size: float) -> None:
    """Zero `mask` above a line parallel to the eyes, FOREHEAD x size above the brow tops."""
    up = _face_up(pts)
    brow_top = max(np.dot(pts[i], up) for i in (105, 334, 66, 296))
    limit = brow_top + FOREHEAD * size
    ys, xs = np.nonzero(mask)
    if len(xs):
        above = xs * up[0] + ys * up[1] > limit
        mask[ys[above], xs[above]] = 0


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 least-squares similarity (homogeneous) taking 2D points `src` onto `dst`."""
    from skimage.transform import SimilarityTransform

    tform = SimilarityTransform.from_estimate(src, dst)
    if not tform:
        raise ValueError("degenerate mesh: no similarity transform")
    return np.asarray(tform.params, np.float64)


def apply_similarity(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """N x 2 points through a 3x3 (homogeneous) similarity."""
    return pts @ matrix[:2, :2].T + matrix[:2, 2]


#: how far (cm on the canonical face) the donor's shape fades out towards the lips
SHAPE_FADE = 1.0


@lru_cache(maxsize=1)
def _shape_weights() -> np.ndarray:
    """Per mesh point, how much of the donor's shape it takes: 0 on the lips, rising smoothly
    to 1 about SHAPE_FADE away. The donor is one still frame, so its mouth shape is an
    expression (a smile), not identity: it stays the target's (shut eyes are handled apart)."""
    from dfpipe.pipeline.faces.topology import LIPS_OUTER, frontal_points

    pts = frontal_points()
    features = pts[list({*LIPS_OUTER, *LIPS_INNER})]
    d = np.linalg.norm(pts[:, None, :] - features[None, :, :], axis=-1).min(axis=1)
    w = 1.0 - np.exp(-0.5 * (d / SHAPE_FADE) ** 2)
    w.setflags(write=False)
    return w


def normalised(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(468 x 2 points with pose in the image plane removed, the 3x3 similarity that did
    it): the rigid points fitted onto the canonical face seen frontally."""
    from dfpipe.pipeline.faces.align import RIGID_MESH_POINTS
    from dfpipe.pipeline.faces.topology import frontal_points

    pts = np.asarray(mesh, np.float64)[:, :2]
    rigid = list(RIGID_MESH_POINTS)
    m = _similarity(pts[rigid], frontal_points()[rigid])
    return apply_similarity(m, pts), m


#: frames per Face Mesh forward when a track's meshes are computed ahead
MESH_BATCH = 16


def track_meshes(video_path, boxes: dict[int, np.ndarray], landmarks: dict[int, np.ndarray], mesher,
                 batch: int = MESH_BATCH) -> dict[int, np.ndarray]:
    """Face Mesh on every frame of a track, `batch` frames per forward (3x cheaper a face
    than one at a time): {frame index: 468 x 3 points}. One decode pass over the video."""
    from dfpipe.pipeline.video.decode import iter_frames

    out: dict[int, np.ndarray] = {}
    pending: list = []
    last = max(boxes) if boxes else -1

    def run() -> None:
        results = mesher.mesh_frames([f.image for f in pending],
                                     [np.asarray(boxes[f.index], np.float64).reshape(1, 4) for f in pending],
                                     [np.asarray(landmarks[f.index], np.float64).reshape(1, 5, 2) for f in pending])
        out.update({f.index: pts[0] for f, (pts, _) in zip(pending, results)})
        pending.clear()

    for frame in iter_frames(video_path):
        if frame.index > last:
            break
        if frame.index in boxes:
            pending.append(frame)
            if len(pending) >= batch:
                run()
    if pending:
        run()
    return out


def _alpha(cutoff: np.ndarray | float) -> np.ndarray | float:
    """Weight of the new sample in a one-pole low-pass of `cutoff` cycles per frame."""
    return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff))


class MeshFilter:
    """One-Euro filter over a face's meshes frame by frame: strong smoothing where a point
    is still, little where it moves. With the image's own shift of the face from the last
    frame (`shift`, say from `face_shift`), the filter predicts the mesh moved by it and
    smooths only what the shift does not explain: a camera's shake is followed exactly,
    Face Mesh's jitter on a still face is not. Speeds are in face sizes per frame, so the
    same settings serve a small face and a close-up."""

    def __init__(self, min_cutoff: float = MESH_MIN_CUTOFF, beta: float = MESH_BETA,
                 speed_cutoff: float = MESH_SPEED_CUTOFF) -> None:
        self.min_cutoff, self.beta, self.speed_cutoff = min_cutoff, beta, speed_cutoff
        self._last: tuple[int, np.ndarray, np.ndarray] | None = None  # frame, mesh, speed

    def __call__(self, frame_index: int, mesh: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
        mesh = np.asarray(mesh, np.float64)
        last = self._last
        if last is None or last[0] != frame_index - 1:  # a new run of frames starts afresh
            self._last = (frame_index, mesh, np.zeros(len(mesh)))
            return mesh
        _, previous, speed = last
        predicted = previous.copy()
        if shift is not None:
            predicted[:, :2] += shift
        size = max(face_size(previous), 1.0)
        residual = mesh - predicted
        raw_speed = np.linalg.norm(residual[:, :2], axis=1) / size
        speed = speed + _alpha(self.speed_cutoff) * (raw_speed - speed)
        out = predicted + _alpha(self.min_cutoff + self.beta * speed)[:, None] * residual
        self._last = (frame_index, out, speed)
        return out


#: side, pixels, of the face patch whose shift between frames `face_shift` measures
SHIFT_PATCH = 64


def face_patch(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The grey patch of `frame` in `box` (x0, y0, x1, y1), SHIFT_PATCH pixels a side."""
    x0, y0, x1, y1 = box
    grey = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1, :3]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (SHIFT_PATCH, SHIFT_PATCH), interpolation=cv2.INTER_AREA).astype(np.float32)


@lru_cache(maxsize=1)
def _hanning() -> np.ndarray:
    return cv2.createHanningWindow((SHIFT_PATCH, SHIFT_PATCH), cv2.CV_32F)


def face_shift(previous: np.ndarray, current: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The image's translation (x, y pixels) of the face between two `face_patch`es cut
    from the same `box` of consecutive frames (phase correlation: sub-pixel, a fraction of
    a millisecond)."""
    (dx, dy), _ = cv2.phaseCorrelate(previous, current, _hanning())
    x0, y0, x1, y1 = box
    return np.array([dx * (x1 - x0) / SHIFT_PATCH, dy * (y1 - y0) / SHIFT_PATCH])


class FrameMesh:
    """A target track's Face Mesh frame by frame (frames in order): `boxes` and the caller's
    landmarks place the region (batched ahead by `prepare` when the caller can), and the
    meshes are smoothed over time (`MeshFilter`)."""

    def __init__(self, boxes: dict[int, np.ndarray], mesher) -> None:
        self.boxes = boxes
        self.mesher = mesher
        self.filter = MeshFilter()
        self.meshes: dict[int, np.ndarray] = {}
        self._patch: tuple[int, tuple[int, int, int, int], np.ndarray] | None = None  # frame, box, patch

    def prepare(self, frames: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        """Face Mesh on the coming (index, image, landmarks) frames in one forward; meshes
        of frames already passed are dropped (memory stays flat)."""
        frames = [f for f in frames if f[0] in self.boxes]
        if not frames:
            return
        results = self.mesher.mesh_frames([img for _, img, _ in frames],
                                          [np.asarray(self.boxes[i], np.float64).reshape(1, 4) for i, _, _ in frames],
                                          [np.asarray(lm, np.float64).reshape(1, 5, 2) for _, _, lm in frames])
        first = frames[0][0]
        self.meshes = {k: v for k, v in self.meshes.items() if k >= first}
        self.meshes.update({i: pts[0] for (i, _, _), (pts, _) in zip(frames, results)})

    def __call__(self, frame: np.ndarray, frame_index: int, landmarks: np.ndarray) -> np.ndarray:
        mesh = self.meshes.get(frame_index)
        if mesh is None:
            box = np.asarray(self.boxes[frame_index], np.float64).reshape(1, 4)
            points, _ = self.mesher.mesh(frame, box, np.asarray(landmarks, np.float64).reshape(1, 5, 2))
            mesh = points[0]
        mesh = np.asarray(mesh, np.float64)
        shift = None
        patch = self._patch
        if patch is not None and patch[0] == frame_index - 1:
            shift = face_shift(patch[2], face_patch(frame, patch[1]), patch[1])
        out = self.filter(frame_index, mesh, shift)
        # the next frame's shift is measured in this frame's face box
        h, w = frame.shape[:2]
        lo, hi = out[:, :2].min(0), out[:, :2].max(0)
        pad = 0.1 * (hi - lo)
        x0, y0 = np.maximum(np.floor(lo - pad).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(hi + pad).astype(int), (w, h))
        box = (int(x0), int(y0), int(x1), int(y1))
        self._patch = (frame_index, box, face_patch(frame, box)) if x1 - x0 > 8 and y1 - y0 > 8 else None
        return out


#: donor cheek points whose lightness is the donor's skin
CHEEKS = (50, 280, 205, 425, 123, 352)
#: the band along the donor's face outline (a share of the face's size) where hair can hang
#: over the face: at the temples and across the forehead
HAIR_BAND = 0.15


def donor_hair(image: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """uint8 map of a donor crop: 0 where hair hangs over the face (in the band along the
    outline above the nose tip, much darker than the cheeks: 3 standard deviations and at least 25 levels of
    Lab lightness), 255 elsewhere. Brows and eyes are never hair. A donor whose hair is no
    darker than its skin loses nothing."""
    pts = np.asarray(mesh, np.float64)[:, :2]
    size = face_size(mesh)
    light = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    r = max(2, int(round(0.03 * size)))
    patches = [light[max(0, int(y) - r):int(y) + r + 1, max(0, int(x) - r):int(x) + r + 1].ravel()
               for x, y in pts[list(CHEEKS)]]
    skin = np.concatenate(patches)
    if skin.size < 10:
        return np.full(image.shape[:2], 255, np.uint8)
    dark = light < skin.mean() - max(3.0 * skin.std(), 25.0)
    face = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(face, [np.rint(pts[list(outline())]).astype(np.int32)], 255)
    inner = cv2.erode(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(HAIR_BAND * size) + 1,) * 2))
    features = np.zeros(image.shape[:2], np.uint8)
    for ring in (BROW_IMAGE_LEFT, BROW_IMAGE_RIGHT, EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT):
        cv2.fillPoly(features, [cv2.convexHull(np.rint(pts[list(ring)]).astype(np.int32))], 255)
    features = cv2.dilate(features, np.ones((2 * r + 1,) * 2, np.uint8))
    # hair hangs from above: only the band above the nose tip (a beard is the donor's, it stays)
    up = _face_up(pts)
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    upper = xs * up[0] + ys * up[1] > np.dot(pts[1], up)
    hair = dark & (face > 0) & (inner == 0) & (features == 0) & upper
    hair = cv2.dilate(hair.astype(np.uint8) * 255, np.ones((2 * r + 1,) * 2, np.uint8))
    return 255 - hair


class MeshSwapGenerator:
    """Renders one source face (a crop and its mesh in crop pixels) onto each target frame.

    `boxes` and the caller's landmarks of each target frame place the Face Mesh region
    (`mesher`: a `FaceMesher`); frames come in order, so the mesh is smoothed over time.
    Returns (fake foreground, uint8 soft blend mask) as the Composer's generators do.
    """

    name = "swap"
    mask_from_generator = True

    def __init__(self, source: np.ndarray, source_mesh: np.ndarray, boxes: dict[int, np.ndarray], mesher,
                 target_meshes: list[np.ndarray] | None = None,
                 shape: float = SHAPE, look=None) -> None:
        self.source = np.ascontiguousarray(source[..., :3])
        self.source_mesh = np.asarray(source_mesh, np.float64).reshape(-1, 3)
        self.target_mesh = FrameMesh(boxes, mesher)
        self._source_eyes = eye_opening(self.source_mesh)
        # hair over the donor's face is warped along with it and masked out
        self._source_hair = donor_hair(self.source, self.source_mesh)
        # feathered once in the donor's crop (the mask's edge width, at the donor's scale)
        self._feather = max(1.0, FEATHER * face_size(self.source_mesh))
        self._soft_hair = (cv2.GaussianBlur(self._source_hair, (0, 0), self._feather)
                           if (self._source_hair < 255).any() else self._source_hair)
        # what covers the target's face (`look`: an `occlusion.TargetLook`) stays in front: found
        # on the face atlas, carried to the donor's crop, warped with the donor's pixels
        self.look = look
        self._atlas_to_source = None
        if look is not None:
            from dfpipe.pipeline.synth.occlusion import atlas_to_crop_tables

            self._atlas_to_source = atlas_to_crop_tables(self.source_mesh, self.source.shape, look.size)
        # identity shape: the donor's face shape, the target's expression (its offsets from its
        # own mean shape over the track); `shape` 0 keeps the target's shape
        self.shape = shape if target_meshes else 0.0
        self._donor_shape = normalised(self.source_mesh)[0]
        self._shape_weight = _shape_weights()[:, None]
        self._target_mean = (np.mean([normalised(m)[0] for m in target_meshes], axis=0)
                             if target_meshes else None)


    def __call__(self, frame: np.ndarray, frame_index: int, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mesh = self.target_mesh(frame, frame_index, landmarks)
        openings = opening_triangles()
        own = openings["mouth"].copy()  # triangles whose pixels are the target's own
        for i, name in enumerate(("eye_left", "eye_right")):
            if self._source_eyes[i] < EYE_OPEN_RATIO * eye_opening(mesh)[i]:
                own |= openings[name]
        dst = self.with_donor_shape(mesh)
        fg = np.zeros(frame.shape[:2] + (3,), frame.dtype)  # (calloc: pages outside the face are never touched)
        mask = np.zeros(frame.shape[:2], np.uint8)
        raster = rasterize(dst, frame.shape)  # one raster, two sources
        if raster is None:
            return fg, mask
        roi = raster.roi
        local_shape = (roi[0].stop - roi[0].start, roi[1].stop - roi[1].start)
        local = (slice(0, local_shape[0]), slice(0, local_shape[1]))  # the roi in roi-sized maps
        valid = np.zeros(frame.shape[:2], np.uint8)
        hair_free = np.full(local_shape, 255, np.uint8)  # the donor's hair and occluders: 0
        tri = mesh_triangles()
        onto_dst = destination_inverse(dst, tri)
        donor = remap_tables(raster, triangle_affines(self.source_mesh, dst, tri, onto_dst), ~own)
        remap_into(fg, valid, self.source, *donor, roi)
        remap_into(hair_free, np.zeros(local_shape, np.uint8), self._source_keep(frame, mesh), *donor, local)
        # the target's mouth interior (and open eyes where the donor's are shut), moved with
        # the rest to where the donor-shaped mesh puts the mouth, so the lips meet around it
        target = remap_tables(raster, triangle_affines(mesh, dst, tri, onto_dst), own)
        remap_into(fg, valid, np.ascontiguousarray(frame[..., :3]), *target, roi)
        inside = cv2.erode(valid[roi], np.ones((5, 5), np.uint8))  # no black from past the source crop's edge
        # inside both outlines: the target's (its jaw line and background stay) and the moved one;
        # the mouth opening is the target's frame itself: not colour-shifted, not resampled
        mask[roi] = np.minimum(blend_mask([mesh, dst], frame.shape, [LIPS_INNER])[roi], inside)
        # hair and occluders, feathered in the donor's crop like the mask's edge, warped with it
        mask[roi] = np.minimum(mask[roi], hair_free)
        return fg, mask

    def _source_keep(self, frame: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        """uint8 soft map over the donor's crop of the pixels it gives this frame: 0 on its
        hair and where an occluder covers the target's face, feathered as the mask's edge."""
        if self._atlas_to_source is None:
            return self._soft_hair
        covered = self.look.occluded(frame, mesh)
        if not covered.any():
            return self._soft_hair
        on_source = cv2.remap(covered, *self._atlas_to_source, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return np.minimum(self._soft_hair, cv2.GaussianBlur(255 - on_source, (0, 0), self._feather))

    def prepare_frames(self, frames: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        """Batch the coming frames' Face Mesh (see `FrameMesh.prepare`)."""
        self.target_mesh.prepare(frames)

    def with_donor_shape(self, mesh: np.ndarray) -> np.ndarray:
        """The target's mesh with the donor's face shape: donor shape + the target's
        expression offsets, placed back in the target's pose (z kept for drawing order)."""
        if not self.shape:
            return mesh
        norm, m = normalised(mesh)
        moved = norm + self.shape * self._shape_weight * (self._donor_shape - self._target_mean)
        out = np.array(mesh, np.float64, copy=True)
        out[:, :2] = apply_similarity(np.linalg.inv(m), moved)
        return out
