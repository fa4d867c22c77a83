"""Self-supervised harmonization data: real face crops whose face region is recoloured
from another face, with the untouched crop as the target (iHarmony4's HCOCO recipe).

A composite is `m * recolour(real) + (1 - m) * real` where the mask `m` is the crop's
`mask` column or, when that is null, the landmark hull of its 5 points. The recolouring
moves the face's colour statistics towards another face's (the synthesis stage's `rct`,
`lct`, `mkl` from `dfpipe.pipeline.synth.colour`, or per-channel histogram matching
`hist`) or shifts brightness / contrast / gamma per channel (`bcg`). Composites are drawn on the fly from a generator seeded by
(seed, epoch, index), so an epoch is reproducible and a resumed run sees the same data.
Validation faces come from held-out videos, never from a training video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow.compute as pc
from skimage.exposure import match_histograms
from torch.utils.data import Dataset

from dfpipe.manifests.codec import decode_image, decode_mask
from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACES_SCHEMA
from dfpipe.models.dovenet import mask_tensor, to_tensor
from dfpipe.pipeline.faces.align import transform_points
from dfpipe.pipeline.masks.facemask import REGIONS, landmark_hull_mask
from dfpipe.pipeline.synth.colour import ColourTransfer

#: transfers from dfpipe.pipeline.synth.colour (`idt` is left out: ~1 s per face, too slow to draw
#: on the fly), plus per-channel histogram matching and lighting shifts
COLOUR_MODES = ("rct", "lct", "mkl")
TRANSFERS = (*COLOUR_MODES, "hist", "bcg")
#: training composites left untouched (composite = real): a face that already matches its
#: frame must come out as it went in, or `--blend dovenet` would recolour good fakes
UNTOUCHED_FRACTION = 0.15
_COLUMNS = ["face_id", "video_id", "image", "mask", "landmarks", "matrix", "label", "split"]


class HarmonizerDataError(ValueError):
    """The dataset directory cannot give harmonization training data."""


@dataclass
class FaceItem:
    """One real crop: encoded bytes plus what is needed to draw its mask."""

    face_id: str
    video_id: str
    image: bytes
    mask: bytes | None
    landmarks: np.ndarray | None  # 5 x 2 in crop pixels
    split: str | None


@dataclass
class LoadReport:
    n_rows: int
    n_fake: int  # skipped: fakes are no restoration target
    n_no_mask: int  # skipped: neither a mask nor landmarks


def load_faces(dataset: str | Path, max_faces: int | None = None, seed: int = 0) -> tuple[list[FaceItem], LoadReport]:
    """Real (and unlabelled) crops of `dataset/faces/`; fakes and crops with neither a mask
    nor landmarks are counted, not used."""
    root = Path(dataset)
    if not (root / "faces").is_dir():
        raise HarmonizerDataError(f"{root}: no faces/ table (run `dfpipe extract` first)")
    table = read_table(root, "faces", FACES_SCHEMA, columns=_COLUMNS)
    n_rows = table.num_rows
    labels = table.column("label")
    is_fake = pc.fill_null(pc.equal(labels, "fake"), False)
    n_fake = int(pc.sum(is_fake).as_py() or 0)
    table = table.filter(pc.invert(is_fake))
    if max_faces is not None and table.num_rows > max_faces:
        keep = np.sort(np.random.default_rng(seed).choice(table.num_rows, max_faces, replace=False))
        table = table.take(keep)
    items, n_no_mask = [], 0
    for row in table.to_pylist():
        landmarks = None
        if row["landmarks"] is not None and row["matrix"] is not None:
            landmarks = transform_points(np.asarray(row["landmarks"], np.float64).reshape(5, 2), row["matrix"])
        if row["mask"] is None and landmarks is None:
            n_no_mask += 1
            continue
        if row["image"] is None:
            n_no_mask += 1
            continue
        items.append(FaceItem(row["face_id"], row["video_id"], row["image"], row["mask"], landmarks, row["split"]))
    return items, LoadReport(n_rows, n_fake, n_no_mask)


def split_by_video(items: list[FaceItem], val_fraction: float = 0.15, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train / validation indices with no video on both sides. Rows whose `split` is
    `val` or `test` are held out when there are any; otherwise a seeded random
    `val_fraction` of the videos (at least one when there are two or more)."""
    marked = [i for i, it in enumerate(items) if it.split in ("val", "test")]
    if marked and len(marked) < len(items):
        held = set(marked)
        return [i for i in range(len(items)) if i not in held], marked
    videos = sorted({it.video_id for it in items})
    if len(videos) < 2:
        raise HarmonizerDataError(
            f"held-out validation needs faces from at least 2 videos/images, found {len(videos)}"
        )
    n_val = min(len(videos) - 1, max(1, math.ceil(val_fraction * len(videos))))
    val_videos = set(np.random.default_rng(seed).permutation(videos)[:n_val].tolist())
    train = [i for i, it in enumerate(items) if it.video_id not in val_videos]
    val = [i for i, it in enumerate(items) if it.video_id in val_videos]
    return train, val


