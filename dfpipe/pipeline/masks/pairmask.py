"""Manipulation masks for fakes: from the real/fake pair, a shipped mask video, or the face's geometry.

A fake extracted after its source real video reuses the source's tracks and matrices, so
its crop and the real crop of the same frame line up pixel for pixel; what differs is the
manipulated region plus codec noise. Both crops are blurred first (a real and a fake of
the same clip are often encoded at different qualities, so sharp edges differ everywhere),
differenced (max channel difference and/or 1 - SSIM map), thresholded (Otsu with a floor,
or a fixed level), kept inside the face region (the face mesh's outline when the row has a
mesh, else the mean face fitted to the 5 landmarks, grown by `within_face`), cleaned with
morphology, reduced to the largest components and filled: one region without holes, the
swapped face of a face swap, the moving mouth of a reenactment.

A fake without a pair gets its face region itself (`face_region_mask`: mask source `mesh`,
or `landmarks` for a row without a mesh).

The stage that applies these to every fake of a dataset is `masks/stage.py`; one fake's
faces part is handled by `masks/video.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dfpipe.pipeline.faces.align import transform_points, warp_crop
from dfpipe.pipeline.quality.ssim import ssim_map

DIFFERENCES = ("max", "ssim", "both")
#: Kernel sizes below are for a 256-pixel crop and scale with the crop size.
REFERENCE_SIZE = 256


@dataclass(frozen=True)
class PairMaskConfig:
    difference: str = "max"  # max channel difference, 1 - SSIM map, or their mean ("both")
    threshold: str | float = "otsu"  # "otsu" or a fixed level on the 0..255 difference map
    min_threshold: float = 12.0  # floor under Otsu: codec noise alone never becomes a mask
    blur_sigma: float = 2.0  # pre-blur of both crops, pixels at 256
    open_size: int = 3  # removes isolated specks
    close_size: int = 21  # merges the strokes of an edited mouth / face into one region
    components: int = 1  # keep this many largest regions
    min_area: float = 0.002  # regions smaller than this fraction of the crop are dropped
    within_face: float | None = 0.15  # keep the pair mask inside the face hull grown by this
    # fraction of the crop (codec or watermark differences in the background are not edits);
    # None keeps it anywhere
    mesh_within_face: float = 0.03  # the same growth for a face region from the mesh: its
    # outline is the real one (the mean face's is only roughly placed), so it grows little
    mesh_close_size: int = 31  # closing inside a mesh's face region: merges a reenacted
    # mouth's and chin's strokes into one region; the face outline stops it spreading
    mesh_edge_sigma: float = 6.0  # blur (pixels at 256) that rounds the outline of a mesh-bounded pair mask
    landmark_region: str = "full"  # facemask region for the mesh / landmark fallback
    use_shipped: bool = True

    def __post_init__(self) -> None:
        if self.difference not in DIFFERENCES:
            raise ValueError(f"difference must be one of {DIFFERENCES}, got {self.difference!r}")
        if isinstance(self.threshold, str) and self.threshold != "otsu":
            raise ValueError(f"threshold must be 'otsu' or a number in 0..255, got {self.threshold!r}")
        if not isinstance(self.threshold, str) and not 0 <= float(self.threshold) <= 255:
            raise ValueError(f"a fixed threshold must lie in 0..255, got {self.threshold}")
        if self.components < 1:
            raise ValueError(f"components must be >= 1, got {self.components}")


def _scaled(size_at_256: float, size: int, odd: bool = True) -> int:
    k = max(1, int(round(size_at_256 * size / REFERENCE_SIZE)))
    return k + 1 - k % 2 if odd else k


def difference_map(real: np.ndarray, fake: np.ndarray, config: PairMaskConfig = PairMaskConfig()) -> np.ndarray:
    """uint8 map (0..255) of how much `fake` differs from `real` per pixel."""
    if real.shape != fake.shape:
        raise ValueError(f"pair crops differ in shape: {real.shape} vs {fake.shape}")
    sigma = config.blur_sigma * real.shape[0] / REFERENCE_SIZE
    a = real.astype(np.float32)
    b = fake.astype(np.float32)
    if sigma > 0:
        a = cv2.GaussianBlur(a, (0, 0), sigma)
        b = cv2.GaussianBlur(b, (0, 0), sigma)
    maps = []
    if config.difference in ("max", "both"):
        maps.append(np.abs(a - b).max(axis=-1))
    if config.difference in ("ssim", "both"):
        maps.append(np.clip(1.0 - ssim_map(a, b).mean(axis=-1), 0.0, 1.0) * 255.0)
    return np.clip(np.mean(maps, axis=0), 0, 255).astype(np.uint8)


def threshold_map(diff: np.ndarray, config: PairMaskConfig = PairMaskConfig()) -> np.ndarray:
    if config.threshold == "otsu":
        otsu, _ = cv2.threshold(diff, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        level = max(float(otsu), config.min_threshold)
    else:
        level = float(config.threshold)
    return np.where(diff > level, 255, 0).astype(np.uint8)


def clean_mask(
    binary: np.ndarray,
    config: PairMaskConfig = PairMaskConfig(),
    within: np.ndarray | None = None,
    close_size: int | None = None,
) -> np.ndarray:
    """Open, close (`close_size` at 256, default `config.close_size`), cut to `within`
    (the closing must not carry the mask off the face), keep the largest components,
    fill holes."""
    size = binary.shape[0]
    ellipse = cv2.MORPH_ELLIPSE
    close = config.close_size if close_size is None else close_size
    m = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(ellipse, (_scaled(config.open_size, size),) * 2))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(ellipse, (_scaled(close, size),) * 2))
    if within is not None:
        m = np.where(within > 0, m, 0).astype(np.uint8)
    return fill_holes(largest_regions(m, config))


def largest_regions(mask: np.ndarray, config: PairMaskConfig = PairMaskConfig()) -> np.ndarray:
    """The `config.components` largest regions of `mask` over `config.min_area` of it."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = [i + 1 for i in np.argsort(areas)[::-1][: config.components] if areas[i] >= config.min_area * mask.size]
    return np.isin(labels, keep).astype(np.uint8) * 255


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Everything inside the outer contours: background not reachable from the border
    becomes mask (a swapped face's eyes, an edited mouth's teeth)."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)
    return filled


