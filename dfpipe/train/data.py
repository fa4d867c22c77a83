"""A streaming dataset over the `faces/` parts of a dataset directory.

The index (everything but pixels) is read once with column projection; the pixels are
streamed by Parquet row group. Each epoch has one global order of rows: row groups in a
seeded random order, rows shuffled inside each group, the minority class optionally
oversampled. That order is cut into one contiguous chunk per DDP rank (padded so every
rank takes the same number of steps) and per DataLoader worker, so every row is read by
exactly one shard, and each shard touches only a few row groups. A shuffle buffer over
the shard's rows mixes neighbouring groups; a row group's bytes are held only until the
last of its rows has left the buffer.

All randomness comes from generators seeded by (seed, epoch, rank, worker, position),
so an epoch is reproducible and `skip_batches` resumes it mid-way without reading the
skipped rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dfpipe.manifests.codec import decode_image, decode_mask
from dfpipe.manifests.parts import list_parts, read_table
from dfpipe.manifests.schema import HOW_TO_LABEL, VIDEOS_SCHEMA
from dfpipe.train.augment import AugmentConfig, augment
from dfpipe.train.splits import (
    DEFAULT_FRACTIONS,
    assign_splits,
    given_split_videos,
    read_kept_splits,
    write_kept_splits,
)

LABEL_IDS = {"real": 0, "fake": 1}
_INDEX_COLUMNS = ["face_id", "video_id", "frame_index", "track_id", "label", "split"]
_VIDEO_COLUMNS = ["video_id", "label", "method", "compression", "source_video_id", "target_video_id", "split", "meta"]


class DataError(ValueError):
    """The dataset directory cannot be trained on (no faces, bad rows, missing labels)."""


# --------------------------------------------------------------------------- the index


@dataclass
class FaceIndex:
    """Every face row without pixels, with where its bytes live (`part`, `rg`, `rg_row`),
    its integer label `y` (0 real, 1 fake, -1 unknown) and its resolved `split`."""

    root: Path
    parts: list[Path]
    table: pd.DataFrame

    def select(self, split: str | None, labelled: bool = True) -> pd.DataFrame:
        t = self.table
        if split is not None:
            t = t[t["split"] == split]
        if labelled:
            t = t[t["y"] >= 0]
        return t


def _part_positions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    rg = np.repeat(np.arange(len(sizes)), sizes)
    rg_row = np.concatenate([np.arange(n) for n in sizes]) if sizes else np.zeros(0, int)
    return rg, rg_row


def _meta_value(meta: object, key: str) -> str | None:
    """`key` of a video's meta JSON, if set."""
    if not isinstance(meta, str) or key not in meta:
        return None
    try:
        value = json.loads(meta).get(key)
    except (json.JSONDecodeError, AttributeError):
        return None
    return str(value) if value else None


def _identity(meta: object) -> str | None:
    """The named identity in a video's meta JSON (Celeb-DF's id<t>), if any."""
    return _meta_value(meta, "identity")


def load_index(dataset_dir: str | Path, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
               keep_splits: bool = False) -> FaceIndex:
    """Read `faces/` (index columns only) and `videos/` and resolve labels and splits.

    Splits an earlier run kept for this `seed` (DS/splits/) are reused; `keep_splits`
    (training) writes the resolved ones back, so evaluation sees the same assignment."""
    root = Path(dataset_dir)
    parts = list_parts(root, "faces")
    if not parts:
        raise DataError(f"{root}: no faces/ parts (run `dfpipe extract` first)")
    frames = []
    for i, path in enumerate(parts):
        try:
            pf = pq.ParquetFile(path)
            cols = [c for c in _INDEX_COLUMNS if c in pf.schema_arrow.names]
            t = pf.read(columns=cols).to_pandas()
        except Exception as exc:  # a damaged part is named, not a traceback
            raise DataError(f"{path}: unreadable faces part ({exc})") from exc
        missing = sorted({"face_id", "video_id", "image"} - set(pf.schema_arrow.names))
        if missing:
            raise DataError(f"{path}: not a faces part (no column {', '.join(missing)})")
        t["part"] = i
        t["rg"], t["rg_row"] = _part_positions(path)
        frames.append(t)
    faces = pd.concat(frames, ignore_index=True)
    for col in ("label", "split", "frame_index", "track_id"):
        if col not in faces:
            faces[col] = None

    videos = read_table(root, "videos", VIDEOS_SCHEMA, columns=_VIDEO_COLUMNS).to_pandas()
    videos = videos.drop_duplicates("video_id", keep="last")
    videos["identity"] = videos["meta"].map(_identity)
    if len(videos):
        meta = videos.set_index("video_id")
        # a face's own real/fake wins; "unknown" or null falls back to its video's label
        known = faces["label"].isin(list(LABEL_IDS))
        faces["label"] = faces["label"].where(known, faces["video_id"].map(meta["label"]))
        for col in ("method", "compression"):
            faces[col] = faces["video_id"].map(meta[col])
        # the DeeperForensics perturbation of a `dfpipe perturb` copy ("GB-3", "none")
        faces["perturbation"] = faces["video_id"].map(meta["meta"].map(lambda m: _meta_value(m, "perturbation")))
    else:
        faces["method"] = None
        faces["compression"] = None
        faces["perturbation"] = None
    faces["y"] = faces["label"].map(LABEL_IDS).fillna(-1).astype(np.int64)
    table = videos if len(videos) else None
    given = given_split_videos(faces, table)
    try:
        faces["split"] = assign_splits(faces, table, seed=seed, fractions=fractions, fixed=read_kept_splits(root, seed))
    except ValueError as exc:
        raise DataError(f"{root}: {exc}") from exc
    if keep_splits:
        write_kept_splits(root, faces, table, seed, given)
    return FaceIndex(root, parts, faces)


