"""Warp one face onto another's geometry, triangle by triangle of the 468-point mesh.

Both faces carry the same topology (MediaPipe's canonical triangulation), so each
triangle of the destination mesh has a partner in the source mesh and one affine map
between them. `rasterize` draws the destination triangles (far ones first, so
on a turned face the near side covers the far side), and builds one `cv2.remap` table:
every destination pixel looks up the source pixel its triangle's affine map points to.
One raster serves several sources (`remap_tables` per source): the mesh swap takes most
triangles from the donor and the mouth opening from the target frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """(898, 3) int64 triangles of the canonical face (read through the weights cache)."""
    from dfpipe.pipeline.faces.mesh import canonical_face

    tri = canonical_face()[1].copy()
    tri.setflags(write=False)
    return tri


def destination_inverse(dst: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3, 3) inverses of each destination triangle's corners in homogeneous form, and
    the bool of non-degenerate ones: what every source's affines onto `dst` share."""
    d = np.asarray(dst, np.float64)[triangles][..., :2]
    d_h = np.concatenate([d, np.ones(d.shape[:2] + (1,))], axis=2)  # T x 3 x 3 (rows: x, y, 1)
    ok = np.abs(np.linalg.det(d_h)) > 1e-6
    inverse = np.zeros_like(d_h)
    inverse[ok] = np.linalg.inv(d_h[ok])
    return inverse, ok


def triangle_affines(src: np.ndarray, dst: np.ndarray, triangles: np.ndarray,
                     inverse: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(T, 2, 3) affine maps taking each destination triangle onto its source triangle
    (destination pixel -> source pixel); degenerate triangles get a map to NaN. `inverse`:
    `destination_inverse(dst, triangles)`, when several sources share the destination."""
    inv, ok = destination_inverse(dst, triangles) if inverse is None else inverse
    s = np.asarray(src, np.float64)[triangles][..., :2]  # T x 3 x 2
    out = np.full((len(triangles), 2, 3), np.nan)
    # d_h @ A.T = s  ->  A.T = inv(d_h) @ s
    out[ok] = np.transpose(inv[ok] @ s[ok], (0, 2, 1))
    return out


@dataclass
class Raster:
    """Which triangle covers each pixel of `roi` (`index`, -1 outside the mesh), with the
    covered pixels listed once for every source's remap tables."""

    index: np.ndarray
    roi: tuple[slice, slice]

    @cached_property
    def pixels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, columns, triangle) of the covered pixels."""
        ys, xs = np.nonzero(self.index >= 0)
        return ys, xs, self.index[ys, xs]


def rasterize(
    dst: np.ndarray, shape: tuple[int, ...], triangles: np.ndarray | None = None, keep: np.ndarray | None = None,
) -> Raster | None:
    """The triangle index of every destination pixel (-1 outside the mesh) over the mesh's
    box `roi` in a frame of `shape`, far triangles drawn first so the near side wins on a
    turned face (z of `dst`, when given; smaller = nearer). `keep`: bool per triangle."""
    tri = mesh_triangles() if triangles is None else triangles
    dst = np.asarray(dst, np.float64)
    h, w = shape[:2]
    x0, y0 = np.floor(dst[:, :2].min(0)).astype(int) - 1
    x1, y1 = np.ceil(dst[:, :2].max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    order = np.arange(len(tri)) if keep is None else np.flatnonzero(np.asarray(keep, bool))
    if dst.shape[1] >= 3:
        order = order[np.argsort(-dst[tri[order]][:, :, 2].mean(1), kind="stable")]
    index = np.full((y1 - y0, x1 - x0), -1, np.int32)
    corners = np.rint((dst[:, :2] - (x0, y0)) * 16).astype(np.int32)[tri[order]]  # 4 fractional bits
    fill = cv2.fillConvexPoly
    for t, triangle in zip(order.tolist(), corners):  # plain ints and one array each: the loop is the cost
        fill(index, triangle, t, cv2.LINE_8, 4)
    return Raster(index, (slice(y0, y1), slice(x0, x1)))


def remap_tables(raster: Raster, affines: np.ndarray, use: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`cv2.remap` tables over the raster's roi from per-triangle affines (destination ->
    source); pixels outside the mesh, of a degenerate triangle or of a triangle `use`
    leaves out map to -1."""
    ok = np.isfinite(affines).all(axis=(1, 2))
    if use is not None:
        ok &= np.asarray(use, bool)
    map_x = np.full(raster.index.shape, -1.0, np.float32)
    map_y = np.full(raster.index.shape, -1.0, np.float32)
    ys, xs, t = raster.pixels
    sel = ok[t]
    ys, xs, t = ys[sel], xs[sel], t[sel]
    if len(t):
        a = affines[t]
        px, py = xs + float(raster.roi[1].start), ys + float(raster.roi[0].start)
        map_x[ys, xs] = a[:, 0, 0] * px + a[:, 0, 1] * py + a[:, 0, 2]
        map_y[ys, xs] = a[:, 1, 0] * px + a[:, 1, 1] * py + a[:, 1, 2]
    return map_x, map_y


def remap_into(out: np.ndarray, valid: np.ndarray, source: np.ndarray, map_x: np.ndarray, map_y: np.ndarray,
               roi: tuple[slice, slice]) -> None:
    """Write `source` resampled by the tables into `out[roi]` where they point inside it,
    and mark those pixels in `valid`."""
    h, w = source.shape[:2]
    inside = (map_x >= 0) & (map_y >= 0) & (map_x <= w - 1) & (map_y <= h - 1)
    warped = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region, region_valid = out[roi], valid[roi]
    np.copyto(region, warped, where=inside[..., None] if warped.ndim == 3 else inside)
    np.copyto(region_valid, np.uint8(255), where=inside)


def warp_to_mesh(
    source: np.ndarray, src: np.ndarray, dst: np.ndarray, shape: tuple[int, ...], keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`source` (an image holding the face of mesh `src`) warped onto mesh `dst` in a frame
    of `shape`: (image, uint8 mask of the pixels the warp defines)."""
    out = np.zeros((shape[0], shape[1], source.shape[2]), source.dtype)
    valid = np.zeros(shape[:2], np.uint8)
    raster = rasterize(dst, shape, keep=keep)
    if raster is None:
        return out, valid
    map_x, map_y = remap_tables(raster, triangle_affines(src, dst, mesh_triangles()))
    remap_into(out, valid, source, map_x, map_y, raster.roi)
    return out, valid