def pair_mask(
    real: np.ndarray,
    fake: np.ndarray,
    config: PairMaskConfig = PairMaskConfig(),
    face: np.ndarray | None = None,
    grow: float | None = None,
    close_size: int | None = None,
) -> np.ndarray:
    """Mask (uint8, 255 = manipulated) of the region where a fake crop departs from its real crop.

    `face`: an optional face mask of the crop (`face_region_mask`); unless
    `config.within_face` is None the result is kept inside it, grown by `grow` x the crop
    size (default `config.within_face`), before and after the closing. With a mesh's
    region use `mesh_pair_mask`. Holes are filled (`clean_mask`).
    """
    binary = threshold_map(difference_map(real, fake, config), config)
    region = None
    if face is not None and config.within_face is not None:
        region = grow_region(face, config.within_face if grow is None else grow)
        binary = np.where(region > 0, binary, 0).astype(np.uint8)
    return clean_mask(binary, config, region, close_size)


def mesh_pair_mask(
    real: np.ndarray, fake: np.ndarray, mesh_face: np.ndarray, config: PairMaskConfig = PairMaskConfig()
) -> np.ndarray:
    """`pair_mask` bounded by a face mesh's `full` region of the crop (`mesh_mask`): grown
    only by `config.mesh_within_face` and closed with `config.mesh_close_size`, since the
    mesh outline is the real one; one filled region on the face, its outline rounded by
    `config.mesh_edge_sigma`."""
    mask = pair_mask(real, fake, config, mesh_face, config.mesh_within_face, config.mesh_close_size)
    sigma = config.mesh_edge_sigma * mask.shape[0] / REFERENCE_SIZE
    if sigma <= 0 or not mask.any():
        return mask
    # the thresholded difference has a ragged edge (codec noise along it); a blur and a cut
    # at half height round it without moving it, and the face region bounds it again
    smooth = np.where(cv2.GaussianBlur(mask, (0, 0), sigma) > 127, 255, 0).astype(np.uint8)
    smooth = np.where(grow_region(mesh_face, config.mesh_within_face) > 0, smooth, 0).astype(np.uint8)
    return fill_holes(largest_regions(smooth, config))  # a thin neck the blur cut leaves specks


def grow_region(face: np.ndarray, fraction: float) -> np.ndarray:
    """A face mask dilated by `fraction` of its side (0: unchanged)."""
    if fraction <= 0:
        return face
    k = _scaled(fraction * REFERENCE_SIZE * 2, face.shape[0])
    return cv2.dilate(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))


def shipped_mask(mask_frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """A dataset's mask video frame cropped with the face's matrix, binarised."""
    grey = mask_frame.max(axis=-1) if mask_frame.ndim == 3 else mask_frame
    crop = warp_crop(grey, np.asarray(matrix).reshape(2, 3), size, interpolation=cv2.INTER_NEAREST)
    return np.where(crop > 127, 255, 0).astype(np.uint8)


def landmark_mask(landmarks: np.ndarray, matrix: np.ndarray, size: int, region: str = "full") -> np.ndarray:
    """The mean face's region fitted to 5 frame-pixel landmarks, in the `size` crop of `matrix`."""
    from dfpipe.pipeline.masks.facemask import landmark_hull_mask

    pts = transform_points(np.asarray(landmarks).reshape(5, 2), np.asarray(matrix).reshape(2, 3))
    return landmark_hull_mask(pts, (size, size), region)


def mesh_mask(mesh: np.ndarray, matrix: np.ndarray, size: int, region: str = "full") -> np.ndarray:
    """The mesh's region in the `size` crop of `matrix`; `mesh`: the faces row's 1404 values
    (or 468 x 2 / 468 x 3) in frame pixels."""
    from dfpipe.pipeline.masks.facemask import mesh_hull_mask

    xy = np.asarray(mesh, dtype=np.float64).reshape(468, -1)[:, :2]
    return mesh_hull_mask(transform_points(xy, np.asarray(matrix).reshape(2, 3)), (size, size), region)


def face_region_mask(
    mesh: np.ndarray | None, landmarks: np.ndarray | None, matrix: np.ndarray, size: int, region: str = "full"
) -> tuple[np.ndarray, str] | None:
    """(mask, source) of a face's region in its crop: from the mesh ("mesh") when the row
    has one, else from the 5 landmarks ("landmarks"); None with neither."""
    if mesh is not None:
        return mesh_mask(mesh, matrix, size, region), "mesh"
    if landmarks is not None:
        return landmark_mask(landmarks, matrix, size, region), "landmarks"
    return None
