"""Pose error, expression error and seam visibility of one fake face against a real one.

What face-swap papers (FaceShifter, SimSwap) report on FF++ beside identity: how far the
fake's head pose is from the pose it should have (degrees), and how far its expression is,
measured on the 468-point Face Mesh once pose, position and scale are taken out. The seam
score asks whether the mask boundary stands out: the gradient on a thin ring around the
boundary in the fake crop, over the same ring in the real crop (about 1 = invisible).
"""

from __future__ import annotations

import cv2
import numpy as np

#: Face Mesh outer eye corners (image left, image right): the inter-ocular distance that
#: makes the expression error independent of face size.
OUTER_EYE_CORNERS = (33, 263)
#: Ring half-width as a fraction of the crop side (3 px at 192 px).
SEAM_RING = 1.5 / 96


def angle_difference(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """|a - b| in degrees, wrapped into [0, 180] (yaw 179 vs -179 is 2 degrees apart)."""
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64) + 180.0) % 360.0 - 180.0
    return np.abs(d)


def pose_error(fake: tuple[float, float, float], real: tuple[float, float, float]) -> float | None:
    """Mean absolute yaw / pitch / roll difference in degrees; None when an angle is unknown."""
    if any(v is None for v in (*fake, *real)):
        return None
    value = float(np.mean(angle_difference(np.asarray(fake, np.float64), np.asarray(real, np.float64))))
    return None if np.isnan(value) else value


def procrustes_align(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`points` (N, 3) moved onto `reference` by the best rotation, uniform scale and shift
    (least squares, no reflection): what is left is shape, not pose."""
    p = np.asarray(points, np.float64)
    q = np.asarray(reference, np.float64)
    pc, qc = p - p.mean(0), q - q.mean(0)
    u, s, vt = np.linalg.svd(pc.T @ qc)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    d = np.diag([1.0, 1.0, sign])
    rotation = u @ d @ vt
    scale = float((s * np.diag(d)).sum() / max((pc**2).sum(), 1e-12))
    return scale * pc @ rotation + q.mean(0)


def expression_error(fake_mesh: np.ndarray, real_mesh: np.ndarray) -> float | None:
    """Mean distance of the mesh points after Procrustes alignment of the fake mesh onto the
    real one, over the real face's inter-ocular distance (0 = the same expression)."""
    if fake_mesh is None or real_mesh is None:
        return None
    a = np.asarray(fake_mesh, np.float64).reshape(-1, 3)
    b = np.asarray(real_mesh, np.float64).reshape(-1, 3)
    if a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    iod = float(np.linalg.norm(b[OUTER_EYE_CORNERS[0], :2] - b[OUTER_EYE_CORNERS[1], :2]))
    if iod <= 1e-6:
        return None
    return float(np.linalg.norm(procrustes_align(a, b) - b, axis=1).mean() / iod)


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the grey image, float32."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) if image.ndim == 3 else image.astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def boundary_ring(mask: np.ndarray, half_width: int) -> np.ndarray:
    """Bool map of the pixels within `half_width` of the mask boundary (dilated minus eroded),
    away from the image border where Sobel sees padding."""
    binary = (np.asarray(mask) > 127).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * half_width + 1, 2 * half_width + 1))
    ring = (cv2.dilate(binary, k) > 0) & ~(cv2.erode(binary, k) > 0)
    ring[:2, :] = ring[-2:, :] = False
    ring[:, :2] = ring[:, -2:] = False
    return ring


def seam_score(fake: np.ndarray, real: np.ndarray, mask: np.ndarray | None, half_width: int | None = None) -> float | None:
    """Mean gradient on the ring around the mask boundary in `fake`, over the same in `real`
    (aligned crops): about 1 when the boundary is invisible, larger for a visible seam.
    None without a mask, with an empty or full mask, or a flat real ring."""
    if mask is None or fake is None or real is None or fake.shape != real.shape:
        return None
    width = half_width or max(2, int(round(SEAM_RING * max(fake.shape[:2]))))
    ring = boundary_ring(mask, width)
    if ring.sum() < 20:
        return None
    base = float(gradient_magnitude(real)[ring].mean())
    if base < 1e-3:
        return None
    return float(gradient_magnitude(fake)[ring].mean() / base)


def crop_box(row: dict) -> np.ndarray | None:
    """A face row's box (frame pixels) in its crop's pixels: the bounds of the four corners
    moved by the row's frame->crop matrix. None when the row has no box."""
    corners = [row.get(k) for k in ("x1", "y1", "x2", "y2")]
    if any(v is None for v in corners) or row.get("matrix") is None:
        return None
    x1, y1, x2, y2 = (float(v) for v in corners)
    pts = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)
    m = np.asarray(row["matrix"], np.float64).reshape(2, 3)
    moved = pts @ m[:, :2].T + m[:, 2]
    return np.array([*moved.min(0), *moved.max(0)], np.float64)
