"""Face masks from the face mesh (or 5 landmarks), and the deformations that give them variety.

With a face's 468 Face Mesh points, `mesh_hull_mask` draws a region (`full`,
`no_forehead`, `inner`; see `dfpipe.pipeline.faces.topology`) as the union of the
region's triangles of the canonical triangulation placed on the points: the real outline,
which follows a profile, an open mouth, a tilted head. Rows without a mesh (`--mesh none`,
older datasets) fall back to RetinaFace's 5 points: a bundled mean 68-point face (OpenFace's
dlib template, `dfpipe/data/mean_face_68.json`) is fitted to them with a similarity and its
hull is drawn (`landmark_hull_mask`), as Face X-ray does with 68 real points.

Masks for one video track are drawn once in a canonical square (`canonical_mask`),
deformed once, and mapped to every frame (`canonical_to_frame`), so a fake's boundary does
not flicker from frame to frame. Frame-space masks (`mesh_hull_mask`, `landmark_hull_mask`) serve single
images (self-blend training data, pair masks).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.transform import PiecewiseAffineTransform, SimilarityTransform, warp

REGIONS = ("full", "no_forehead", "inner")
WARPS = ("elastic", "piecewise", "none")
#: SBI's blend ratios: mostly full opacity, sometimes a partial blend.
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
#: Deformation kernel sizes below are in pixels of a face this many pixels wide (SBI crops).
REFERENCE_FACE = 256

_JAW = list(range(0, 17))
_BROWS = list(range(17, 27))
_EYES = list(range(36, 48))
_REGION_POINTS = {
    # jaw + brows: the whole face up to the brow line (Face X-ray's hull)
    "full": _JAW + _BROWS,
    # jaw + eyes: cheeks, nose and mouth, nothing above the eyes
    "no_forehead": _JAW + _EYES,
    # brows, nose, eyes and mouth without the cheeks and jaw line
    "inner": list(range(17, 68)),
}


@lru_cache(maxsize=1)
def mean_face_68() -> np.ndarray:
    """The bundled mean face, 68 x 2 float64, normalized (x right, y down, ~0..1)."""
    text = resources.files("dfpipe").joinpath("data/mean_face_68.json").read_text()
    pts = np.asarray(json.loads(text)["points"], dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"mean_face_68.json must hold 68 points, found {pts.shape}")
    return pts


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """The RetinaFace 5 points (left eye, right eye, nose, mouth corners) of a 68-point shape."""
    p = np.asarray(points68, dtype=np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def fit_mean_face(landmarks5: np.ndarray) -> np.ndarray:
    """The mean 68-point face mapped onto detected 5 points by a least-squares similarity."""
    tform = _similarity(five_from_68(mean_face_68()), landmarks5)
    return tform(mean_face_68())


def _similarity(src: np.ndarray, dst: np.ndarray) -> SimilarityTransform:
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    tform = SimilarityTransform.from_estimate(src, dst)
    if not tform:
        raise ValueError("degenerate landmarks: no similarity transform")
    return tform


def _hull_polygon(points68: np.ndarray, region: str) -> np.ndarray:
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    pts = points68[_REGION_POINTS[region]].astype(np.float32)
    return cv2.convexHull(pts)


def _fill(polygon: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=np.uint8)
    # 4 fractional bits: sub-pixel accurate edges for small faces
    cv2.fillConvexPoly(mask, np.rint(polygon * 16).astype(np.int32), 255, lineType=cv2.LINE_8, shift=4)
    return mask


def landmark_hull_mask(landmarks5: np.ndarray, shape: tuple[int, ...], region: str = "full") -> np.ndarray:
    """uint8 mask (255 inside) of the face hull in an image of `shape` (H, W[, C])."""
    return _fill(_hull_polygon(fit_mean_face(landmarks5), region), shape)


def mesh_hull_mask(mesh_xy: np.ndarray, shape: tuple[int, ...], region: str = "full") -> np.ndarray:
    """uint8 mask (255 inside) of a mesh region in an image of `shape` (H, W[, C]).

    `mesh_xy`: (468, 2) (or (468, 3), z ignored) mesh points in that image's pixels.
    `full` is the union of all canonical triangles placed on the points: the projected
    face surface, so a profile's far half, folded behind the near half, adds nothing
    outside the silhouette and a turned chin is not bridged as a convex hull would. The
    other regions are their triangles plus their polygon (`topology.region_polygon`, for a
    smooth edge instead of the triangles' staircase), cut to `full`."""
    from dfpipe.pipeline.faces.topology import check_points, region_polygon, region_triangles

    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    pts = check_points(mesh_xy)
    if not np.isfinite(pts).all():
        raise ValueError("mesh points must be finite")
    fixed = np.rint(pts * 16).astype(np.int32)  # 4 fractional bits, as _fill
    face = _fill_triangles(fixed[region_triangles("full")], shape)
    if region == "full":
        return face
    mask = _fill_triangles(fixed[region_triangles(region)], shape)
    cv2.fillPoly(mask, [fixed[list(region_polygon(region))]], 255, lineType=cv2.LINE_8, shift=4)
    return np.minimum(mask, face)


def _fill_triangles(triangles: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Union of (K, 3, 2) fixed-point (shift 4) triangles; one fill each, since fillPoly
    on overlapping polygons can cancel where they overlap."""
    mask = np.zeros(shape[:2], dtype=np.uint8)
    for tri in triangles:
        cv2.fillConvexPoly(mask, tri, 255, lineType=cv2.LINE_8, shift=4)
    return mask


def canonical_points5(size: int = REFERENCE_FACE) -> np.ndarray:
    """The mean face's 5 points in a `size` square canonical frame (face ~70% of the side)."""
    return _canonical_tform(size)(five_from_68(mean_face_68()))


def _canonical_tform(size: int) -> SimilarityTransform:
    # the mean face spans ~0..1 x ~0.18..1.06; centre it with a border for deformations
    pts = mean_face_68()
    centre = (pts.min(0) + pts.max(0)) / 2.0
    scale = 0.7 * size / float((pts.max(0) - pts.min(0)).max())
    return SimilarityTransform(scale=scale, translation=size / 2.0 - scale * centre)


def canonical_mask(region: str = "full", size: int = REFERENCE_FACE) -> np.ndarray:
    """The face hull in the canonical square (uint8, 255 inside)."""
    return _fill(_hull_polygon(_canonical_tform(size)(mean_face_68()), region), (size, size))


def canonical_to_frame(mask: np.ndarray, landmarks5: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Map a canonical-square mask (uint8 or float) onto a frame face given its 5 points."""
    size = mask.shape[0]
    tform = _similarity(canonical_points5(size), landmarks5)
    h, w = shape[:2]
    return cv2.warpAffine(
        mask, tform.params[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def _odd(n: float) -> int:
    k = max(1, int(round(n)))
    return k if k % 2 else k + 1


def elastic(mask: np.ndarray, rng: np.random.Generator, alpha: float = 50.0, sigma: float = 7.0) -> np.ndarray:
    """Elastic deformation (Simard et al., as albumentations/SBI: smoothed uniform field x alpha)."""
    h, w = mask.shape[:2]
    dx = gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="constant") * alpha
    dy = gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="constant") * alpha
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, gx + dx.astype(np.float32), gy + dy.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def piecewise_affine(mask: np.ndarray, rng: np.random.Generator, grid: int = 4, jitter: float = 0.03) -> np.ndarray:
    """Piecewise-affine warp: a grid x grid lattice with interior nodes moved by
    +-`jitter` x side (Face X-ray's mask deformation)."""
    h, w = mask.shape[:2]
    ys, xs = np.meshgrid(np.linspace(0, h - 1, grid + 1), np.linspace(0, w - 1, grid + 1), indexing="ij")
    src = np.stack([xs.ravel(), ys.ravel()], 1)
    dst = src.copy()
    inner = (src[:, 0] > 0) & (src[:, 0] < w - 1) & (src[:, 1] > 0) & (src[:, 1] < h - 1)
    dst[inner] += rng.uniform(-jitter, jitter, (int(inner.sum()), 2)) * np.array([w, h])
    tform = PiecewiseAffineTransform.from_estimate(dst, src)  # warp() wants output -> input
    if not tform:
        return mask
    out = warp(mask.astype(np.float32), tform, output_shape=(h, w), order=1, preserve_range=True)
    return out.astype(mask.dtype) if mask.dtype == np.float32 else np.clip(out, 0, 255).astype(mask.dtype)


def deform_mask(
    mask: np.ndarray,
    rng: np.random.Generator,
    warp_kind: str = "elastic",
    scale: float = 1.0,
    blend_ratio: float | None = None,
) -> np.ndarray:
    """A soft, randomly deformed copy of a binary mask (uint8 255 inside) as float32 in [0, 1].

    Steps (SBI / Face X-ray): warp (`elastic` alpha 50 sigma 7, `piecewise` affine, or
    `none`); erode (kernel 1..21) or dilate (1..5); blur with a random odd kernel 5..25, cut
    values below 1 to 0, blur again, renormalize to peak 1; multiply by a blend ratio drawn
    from BLEND_RATIOS (or the given one). Kernel sizes and the elastic field are in pixels of
    a REFERENCE_FACE-wide face; `scale` = face width / REFERENCE_FACE adapts them.
    """
    if warp_kind not in WARPS:
        raise ValueError(f"warp must be one of {WARPS}, got {warp_kind!r}")
    binary = (np.asarray(mask) > 127).astype(np.float32)
    if not binary.any():
        return binary
    # work on the mask's box plus a border the deformations can reach: cheap on 720p frames
    ys, xs = np.nonzero(binary)
    pad = int(np.ceil(60 * scale)) + 4
    y0, y1 = max(0, ys.min() - pad), min(binary.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(binary.shape[1], xs.max() + pad + 1)
    m = binary[y0:y1, x0:x1]

    if warp_kind == "elastic":
        m = elastic(m, rng, alpha=50.0 * scale, sigma=7.0 * scale)
    elif warp_kind == "piecewise":
        m = piecewise_affine(m, rng)
    m = (m > 0.5).astype(np.uint8)

    if rng.random() < 0.5:
        k = _odd(rng.integers(1, 22) * scale)
        m = cv2.erode(m, np.ones((k, k), np.uint8))
    else:
        k = _odd(rng.integers(1, 6) * scale)
        m = cv2.dilate(m, np.ones((k, k), np.uint8))

    soft = m.astype(np.float32)
    k1 = _odd(rng.choice(np.arange(5, 26, 2)) * scale)
    soft = cv2.GaussianBlur(soft, (k1, k1), 0)
    soft[soft < 0.999] = 0.0  # "below 1", tolerant of float rounding in the blur
    k2 = _odd(rng.choice(np.arange(5, 26, 2)) * scale)
    soft = cv2.GaussianBlur(soft, (k2, k2), 0)
    peak = float(soft.max())
    if peak > 0:
        soft /= peak
    ratio = float(rng.choice(BLEND_RATIOS)) if blend_ratio is None else float(blend_ratio)

    out = np.zeros(binary.shape, dtype=np.float32)
    out[y0:y1, x0:x1] = soft * ratio
    return out


def face_scale(landmarks5: np.ndarray) -> float:
    """Face width in REFERENCE_FACE units, from the same similarity the hull uses."""
    tform = _similarity(canonical_points5(REFERENCE_FACE), landmarks5)
    return float(tform.scale)