# --------------------------------------------------------------------------- per-sample processing


@dataclass(frozen=True)
class ImageSpec:
    """What the model expects: square or rectangular input and its normalisation."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_default_cfg(cls, cfg) -> "ImageSpec":
        get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
        size = get("input_size")
        if isinstance(size, int):
            h = w = size
        else:
            h, w = (int(s) for s in tuple(size)[-2:])
        return cls(h, w, tuple(float(v) for v in get("mean", (0.485, 0.456, 0.406))), tuple(float(v) for v in get("std", (0.229, 0.224, 0.225))))


def resize_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    shrink = img.shape[0] > h or img.shape[1] > w
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_tensor(img: np.ndarray, spec: ImageSpec) -> torch.Tensor:
    """RGB uint8 (H x W x 3) -> normalised float CHW."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return (x - mean) / std


def make_sample(
    image: bytes,
    mask: bytes | None,
    y: int,
    spec: ImageSpec,
    rng: np.random.Generator | None,
    aug: AugmentConfig,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Decode, resize, augment (when `rng` is given) and normalise one face.

    The mask target is zeros for a real face, the decoded mask for a fake that has one,
    and zeros flagged unknown (`mask_known=False`) for a fake without one."""
    img = resize_to(decode_image(image), spec.height, spec.width)
    if y == 1 and mask is not None:
        m = resize_to(decode_mask(mask), spec.height, spec.width).astype(np.float32) / 255.0
        known = True
    else:
        m = np.zeros((spec.height, spec.width), np.float32)
        known = y == 0
    if rng is not None:
        img, m = augment(img, m, rng, aug)
    return to_tensor(img, spec), torch.from_numpy(np.ascontiguousarray(m))[None], known


# --------------------------------------------------------------------------- the stream


def shuffle_buffer(items: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The order a streaming shuffle buffer of `size` would emit `items` in."""
    if size <= 1:
        return items.copy()
    out = np.empty_like(items)
    buf = list(items[:size])
    k = 0
    for item in items[size:]:
        j = int(rng.integers(len(buf)))
        out[k] = buf[j]
        buf[j] = item
        k += 1
    rest = np.array(buf, dtype=items.dtype)
    out[k:] = rest[rng.permutation(len(rest))]
    return out


def round_robin_order(batch_counts: Sequence[int]) -> list[int]:
    """Which DataLoader worker each batch of an epoch comes from: one batch per worker in
    turn, exhausted workers dropping out of the cycle."""
    order: list[int] = []
    left = list(batch_counts)
    while any(left):
        for w, n in enumerate(left):
            if n:
                order.append(w)
                left[w] -= 1
    return order


@dataclass
class StreamConfig:
    split: str | None
    spec: ImageSpec
    train: bool = False  # augment and pad shards to equal length
    balance: bool = False  # oversample the minority class (train only)
    shuffle: bool = False
    buffer: int = 512
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    columns: tuple[str, ...] = ("image", "mask")


def _no_faces_message(index: FaceIndex, split: str | None) -> str:
    """Why a split has nothing to train or test on, and what to do about it."""
    labelled = index.select(None)
    if labelled.empty:
        return (f"{index.root}: no labelled faces: none of its {len(index.table)} faces is labelled real or fake "
                f"(files extracted directly are 'unknown'); {HOW_TO_LABEL}")
    present = labelled["split"].value_counts()
    have = ", ".join(f"{name} ({n} faces)" for name, n in present.items())
    return f"{index.root}: no labelled faces in split {split!r}; the labelled faces are in: {have} (choose with --split)"


class FaceStream(IterableDataset):
    """Yields dicts `image` (3 x H x W), `label` (float), `mask` (1 x H x W),
    `mask_known` (bool) and `row` (position in `index.table`) for one split."""

    def __init__(self, index: FaceIndex, cfg: StreamConfig, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        rows = index.select(cfg.split)
        if rows.empty:
            raise DataError(_no_faces_message(index, cfg.split))
        self.parts = [str(p) for p in index.parts]
        self.cfg = cfg
        self.rank, self.world_size = rank, world_size
        self.rows = rows.index.to_numpy(np.int64)
        self.y = index.table["y"].to_numpy(np.int64)
        self.group = (index.table["part"].to_numpy(np.int64) << 32) | index.table["rg"].to_numpy(np.int64)
        self.part = index.table["part"].to_numpy(np.int64)
        self.rg = index.table["rg"].to_numpy(np.int64)
        self.rg_row = index.table["rg_row"].to_numpy(np.int64)
        self.epoch = 0
        self.skip_batches = 0
        self.batch_size = 1

    # -- order ---------------------------------------------------------------

    def set_epoch(self, epoch: int, skip_batches: int = 0, batch_size: int = 1) -> None:
        """Select the epoch's order; `skip_batches` batches of `batch_size` (per rank) are
        dropped from the front without being read (exact mid-epoch resume)."""
        self.epoch, self.skip_batches, self.batch_size = epoch, skip_batches, batch_size

    def epoch_order(self) -> np.ndarray:
        """The global order of row ids of this epoch (all ranks and workers)."""
        rows = self.rows
        rng = np.random.default_rng([self.cfg.seed, self.epoch, 7])
        if self.cfg.balance:
            ys = self.y[rows]
            counts = [int((ys == c).sum()) for c in (0, 1)]
            if min(counts) > 0 and counts[0] != counts[1]:
                minority = rows[ys == int(np.argmin(counts))]
                extra = rng.choice(minority, size=abs(counts[0] - counts[1]), replace=True)
                rows = np.concatenate([rows, extra])
        if not self.cfg.shuffle:
            return np.sort(rows, kind="stable")
        groups = self.group[rows]
        unique = np.unique(groups)
        rank_of = {g: i for i, g in enumerate(rng.permutation(unique))}
        jitter = rng.random(len(rows))
        order = np.lexsort((jitter, np.array([rank_of[g] for g in groups])))
        return rows[order]

    def rank_rows(self, rank: int | None = None) -> np.ndarray:
        """This rank's contiguous chunk; padded (wrapping around) when training so all
        ranks take the same number of steps."""
        rank = self.rank if rank is None else rank
        order = self.epoch_order()
        if self.world_size == 1:
            return order
        if self.cfg.train:
            per = -(-len(order) // self.world_size)
            order = np.resize(order, per * self.world_size)
            return order[rank * per : (rank + 1) * per]
        return np.array_split(order, self.world_size)[rank]

    def shard_rows(self, worker: int, n_workers: int, rank: int | None = None) -> np.ndarray:
        """The rows a (rank, worker) shard emits, in emission order, before any skip."""
        chunk = np.array_split(self.rank_rows(rank), n_workers)[worker]
        if self.cfg.shuffle:
            rank = self.rank if rank is None else rank
            rng = np.random.default_rng([self.cfg.seed, self.epoch, rank, worker, 11])
            chunk = shuffle_buffer(chunk, self.cfg.buffer, rng)
        return chunk

    def __len__(self) -> int:
        """Rows this rank yields per epoch (padding and oversampling included)."""
        return len(self.rank_rows())

    # -- reading -------------------------------------------------------------

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # After skipping k batches the loader starts its cycle at worker 0 again, so worker
        # ids are rotated to make worker 0 play the shard that produced batch k.
        counts = [-(-len(c) // self.batch_size) for c in np.array_split(self.rank_rows(), n_workers)]
        order = round_robin_order(counts)
        k = min(self.skip_batches, len(order))
        first = order[k] if k < len(order) else 0
        shard = (worker + first) % n_workers
        skip = order[:k].count(shard) * self.batch_size
        yield from self._read(self.shard_rows(shard, n_workers), start=skip, worker=shard)

    def _read(self, rows: np.ndarray, start: int, worker: int) -> Iterator[dict]:
        todo = rows[start:]
        remaining: dict[int, int] = {}
        for g in self.group[todo]:
            remaining[int(g)] = remaining.get(int(g), 0) + 1
        cache: dict[int, dict[str, list]] = {}
        files: dict[int, pq.ParquetFile] = {}
        for pos, row in enumerate(todo, start=start):
            g = int(self.group[row])
            if g not in cache:
                p = int(self.part[row])
                if p not in files:
                    files[p] = pq.ParquetFile(self.parts[p])
                cache[g] = files[p].read_row_group(int(self.rg[row]), columns=list(self.cfg.columns)).to_pydict()
            data = cache[g]
            r = int(self.rg_row[row])
            y = int(self.y[row])
            rng = None
            if self.cfg.train:
                rng = np.random.default_rng([self.cfg.seed, self.epoch, self.rank, worker, pos, 13])
            try:
                image, mask, known = make_sample(data["image"][r], data["mask"][r], y, self.cfg.spec, rng, self.cfg.augment)
            except (ValueError, TypeError) as exc:
                raise DataError(f"{self.parts[int(self.part[row])]} row group {int(self.rg[row])} row {r}: {exc}") from exc
            remaining[g] -= 1
            if remaining[g] == 0:
                del cache[g]
            yield {"image": image, "label": torch.tensor(float(y)), "mask": mask, "mask_known": known, "row": int(row)}


def make_loader(stream: FaceStream, batch_size: int, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over a stream; workers are re-created each epoch so `set_epoch` reaches
    them. The loader gets its own generator: its base seed is unused (the stream seeds
    itself) and drawing it from the global RNG would shift the model's random stream
    between an uninterrupted and a resumed run."""
    return DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
    )
