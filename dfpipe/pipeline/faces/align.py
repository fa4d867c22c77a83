"""Face alignment: the 2x3 matrix from frame pixels to a square crop.

Three crops: `align` (5-point similarity to the ArcFace template, scaled with a margin),
`mesh` (the same framing, fitted to the rigid points of the 468-point face mesh instead of
the 5 points) and `box` (FF++ / DeepfakeBench: 1.3 x the larger box side around its
centre, no rotation).
The matrix is stored with every face so masks and fakes are cropped the same way later.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

#: ArcFace 112x112 five-point template: left eye, right eye, nose, left mouth, right mouth.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

CROPS = ("align", "mesh", "box")

#: Face Mesh points on the rigid part of the face (eye corners, nose bridge and tip,
#: forehead, cheekbones, temples): they move with the head but not with speech or
#: expression, so a fit to them follows the head and ignores the jaw and mouth.
RIGID_MESH_POINTS = (
    33, 133, 362, 263,  # eye corners
    168, 6, 197, 195, 5, 4, 1,  # nose bridge to tip
    10, 151, 9, 108, 337,  # forehead
    116, 345, 123, 352, 117, 346,  # cheekbones
    127, 356, 234, 454,  # temples
)


def template_points(size: int, margin: float = 0.4) -> np.ndarray:
    """The template scaled to a `size` crop; `margin` is the extra border as a fraction of
    the template's face (0 = ArcFace's tight 112 crop; 0.4 keeps forehead, chin and some
    background, which blending-artefact detectors need)."""
    centred = ARCFACE_TEMPLATE_112 - 56.0
    return centred / (1.0 + margin) * (size / 112.0) + size / 2.0


def align_matrix(landmarks: np.ndarray, size: int, margin: float = 0.4) -> np.ndarray:
    """Least-squares similarity (Umeyama) from 5 landmarks (5 x 2) to the template."""
    src = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    tform = SimilarityTransform.from_estimate(src, template_points(size, margin))
    if not tform:  # skimage returns a falsy failure object for degenerate points
        raise ValueError("degenerate landmarks: no similarity transform")
    return np.asarray(tform.params[:2], dtype=np.float64)


def mesh_template(canonical: np.ndarray, size: int, margin: float = 0.4) -> np.ndarray:
    """Where the rigid mesh points sit in a `size` crop: the canonical face seen frontally,
    placed by the similarity that best puts its eye centres, nose tip and mouth corners on
    `template_points`, so `mesh` crops frame the face as `align` crops do."""
    v = np.asarray(canonical, dtype=np.float64).reshape(-1, 3)
    front = np.stack([v[:, 0], -v[:, 1]], axis=1)  # canonical y is up; crops are y down
    five = np.stack([
        front[[33, 133]].mean(0), front[[362, 263]].mean(0), front[1], front[61], front[291],
    ])
    tform = SimilarityTransform.from_estimate(five, template_points(size, margin))
    return tform(front[list(RIGID_MESH_POINTS)])


def mesh_matrix(mesh: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Least-squares similarity from the mesh's rigid points (x, y of a 468 x 3 mesh in
    frame pixels) to `template` (from `mesh_template`)."""
    src = np.asarray(mesh, dtype=np.float64).reshape(-1, 3)[list(RIGID_MESH_POINTS), :2]
    tform = SimilarityTransform.from_estimate(src, np.asarray(template, dtype=np.float64))
    if not tform:
        raise ValueError("degenerate mesh: no similarity transform")
    return np.asarray(tform.params[:2], dtype=np.float64)


def box_matrix(box: np.ndarray, size: int, scale: float = 1.3) -> np.ndarray:
    """FF++ crop: a square of `scale` x max(w, h) around the box centre, resized to `size`."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = scale * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    s = size / side
    return np.array([[s, 0.0, size / 2.0 - s * cx], [0.0, s, size / 2.0 - s * cy]], dtype=np.float64)


def crop_matrix(
    crop: str, box: np.ndarray, landmarks: np.ndarray, size: int, margin: float = 0.4,
    mesh: np.ndarray | None = None, template: np.ndarray | None = None,
) -> np.ndarray:
    """The crop's matrix; `mesh` crops need the face's `mesh` and the `mesh_template` and
    fall back to `align` for a face without a mesh."""
    if crop == "mesh" and mesh is not None and template is not None:
        return mesh_matrix(mesh, template)
    if crop in ("align", "mesh"):
        return align_matrix(landmarks, size, margin)
    if crop == "box":
        return box_matrix(box, size)
    raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")


def warp_crop(frame: np.ndarray, matrix: np.ndarray, size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Apply a stored matrix; pixels outside the frame are black (border replicate would
    invent texture next to the frame edge)."""
    return cv2.warpAffine(
        frame, np.asarray(matrix, dtype=np.float64).reshape(2, 3), (size, size),
        flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map N x 2 points with a 2x3 matrix."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    return pts @ m[:, :2].T + m[:, 2]


def transform_mesh(mesh: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """A face mesh (468 x 3, or its 1404 values) through a 2x3 similarity: x, y mapped, z
    scaled by the same factor so depth stays in the new pixels' scale (frame -> crop)."""
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    out = np.array(mesh, dtype=np.float64).reshape(-1, 3)
    out[:, :2] = transform_points(out[:, :2], m)
    out[:, 2] *= np.sqrt(abs(np.linalg.det(m[:, :2])))
    return out


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    """Crop -> frame matrix, for pasting a crop back (synthesis)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64).reshape(2, 3))
