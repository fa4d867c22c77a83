"""Warp one face onto another's geometry, triangle by triangle of the 468-point mesh.

Both faces carry the same topology (MediaPipe's canonical triangulation), so each
triangle of the destination mesh has a partner in the source mesh and one affine map
between them. `triangle_remap` rasterizes the destination triangles (far ones first, so
on a turned face the near side covers the far side), and builds one `cv2.remap` table:
every destination pixel looks up the source pixel its triangle's affine map points to.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """(898, 3) int64 triangles of the canonical face (read through the weights cache)."""
    from dfpipe.pipeline.faces.mesh import canonical_face

    tri = canonical_face()[1].copy()
    tri.setflags(write=False)
    return tri


def triangle_affines(src: np.ndarray, dst: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(T, 2, 3) affine maps taking each destination triangle onto its source triangle
    (destination pixel -> source pixel); degenerate triangles get a map to NaN."""
    s = np.asarray(src, np.float64)[triangles][..., :2]  # T x 3 x 2
    d = np.asarray(dst, np.float64)[triangles][..., :2]
    d_h = np.concatenate([d, np.ones(d.shape[:2] + (1,))], axis=2)  # T x 3 x 3 (rows: x, y, 1)
    det = np.linalg.det(d_h)
    ok = np.abs(det) > 1e-6
    out = np.full((len(triangles), 2, 3), np.nan)
    # d_h @ A.T = s  ->  A.T = inv(d_h) @ s
    out[ok] = np.transpose(np.linalg.solve(d_h[ok], s[ok]), (0, 2, 1))
    return out


def triangle_remap(
    src: np.ndarray, dst: np.ndarray, shape: tuple[int, ...], triangles: np.ndarray | None = None,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]] | None:
    """The remap of a destination image region onto the source face.

    `src`, `dst`: (468, 2 or 3) points of the same face topology in source-image and
    destination-image pixels (z of `dst`, when given, orders the triangles: nearer drawn
    last). `keep`: optional bool per triangle (False = leave out, e.g. the mouth opening).
    Returns (map_x, map_y, roi) for `cv2.remap(source, map_x, map_y, ...)` over the
    destination region `roi` (slices into a frame of `shape`), NaN-free: pixels outside every
    kept triangle map to -1 (outside the source: they come out black, mask them), or None
    when no triangle lands in the frame.
    """
    tri = mesh_triangles() if triangles is None else triangles
    dst = np.asarray(dst, np.float64)
    h, w = shape[:2]
    x0, y0 = np.floor(dst[:, :2].min(0)).astype(int) - 1
    x1, y1 = np.ceil(dst[:, :2].max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    affines = triangle_affines(src, dst, tri)
    use = np.isfinite(affines).all(axis=(1, 2))
    if keep is not None:
        use &= np.asarray(keep, bool)
    order = np.flatnonzero(use)
    if dst.shape[1] >= 3:  # far (large z) first, near last: the near side wins where they overlap
        order = order[np.argsort(-dst[tri[order]][:, :, 2].mean(1), kind="stable")]
    index = np.full((y1 - y0, x1 - x0), -1, np.int32)
    corners = np.rint((dst[:, :2] - (x0, y0)) * 16).astype(np.int32)  # 4 fractional bits
    for t in order:
        cv2.fillConvexPoly(index, corners[tri[t]], int(t), lineType=cv2.LINE_8, shift=4)
    ys, xs = np.nonzero(index >= 0)
    map_x = np.full(index.shape, -1.0, np.float32)
    map_y = np.full(index.shape, -1.0, np.float32)
    if len(xs):
        a = affines[index[ys, xs]]  # N x 2 x 3
        px, py = xs + float(x0), ys + float(y0)
        map_x[ys, xs] = a[:, 0, 0] * px + a[:, 0, 1] * py + a[:, 0, 2]
        map_y[ys, xs] = a[:, 1, 0] * px + a[:, 1, 1] * py + a[:, 1, 2]
    return map_x, map_y, (slice(y0, y1), slice(x0, x1))


def warp_to_mesh(
    source: np.ndarray, src: np.ndarray, dst: np.ndarray, shape: tuple[int, ...], keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`source` (an image holding the face of mesh `src`) warped onto mesh `dst` in a frame
    of `shape`: (image, uint8 mask of the pixels the warp defines)."""
    out = np.zeros((shape[0], shape[1], source.shape[2]), source.dtype)
    valid = np.zeros(shape[:2], np.uint8)
    remap = triangle_remap(src, dst, shape, keep=keep)
    if remap is None:
        return out, valid
    map_x, map_y, roi = remap
    out[roi] = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    h, w = source.shape[:2]
    inside = (map_x >= 0) & (map_y >= 0) & (map_x <= w - 1) & (map_y <= h - 1)
    valid[roi] = np.where(inside, 255, 0).astype(np.uint8)
    return out, valid
