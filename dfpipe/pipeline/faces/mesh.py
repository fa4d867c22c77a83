"""Face Mesh on frames and head pose from it.

MediaPipe's Face Mesh network sees a 192 x 192 crop: a square around the face, rotated so
the eyes are level (the network was trained on upright faces, so feeding it a tilted one
costs accuracy). `mesh_region_matrix` builds that crop's 2x3 matrix from a detector's box
and 5 points, `FaceMesher` runs the network on all faces of a frame at once, and
`points_to_frame` maps the 468 points back to frame pixels.

Head pose is a fit of the canonical face (`canonical_face_model.obj`, read in place by
`load_canonical_model`; vertex i is point i of the network) to the 468 image points with
`cv2.solvePnP`; see `head_pose` for the sign convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from dfpipe.models import create_model

MESH_SIZE = 192
NUM_POINTS = 468
#: Crop side as a multiple of the box's larger side (MediaPipe's region is about 1.5 x).
REGION_SCALE = 1.5

#: Named vertices of the canonical topology, image-left first for a frontal face (the
#: person's right eye is on the image's left), matching RetinaFace's 5-point order.
EYE_RING_IMAGE_LEFT = (33, 133, 160, 159, 158, 144, 145, 153)
EYE_RING_IMAGE_RIGHT = (263, 362, 387, 386, 385, 373, 374, 380)
NOSE_TIP = 1
MOUTH_CORNER_IMAGE_LEFT = 61
MOUTH_CORNER_IMAGE_RIGHT = 291


# --------------------------------------------------------------------------- crop geometry


def mesh_region_matrix(
    box: Sequence[float] | np.ndarray,
    landmarks5: np.ndarray,
    size: int = MESH_SIZE,
    scale: float = REGION_SCALE,
) -> np.ndarray:
    """2x3 float64 affine from frame pixels to the `size` x `size` network input.

    The crop is a square centred on the box (x1 y1 x2 y2), side `scale` x its larger side,
    rotated about that centre so the line from landmarks5[0] (image-left eye) to
    landmarks5[1] (image-right eye) comes out horizontal, left eye on the left. Only the
    eyes are used for the angle because they are the detector's steadiest points.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    pts = np.asarray(landmarks5, dtype=np.float64).reshape(-1, 2)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    side = scale * max(x2 - x1, y2 - y1)
    if side <= 0:
        raise ValueError(f"empty face box {box!r}")
    dx, dy = pts[1] - pts[0]
    angle = math.atan2(dy, dx)  # eye line's angle in the image (y down)
    s = size / side
    c, n = math.cos(angle) * s, math.sin(angle) * s
    # p_crop = s * R(-angle) (p - centre) + size / 2
    return np.array(
        [
            [c, n, size / 2.0 - (c * cx + n * cy)],
            [-n, c, size / 2.0 - (-n * cx + c * cy)],
        ],
        dtype=np.float64,
    )


