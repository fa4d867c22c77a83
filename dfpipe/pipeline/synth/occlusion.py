"""Occluders in front of the target's face: a hand, a microphone, a cup.

Face Mesh places the whole face even where something covers it, so a swap warped onto the
mesh would paint the donor's skin over the hand. The target's usual look is known from
its own track: its sampled crops, unwarped onto one frontal layout of the canonical face
(the "atlas"), give a per-pixel median (the face as it usually looks) and spread (how much
each pixel varies: the lips and eyes a lot, the cheeks little). A frame's face, unwarped
the same way and matched to the median in overall colour, is occluded where it departs
from the median by several spreads over a patch of some size; there the target keeps its
own pixels. An occluder present on most of the track's frames is part of the median, and
is not found.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import cv2
import numpy as np

from dfpipe.pipeline.synth.meshwarp import mesh_triangles, rasterize, remap_tables, triangle_affines

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
#: crops of the track that make the median (evenly spaced over it)
REFERENCE_CROPS = 32


@lru_cache(maxsize=2)
def atlas_layout(size: int = ATLAS) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice], np.ndarray]:
    """(468 x 3 mesh in atlas pixels, triangle raster, its roi, bool face region) of the
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
    index, roi = raster
    region = np.zeros((size, size), bool)
    region[roi] = index >= 0
    return pts, index, roi, region


def unwarp(image: np.ndarray, mesh: np.ndarray, size: int = ATLAS) -> tuple[np.ndarray, np.ndarray]:
    """The face of `mesh` (468 x 2+, pixels of `image`) resampled onto the atlas: (float32
    Lab image, bool pixels seen: inside `image`, on a triangle that faces the camera and is
    not squeezed flat by the head's turn, where the far cheek hides behind the nose)."""
    atlas, index, roi, _ = atlas_layout(size)
    tri = mesh_triangles()
    map_x, map_y = remap_tables(index, roi, triangle_affines(mesh, atlas, tri))
    h, w = image.shape[:2]
    inside = (map_x >= 0) & (map_y >= 0) & (map_x <= w - 1) & (map_y <= h - 1)
    seen = _facing(mesh, atlas, tri)
    inside &= (index >= 0) & seen[np.maximum(index, 0)]
    rgb = cv2.remap(np.ascontiguousarray(image[..., :3]), map_x, map_y, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lab = np.zeros((size, size, 3), np.float32)
    lab[roi] = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    valid = np.zeros((size, size), bool)
    valid[roi] = inside
    return lab, valid


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
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
            self.median = np.nan_to_num(np.nanmedian(stack, axis=0))
            spread = np.nan_to_num(1.4826 * np.nanmedian(np.abs(stack - self.median), axis=0).max(axis=2))
        # few crops give a noisy spread: take a pixel's neighbourhood's largest
        spread = cv2.dilate(spread.astype(np.float32), np.ones((5, 5), np.uint8))
        self.threshold = np.maximum(MIN_DIFF, SPREAD_K * spread)
        self.region = atlas_layout(size)[3] & known
        self.n_reference = len(crops)

    def occluded(self, frame: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        """uint8 atlas map, 255 where something covers the face of `mesh` in `frame`."""
        lab, valid = unwarp(frame, mesh, self.size)
        use = valid & self.region
        if use.sum() < 50:
            return np.zeros((self.size, self.size), np.uint8)
        diff = lab - self.median
        diff -= np.median(diff[use], axis=0)  # the light of this frame, not a change of the face
        dist = np.sqrt((diff ** 2).sum(axis=2))
        dist = cv2.blur(dist, (5, 5))  # a patch departs, not a pixel
        strong = ((dist > self.threshold) & use).astype(np.uint8)
        strong = cv2.morphologyEx(strong, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        # hysteresis: the weak departures connected to a strong one of some size
        weak = ((dist > GROW * self.threshold) & use).astype(np.uint8) | strong
        n, labels, stats, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
        area = np.bincount(labels[strong > 0], minlength=n)
        keep = area >= MIN_AREA * self.region.sum()
        keep[0] = False
        if not keep.any():
            return np.zeros((self.size, self.size), np.uint8)
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


def atlas_to_crop_tables(crop_mesh: np.ndarray, crop_shape: tuple[int, ...], size: int = ATLAS) -> tuple[np.ndarray, np.ndarray] | None:
    """`cv2.remap` tables that take an atlas map onto a crop holding the face of
    `crop_mesh` (the donor's), so it can travel with the donor's pixels."""
    raster = rasterize(crop_mesh, crop_shape)
    if raster is None:
        return None
    index, roi = raster
    atlas = atlas_layout(size)[0]
    map_x, map_y = remap_tables(index, roi, triangle_affines(atlas, crop_mesh, mesh_triangles()))
    full_x = np.full(crop_shape[:2], -1.0, np.float32)
    full_y = np.full(crop_shape[:2], -1.0, np.float32)
    full_x[roi], full_y[roi] = map_x, map_y
    return full_x, full_y