# --------------------------------------------------------------------------- colour moves


def _masked(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return img[mask > 127]


def hist(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-channel histogram matching of `src` pixels to `ref` pixels (scikit-image)."""
    return match_histograms(src.reshape(-1, 1, 3), ref.reshape(-1, 1, 3), channel_axis=-1).reshape(-1, 3).astype(
        np.float32
    )


def bcg(src: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random per-channel gain, brightness, contrast and gamma: lighting changes a
    statistics transfer between two faces would not produce."""
    x = src.astype(np.float32) / 255.0
    gamma = np.exp(rng.uniform(-0.4, 0.4))
    x = x**gamma
    mean = x.mean(0)
    x = (x - mean) * rng.uniform(0.7, 1.3) + mean
    x = x * rng.uniform(0.8, 1.2, size=3) + rng.uniform(-0.12, 0.12)
    return x * 255.0


def recolour(real: np.ndarray, mask: np.ndarray, ref: np.ndarray, ref_mask: np.ndarray, mode: str,
             rng: np.random.Generator) -> np.ndarray:
    """`real` with its masked pixels recoloured by `mode` (towards `ref`'s masked pixels)."""
    src = _masked(real, mask)
    target = _masked(ref, ref_mask)
    if mode == "none" or len(src) < 16 or len(target) < 16:
        return real.copy()
    if mode in COLOUR_MODES:  # the synthesis stage's transfers, so training sees what synthesis makes
        fitted = ColourTransfer.fit(real, ref, mask, mode, seed=int(rng.integers(1 << 31)), bg_mask=ref_mask)
        out = real.copy()
        out[mask > 127] = fitted.apply(src.reshape(-1, 1, 3)).reshape(-1, 3)
        return out
    if mode == "hist":
        moved = hist(src, target)
    elif mode == "bcg":
        moved = bcg(src, rng)
    else:
        raise ValueError(f"transfer must be one of {TRANSFERS}, got {mode!r}")
    out = real.copy()
    out[mask > 127] = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    return out


def composite(real: np.ndarray, recoloured: np.ndarray, mask: np.ndarray) -> np.ndarray:
    a = (mask.astype(np.float32) / 255.0)[..., None]
    return np.clip(np.rint(a * recoloured + (1 - a) * real), 0, 255).astype(np.uint8)


def rct_baseline(comp: np.ndarray, mask: np.ndarray, ring: int | None = None) -> np.ndarray:
    """The weights-free baseline a harmonizer must beat: Reinhard transfer of the masked
    region towards the ring of pixels just outside it (the only reference a harmonizer sees)."""
    ring = ring or max(3, comp.shape[0] // 16)
    hard = (mask > 127).astype(np.uint8)
    outer = cv2.dilate(hard, np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)) - hard
    if hard.sum() < 16 or outer.sum() < 16:
        return comp.copy()
    out = ColourTransfer.fit(comp, comp, hard * 255, "rct", bg_mask=outer * 255).apply(comp)
    return composite(comp, out, mask)


# --------------------------------------------------------------------------- the dataset


class HarmonizationDataset(Dataset):
    """Composite / mask / real triples at `size` x `size`.

    `train=True` draws a fresh composite every epoch (random reference face, transfer,
    mask region, flip, soft edge, and a lighting change of the whole crop so a small set
    of faces still shows the network many frames); `train=False` fixes `repeats`
    composites per face (seeded by position) so validation figures are comparable across
    epochs and runs.
    """

    def __init__(self, items: list[FaceItem], indices: list[int], size: int, train: bool, seed: int = 0,
                 references: list[int] | None = None, repeats: int = 1, cache_bytes: int = 1 << 30) -> None:
        if not indices:
            raise HarmonizerDataError("no faces in this split")
        self.items, self.indices, self.size, self.train, self.seed = items, list(indices), size, train, seed
        self.repeats = max(1, int(repeats))
        # colour references: other faces of the same split (validation never borrows train colours)
        self.references = list(references) if references is not None else list(indices)
        self.epoch = 0
        self._cache: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
        self._cache_ok = len(items) * size * size * 4 <= cache_bytes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices) * self.repeats

    def face(self, k: int, region: str = "full") -> tuple[np.ndarray, np.ndarray]:
        """Crop `k` and its mask resized to the training size (uint8 RGB, uint8 mask)."""
        key = (k, region)
        if key in self._cache:
            return self._cache[key]
        it = self.items[k]
        img = decode_image(it.image)
        if it.mask is not None:
            mask = decode_mask(it.mask)
            if mask.shape != img.shape[:2]:
                mask = cv2.resize(mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        else:
            mask = landmark_hull_mask(it.landmarks, img.shape, region)
        interp = cv2.INTER_AREA if img.shape[0] > self.size else cv2.INTER_LINEAR
        img = cv2.resize(img, (self.size, self.size), interpolation=interp)
        mask = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        if self._cache_ok:
            self._cache[key] = (img, mask)
        return img, mask

    def _reference(self, k: int, rng: np.random.Generator) -> int:
        others = [j for j in self.references if self.items[j].video_id != self.items[k].video_id]
        pool = others or [j for j in self.references if j != k] or [k]
        return pool[int(rng.integers(len(pool)))]

    def sample(self, i: int) -> dict:
        k = self.indices[i % len(self.indices)]
        epoch = self.epoch if self.train else 0
        rng = np.random.default_rng([self.seed, epoch, i, int(self.train)])
        region = REGIONS[int(rng.integers(len(REGIONS)))] if self.train else "full"
        real, mask = self.face(k, region)
        ref_k = self._reference(k, rng)
        ref, ref_mask = self.face(ref_k, "full")
        mode = TRANSFERS[int(rng.integers(len(TRANSFERS)))]
        if self.train and rng.random() < UNTOUCHED_FRACTION:
            mode = "none"
        if self.train:
            if rng.random() < 0.5:
                real, mask = real[:, ::-1], mask[:, ::-1]
            real = np.clip(np.rint(bcg(real.reshape(-1, 3), rng)), 0, 255).astype(np.uint8).reshape(real.shape)
        hard = np.where(mask > 127, 255, 0).astype(np.uint8)
        if self.train and rng.random() < 0.5:  # soft edges, like blending masks at inference
            k_size = 2 * int(rng.integers(1, max(2, self.size // 32))) + 1
            hard = cv2.GaussianBlur(hard, (k_size, k_size), 0)
        moved = recolour(real, mask, ref, ref_mask, mode, rng)
        comp = composite(real, moved, hard)
        return {"composite": comp, "real": np.ascontiguousarray(real), "mask": hard, "mode": mode,
                "face_id": self.items[k].face_id}

    def __getitem__(self, i: int) -> dict:
        s = self.sample(i)
        return {"composite": to_tensor(s["composite"]), "real": to_tensor(s["real"]),
                "mask": mask_tensor(s["mask"])}
