"""Occluders in front of the target's face: a hand, a microphone, a cup.

Face Mesh places the whole face even where something covers it, so a swap warped onto the
mesh would paint the donor's skin over the hand. The target's usual look is known from
its own track: its sampled crops, unwarped onto one frontal layout of the canonical face
(the "atlas"), give a per-pixel median (the face as it usually looks) and spread (how much
each pixel varies: the lips and eyes a lot, the cheeks little). A frame's face, unwarped
the same way and matched in overall colour to the median of the crops nearest its head
turn, is occluded where it departs from it by several spreads over a patch of some size
(grown by hysteresis, holes filled); there the target keeps its own pixels. Not found: an
occluder present on most of the track's frames (it is part of the median), and any on a
frame whose head turn none of the crops shows (its usual look is unknown, so nothing is
guessed).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import cv2
import numpy as np
from scipy.sparse import csr_matrix

from dfpipe.pipeline.synth.meshwarp import (
    Raster,
    mesh_triangles,
    rasterize,
    remap_tables,
    triangle_affines,
)

#: side of the atlas, pixels
ATLAS = 128
#: a pixel departs from the usual face beyond this many spreads ...
SPREAD_K = 4.0
#: ... and by at least this much (CIE Lab distance, 0-255 scaled as OpenCV's 8-bit Lab)
MIN_DIFF = 24.0
#: patches of departure smaller than this share of the atlas's face are noise
MIN_AREA = 0.012
#: an occluder found grows into its neighbours departing by this share of the threshold
#: (an object's parts that happen to look like skin, such as a hand's palm, come along)
GROW = 0.6
#: and only this many atlas pixels past its strong part
REACH = 6
#: atlas pixels an occluder found is grown by
MARGIN = 5
#: atlas pixels along the face's outline never tested (see TargetLook)
BAND = 5
#: reference crops nearest in head turn that give a frame's usual look (at least)
NEAREST = 5
#: ... and at most (a median over more costs milliseconds per cell of head turn)
MOST_NEAR = 8
#: a frame whose head turn (`head_turn`) is this far from every reference crop's is not
#: tested (about 10 degrees of yaw: the nose tip moves 0.5 -> 0.2 of the way between the
#: cheeks from frontal to 25 degrees)
FAR_TURN = 0.08
#: grid of head turns with one usual look each
TURN_CELL = 0.04
#: the half-size first look's bar, as a share of the full one's
PRECHECK = 0.7
#: crops of the track that make the median (evenly spaced over it)
REFERENCE_CROPS = 32


@lru_cache(maxsize=2)
def atlas_layout(size: int = ATLAS) -> tuple[np.ndarray, Raster, np.ndarray]:
    """(468 x 3 mesh in atlas pixels, its triangle raster, bool face region) of the
    canonical face seen frontally, filling a `size` square."""
    from dfpipe.pipeline.faces.mesh import canonical_face

    v = np.asarray(canonical_face()[0], np.float64)
    pts = np.stack([v[:, 0], -v[:, 1], -v[:, 2]], axis=1)  # image y down; z: smaller = nearer
    lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
    scale = (size - 4) / float((hi - lo).max())
    pts[:, :2] = (pts[:, :2] - lo) * scale + 2 + ((size - 4) - (hi - lo) * scale) / 2
    pts[:, 2] *= scale
    raster = rasterize(pts, (size, size))
    assert raster is not None
    region = np.zeros((size, size), bool)
    region[raster.roi] = raster.index >= 0
    return pts, raster, region


@lru_cache(maxsize=4)
def _atlas_samples(size: int, step: int = 1) -> tuple[np.ndarray, np.ndarray, csr_matrix]:
    """The atlas's face pixels, fixed once: (flat pixel index, triangle of each, sparse
    matrix of its 3 barycentric weights on its triangle's corner vertices). An affine map
    keeps barycentric weights, so a face's pixel is the same weights on the face's own
    corners: no per-frame raster. `step` 2: every other pixel of every other row (the
    flat index is then into the half-size grid)."""
    atlas, raster, _ = atlas_layout(size)
    ys, xs, t = raster.pixels
    on_grid = ((ys + raster.roi[0].start) % step == 0) & ((xs + raster.roi[1].start) % step == 0)
    ys, xs, t = ys[on_grid], xs[on_grid], t[on_grid]
    tri = mesh_triangles()
    corners = atlas[tri[t]][..., :2]  # N x 3 x 2
    px = np.stack([xs + raster.roi[1].start, ys + raster.roi[0].start], axis=1).astype(np.float64)
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    v0, v1, v2 = b - a, c - a, px - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) > 1e-12, den, 1.0)
    wb = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    wc = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    weights = np.stack([1.0 - wb - wc, wb, wc], axis=1)
    grid = -(-size // step)
    flat = (ys + raster.roi[0].start) // step * grid + (xs + raster.roi[1].start) // step
    # as one sparse (pixels x 468) matrix: a face's pixel places are one product
    rows = np.repeat(np.arange(len(t)), 3)
    sampler = csr_matrix((weights.ravel(), (rows, tri[t].ravel())), shape=(len(t), len(atlas)))
    return flat, t, sampler


def unwarp(image: np.ndarray, mesh: np.ndarray, size: int = ATLAS, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The face of `mesh` (468 x 2+, pixels of `image`) resampled onto the atlas (every
    `step`-th pixel of it): (float32 Lab image, bool pixels seen: inside `image`, on a
    triangle that faces the camera and is not squeezed flat by the head's turn, where the
    far cheek hides behind the nose)."""
    flat, t, sampler = _atlas_samples(size, step)
    grid = -(-size // step)
    tri = mesh_triangles()
    where = sampler @ np.asarray(mesh, np.float64)[:, :2]  # where each atlas pixel looks in `image`
    sx, sy = where[:, 0].astype(np.float32), where[:, 1].astype(np.float32)
    map_x = np.full(grid * grid, -1.0, np.float32)
    map_y = np.full(grid * grid, -1.0, np.float32)
    map_x[flat], map_y[flat] = sx, sy
    h, w = image.shape[:2]
    seen = (sx >= 0) & (sy >= 0) & (sx <= w - 1) & (sy <= h - 1) & _facing(mesh, atlas_layout(size)[0], tri)[t]
    rgb = cv2.remap(np.ascontiguousarray(image[..., :3]), map_x.reshape(grid, grid), map_y.reshape(grid, grid),
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    valid = np.zeros(grid * grid, bool)
    valid[flat[seen]] = True
    return lab, valid.reshape(grid, grid)


#: a triangle squeezed below this share of the face's typical scale is seen edge-on
SQUEEZED = 0.2


def _facing(mesh: np.ndarray, atlas: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """bool per triangle: drawn in `mesh` with the atlas's orientation and not squeezed."""

    def signed_area(pts: np.ndarray) -> np.ndarray:
        a, b, c = (np.asarray(pts, np.float64)[tri[:, k], :2] for k in range(3))
        return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))

    ref = signed_area(atlas)
    ratio = np.where(np.abs(ref) > 1e-9, signed_area(mesh) / np.where(np.abs(ref) > 1e-9, ref, 1.0), 0.0)
    positive = ratio[ratio > 0]
    if not len(positive):
        return np.zeros(len(tri), bool)
    return ratio > SQUEEZED * float(np.median(positive))


def evenly(items: list, n: int = REFERENCE_CROPS) -> list:
    """Up to `n` of `items`, evenly spaced over them (the crops a look is learnt from)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


class TargetLook:
    """The target's usual face on the atlas, from its crops (image, mesh in crop pixels);
    `occluded` tells, per frame, where something covers it."""

    def __init__(self, crops: list[tuple[np.ndarray, np.ndarray]], size: int = ATLAS) -> None:
        if not crops:
            raise ValueError("no crops to learn the target's look from")
        self.size = size
        stack = []
        for image, mesh in crops:
            lab, seen = unwarp(image, mesh, size)
            lab[~seen] = np.nan
            stack.append(lab)
        stack = np.stack(stack)
        # a pixel seen on fewer than 3 crops (say, the far cheek of a head always turned)
        # has no usual look to depart from: never an occluder
        known = (np.isfinite(stack[..., 0]).sum(axis=0) >= min(3, len(crops)))
        self.median = _nanmedian(stack)
        spread = 1.4826 * _nanmedian(np.abs(stack - self.median)).max(axis=2)
        # the usual look at a pose: the median of the crops nearest in head turn (a cheek
        # turned into the light, an ear coming into view are not occluders)
        # (a pixel one crop does not see takes the median of all, so a plain median serves)
        self._filled = np.where(np.isnan(stack), self.median, stack).astype(np.float32)
        self._turns = np.array([head_turn(mesh) for _, mesh in crops])
        self._near = min(max(NEAREST, int(np.ceil(len(crops) / 3))), MOST_NEAR)
        self._medians: dict[tuple[int, ...], np.ndarray] = {}  # by cell of head turn
        # few crops give a noisy spread: take a pixel's neighbourhood's largest
        spread = cv2.dilate(spread.astype(np.float32), np.ones((5, 5), np.uint8))
        self.threshold = np.maximum(MIN_DIFF, SPREAD_K * spread)
        # off the outline's band: there hair, ears and background come and go with the head's
        # turn, and the swap's blend mask stops short of it anyway (its inset)
        inner = cv2.erode(atlas_layout(size)[2].astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND + 1,) * 2))
        self.region = (inner > 0) & known
        self.n_reference = len(crops)
        self._min_area = MIN_AREA * float(atlas_layout(size)[2].sum())

    def occluded(self, frame: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        """uint8 atlas map, 255 where something covers the face of `mesh` in `frame`."""
        none = np.zeros((self.size, self.size), np.uint8)
        median = self.median_at(head_turn(mesh))
        if median is None:  # a pose the track's crops never show: its look is not known
            return none
        # a first look on every other pixel, with a lower bar: most frames end here
        dist, use = self._distance(frame, mesh, median, 2)
        if 4 * np.count_nonzero((dist > PRECHECK) & use) < PRECHECK * self._min_area:
            return none
        dist, use = self._distance(frame, mesh, median, 1)
        strong = ((dist > 1.0) & use).astype(np.uint8)
        strong = cv2.morphologyEx(strong, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        if cv2.countNonZero(strong) < self._min_area:
            return none
        # hysteresis: the weak departures connected to a strong one of some size
        weak = ((dist > GROW) & use).astype(np.uint8) | strong
        n, labels, stats, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
        area = np.bincount(labels[strong > 0], minlength=n)
        keep = area >= self._min_area
        keep[0] = False
        if not keep.any():
            return none
        out = keep[labels].astype(np.uint8) * 255
        # ... near it: a weak departure does not lead the occluder off across the face
        near = cv2.dilate(strong * keep[labels].astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * REACH + 1,) * 2))
        out[near == 0] = 0
        out = cv2.morphologyEx(out, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
        # an object is solid: fill the holes it encloses
        contours, _ = cv2.findContours(out, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, 255, cv2.FILLED)
        out[~use] = 0
        # a margin past the occluder's edge: the blend's feather (about 5 atlas pixels) then
        # fades the donor in outside the occluder, not over its rim
        return cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * MARGIN + 1,) * 2))

    def _distance(self, frame: np.ndarray, mesh: np.ndarray, median: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(departure from `median` over a patch, in units of the pixel's threshold; bool
        pixels tested) on every `step`-th atlas pixel."""
        lab, valid = unwarp(frame, mesh, self.size, step)
        use = valid & self.region[::step, ::step]
        if not use.any():
            return np.zeros(use.shape, np.float32), use
        diff = lab - median[::step, ::step]
        diff -= np.median(diff[use][::max(1, 4 // step ** 2)], axis=0)  # the light of this frame, not a change of the face
        dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        # a patch departs, not a pixel: the mean over the patch's seen pixels (the dark past
        # the face's outline would make a rim of departures)
        seen = use.astype(np.float32)
        k = (5, 5) if step == 1 else (3, 3)
        dist = cv2.blur(dist * seen, k) / np.maximum(cv2.blur(seen, k), 1e-3)
        return dist / self.threshold[::step, ::step], use

    def median_at(self, turn: np.ndarray) -> np.ndarray | None:
        """The per-pixel median of the reference crops nearest to head turn `turn`; None
        when none is within FAR_TURN of it."""
        distance = np.linalg.norm(self._turns - turn, axis=1)
        if distance.min() > FAR_TURN:
            return None
        if len(self._turns) <= self._near:
            return self.median
        # one median per cell of a TURN_CELL grid: a track's poses visit few cells
        cell = tuple(np.round(np.asarray(turn) / TURN_CELL).astype(int).tolist())
        if cell not in self._medians:
            centre = np.asarray(cell, np.float64) * TURN_CELL
            order = np.argsort(np.linalg.norm(self._turns - centre, axis=1), kind="stable")[:self._near]
            self._medians[cell] = np.median(self._filled[order], axis=0)
        return self._medians[cell]


def _nanmedian(stack: np.ndarray) -> np.ndarray:
    """Per-pixel median over the crops that see the pixel (axis 0); 0 where none does."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        return np.nan_to_num(np.nanmedian(stack, axis=0)).astype(np.float32)


def head_turn(mesh: np.ndarray) -> np.ndarray:
    """(left-right, up-down) place of the nose tip between the cheeks and between the brow
    and chin, 0.5 when facing the camera: a cheap key of head pose."""
    m = np.asarray(mesh, np.float64)[:, :2]
    across = m[454] - m[234]
    down = m[152] - m[10]
    return np.array([np.dot(m[1] - m[234], across) / max(np.dot(across, across), 1e-9),
                     np.dot(m[1] - m[10], down) / max(np.dot(down, down), 1e-9)])


def atlas_to_crop_tables(crop_mesh: np.ndarray, crop_shape: tuple[int, ...], size: int = ATLAS) -> tuple[np.ndarray, np.ndarray] | None:
    """`cv2.remap` tables that take an atlas map onto a crop holding the face of
    `crop_mesh` (the donor's), so it can travel with the donor's pixels."""
    raster = rasterize(crop_mesh, crop_shape)
    if raster is None:
        return None
    atlas = atlas_layout(size)[0]
    map_x, map_y = remap_tables(raster, triangle_affines(atlas, crop_mesh, mesh_triangles()))
    full_x = np.full(crop_shape[:2], -1.0, np.float32)
    full_y = np.full(crop_shape[:2], -1.0, np.float32)
    full_x[raster.roi], full_y[raster.roi] = map_x, map_y
    return full_x, full_y