def points_to_frame(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Network points (..., 468, 3) in crop pixels -> frame pixels, float32.

    x and y go through the inverse of `matrix`; z (depth in the crop's pixel scale) is
    multiplied by the same crop-to-frame scale, so depth stays comparable with x and y.
    """
    pts = np.asarray(points, dtype=np.float64)
    inv = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
    out = np.empty_like(pts)
    out[..., :2] = pts[..., :2] @ inv[:, :2].T + inv[:, 2]
    out[..., 2] = pts[..., 2] * math.sqrt(abs(np.linalg.det(inv[:, :2])))
    return out.astype(np.float32)


# --------------------------------------------------------------------------- the network on frames


class FaceMesher:
    """Face Mesh over the faces of a frame: one crop per face, one forward per frame."""

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        device: str | torch.device = "cpu",
        scale: float = REGION_SCALE,
    ) -> None:
        self.device = torch.device(device)
        model = model if model is not None else create_model("facemesh", pretrained=True)
        # channels-last runs this depthwise network 2.4x faster on CPU (1.6 vs 4.0 ms a face)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.scale = scale

    def crops(self, frame_rgb: np.ndarray, boxes: np.ndarray, landmarks5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 192, 192, 3) uint8 crops and their (N, 2, 3) matrices, border filled black
        (MediaPipe's own choice when the region leaves the frame)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, MESH_SIZE, MESH_SIZE, 3), np.uint8), np.zeros((0, 2, 3))
        landmarks5 = np.asarray(landmarks5, dtype=np.float64).reshape(len(boxes), -1, 2)
        mats = np.stack([mesh_region_matrix(b, l, MESH_SIZE, self.scale) for b, l in zip(boxes, landmarks5)])
        frame = np.ascontiguousarray(frame_rgb[..., :3]).astype(np.uint8, copy=False)
        crops = [
            cv2.warpAffine(frame, m, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            for m in mats
        ]
        return np.stack(crops), mats

    def mesh(self, frame_rgb: np.ndarray, boxes: np.ndarray, landmarks5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 468, 3) float32 points in frame pixels and (N,) float32 face-presence scores
        for the N faces given by `boxes` (N x 4) and `landmarks5` (N x 5 x 2) of one uint8
        RGB frame (H x W x 3; a 4th, alpha channel is dropped)."""
        ((points, scores),) = self.mesh_frames([frame_rgb], [boxes], [landmarks5])
        return points, scores

    @torch.inference_mode()
    def mesh_frames(
        self, frames_rgb: Sequence[np.ndarray], boxes: Sequence[np.ndarray], landmarks5: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`mesh` for several frames with one forward over all their faces (a detector
        batch's frames): per frame, its faces' points and scores."""
        per_frame = [self.crops(f, b, l) for f, b, l in zip(frames_rgb, boxes, landmarks5)]
        crops = [c for c, _ in per_frame if len(c)]
        if not crops:
            return [(np.zeros((0, NUM_POINTS, 3), np.float32), np.zeros((0,), np.float32)) for _ in per_frame]
        batch = self.model.preprocess(np.concatenate(crops)).contiguous(memory_format=torch.channels_last)
        points, scores = self.model(batch)
        points = points.float().cpu().numpy()
        scores = scores.float().cpu().numpy().astype(np.float32)
        out, start = [], 0
        for _, mats in per_frame:
            n = len(mats)
            pts = [points_to_frame(p, m) for p, m in zip(points[start:start + n], mats)]
            out.append((np.stack(pts) if n else np.zeros((0, NUM_POINTS, 3), np.float32), scores[start:start + n]))
            start += n
        return out


# --------------------------------------------------------------------------- canonical face and pose


@lru_cache(maxsize=1)
def canonical_face() -> tuple[np.ndarray, np.ndarray]:
    """The canonical face model through the weights cache (`facemesh_canonical`:
    $DFPIPE_WEIGHTS_DIR, the cache, or its pinned public URL), read once per process."""
    from dfpipe.runtime.weights import resolve_weights

    return load_canonical_model(resolve_weights("facemesh_canonical"))


def load_canonical_model(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(468, 3) float64 vertices (cm; x to the viewer's right, y up, z towards the viewer)
    and (K, 3) int64 triangles, 0-based, from MediaPipe's canonical .obj.

    Faces are `f a/t b/t c/t` (vertex/uv, 1-based); only the vertex index is kept. The file
    is read where it lies (it is data, not code, and not copied into the project)."""
    vertices: list[list[float]] = []
    triangles: list[list[int]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                vertices.append([float(v) for v in parts[1:4]])
            elif parts[0] == "f":
                idx = [int(p.split("/")[0]) for p in parts[1:]]
                if len(idx) != 3:
                    raise ValueError(f"{path}: non-triangle face {line.strip()!r}")
                triangles.append([i - 1 for i in idx])
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    if len(t) and (t.min() < 0 or t.max() >= len(v)):
        raise ValueError(f"{path}: triangle index outside the {len(v)} vertices")
    return v, t


def _euler_from_rotation(rot: np.ndarray) -> tuple[float, float, float]:
    """R = Rz(roll) @ Ry(b) @ Rx(a) in OpenCV camera axes (x right, y down, z forward),
    returned as (yaw, pitch, roll) = (-b, -a, roll) in degrees so the signs read as
    `head_pose` documents. Rz is outermost, so rotating the image about the face adds
    straight to roll, and mirroring the image negates yaw and roll and keeps pitch."""
    b = -math.asin(max(-1.0, min(1.0, rot[2, 0])))
    a = math.atan2(rot[2, 1], rot[2, 2])
    roll = math.atan2(rot[1, 0], rot[0, 0])
    return -math.degrees(b), -math.degrees(a), math.degrees(roll)


def head_pose(
    points_frame: np.ndarray,
    frame_shape: Sequence[int],
    canonical: np.ndarray,
    line_of_sight: bool = True,
) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of one face from its 468 mesh points in frame pixels.

    Fit: `cv2.solvePnP` (SQPnP) of the canonical vertices to the points' x, y with a pinhole camera
    (focal length = the frame's larger side, principal point = frame centre, no
    distortion), so the pose is relative to the camera's line of sight. The mesh's z is not
    used: it is relative depth, and the perspective fit recovers depth itself.

    With `line_of_sight` (default) the pose is relative to the ray from the camera to the
    face, not to the optical axis: a face looking into the lens reads 0/0/0 wherever it sits
    in the frame (a face high in the frame looking at the camera would otherwise read as
    nodding down by the ray's angle, about 17 degrees on `skimage.data.astronaut()`).
    `line_of_sight=False` gives the pose in camera axes.

    Sign convention (image as displayed, y down), 0/0/0 for a frontal, upright face:
      - yaw > 0: the face turns towards the image's right (the person's left);
      - pitch > 0: the face nods up (chin forward, looking above the camera);
      - roll > 0: the head tilts clockwise in the image.
    Angles are Tait-Bryan, roll outermost (R = Rz(roll) Ry(-yaw) Rx(-pitch) in OpenCV
    camera axes), so an in-plane rotation of the image by t degrees clockwise adds t to roll.
    """
    pts = np.ascontiguousarray(np.asarray(points_frame, dtype=np.float64).reshape(-1, 3)[:, :2])
    model = np.asarray(canonical, dtype=np.float64).reshape(-1, 3)
    if len(pts) != len(model):
        raise ValueError(f"{len(pts)} image points for {len(model)} canonical vertices")
    # canonical (x right, y up, z to viewer) -> OpenCV object axes (x right, y down, z away)
    obj = np.ascontiguousarray(model * np.array([1.0, -1.0, -1.0]))
    h, w = int(frame_shape[0]), int(frame_shape[1])
    f = float(max(h, w))
    camera = np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])
    # SQPnP: the global least-squares optimum, 0.07 ms a face (EPnP then Levenberg-Marquardt
    # gave the same rotation to 1e-3 in 1.2 ms)
    ok, rvec, tvec = cv2.solvePnP(obj, pts, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise ValueError("solvePnP found no pose")
    rot, _ = cv2.Rodrigues(rvec)
    if line_of_sight:
        rot = _ray_rotation(tvec.reshape(3)).T @ rot
    return _euler_from_rotation(rot)


def _ray_rotation(direction: np.ndarray) -> np.ndarray:
    """Shortest-arc rotation taking the optical axis (0, 0, 1) onto `direction`: the turn
    the camera would make to look straight at the face. Mirror-symmetric, so mirroring the
    image still negates yaw and roll after it is removed."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    axis = np.cross([0.0, 0.0, 1.0], d)
    sin = float(np.linalg.norm(axis))
    if sin < 1e-12:
        return np.eye(3)
    angle = math.atan2(sin, float(d[2]))
    rot, _ = cv2.Rodrigues(axis / sin * angle)
    return rot
