"""Self-blended images made on the fly, as SBI (Shiohara & Yamasaki, CVPR 2022) trains.

`synthesize --method self-blend` stores one blend per track: a few distinct fakes, which
a detector memorises. SBI's strength is a fresh blend for every sample, so the only thing
left to learn is the blending itself (the boundary, the colour and sharpness step). Here a
real face crop is blended with a changed copy of itself while the loader reads it:

- the copy: `SelfBlendParams.draw` and `SelfBlendGenerator`, the same colour, degradation,
  shift and scale ranges as the stored self-blends;
- the mask: the face mesh's region in the crop (`mesh_hull_mask`) where the row has a
  mesh, the mean face fitted to the 5 landmarks otherwise; region drawn per sample
  (full, no_forehead, inner: SBI draws among its hull types), then `deform_mask` (elastic
  warp, erode or dilate, two blurs, a blend ratio), the recipe of the stored fakes;
- the blend: alpha with that soft mask, which is also the segmentation target (M2TR).

A blend is drawn from a generator seeded by (seed, epoch, row): the same run gives the
same blends whatever the number of loader workers or processes, and each epoch new ones.
All pixel work is OpenCV / NumPy calls on the crop.
"""

from __future__ import annotations

import numpy as np

from dfpipe.pipeline.faces.align import transform_points
from dfpipe.pipeline.masks.facemask import (
    REGIONS,
    deform_mask,
    face_scale,
    landmark_hull_mask,
    mesh_hull_mask,
)
from dfpipe.pipeline.synth.blend import alpha_blend
from dfpipe.pipeline.synth.selfblend import SelfBlendGenerator

#: Where training fakes come from: the dataset's stored fakes, self-blends of its reals made
#: per sample, or both.
FAKES = ("dataset", "sbi", "sbi+dataset")
#: The columns a self-blend needs beside the pixels (frame-pixel geometry and the crop matrix).
GEOMETRY_COLUMNS = ("landmarks", "mesh", "matrix")
#: The name of the method self-blended rows carry in metrics (per method breakdowns).
SBI_METHOD = "sbi"


def check_fakes(fakes: str) -> str:
    if fakes not in FAKES:
        raise ValueError(f"--fakes must be one of {', '.join(FAKES)}, got {fakes!r}")
    return fakes


def uses_sbi(fakes: str) -> bool:
    return check_fakes(fakes).startswith("sbi")


def crop_geometry(landmarks, mesh, matrix) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(5 landmarks, 468 mesh points) in crop pixels from a faces row's frame-pixel values
    and its frame -> crop matrix; None where the row lacks them."""
    if matrix is None:
        return None, None
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    lm = transform_points(np.asarray(landmarks, np.float64).reshape(5, 2), m) if landmarks is not None else None
    mesh_xy = None
    if mesh is not None:
        mesh_xy = transform_points(np.asarray(mesh, np.float64).reshape(468, 3)[:, :2], m)
        if not np.isfinite(mesh_xy).all():
            mesh_xy = None
    return lm, mesh_xy


def blend_mask(shape: tuple[int, ...], landmarks5: np.ndarray, mesh_xy: np.ndarray | None,
               rng: np.random.Generator) -> np.ndarray:
    """A soft, deformed face mask (float32, 0..1) for one self-blend."""
    region = REGIONS[int(rng.integers(len(REGIONS)))]
    if mesh_xy is not None:
        binary = mesh_hull_mask(mesh_xy, shape, region)
    else:
        binary = landmark_hull_mask(landmarks5, shape, region)
    return deform_mask(binary, rng, "elastic", scale=face_scale(landmarks5))


def self_blend(image: np.ndarray, landmarks5: np.ndarray, mesh_xy: np.ndarray | None,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(blended RGB uint8, soft mask float32 in [0, 1]) of one face crop.

    `landmarks5` / `mesh_xy` are in the crop's pixels (`crop_geometry`). A blend whose
    mask came out empty (a face at the crop's edge eroded away) is drawn again, at most a
    few times; a face that never yields one is returned unchanged with an empty mask."""
    if landmarks5 is None:
        raise ValueError("a self-blend needs the face's landmarks (the row has none)")
    for _ in range(4):
        fg, _full = SelfBlendGenerator(rng)(image, 0, landmarks5)
        mask = blend_mask(image.shape, landmarks5, mesh_xy, rng)
        if mask.max() > 0.05:
            return alpha_blend(fg, image, mask), mask
    return image.copy(), np.zeros(image.shape[:2], np.float32)


def sbi_rng(seed: int, epoch: int, row: int) -> np.random.Generator:
    """The generator of one row's blend in one epoch."""
    return np.random.default_rng([int(seed), int(epoch), int(row), 17])
