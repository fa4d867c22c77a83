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
from dfpipe.train.sbi import GEOMETRY_COLUMNS, SBI_METHOD, crop_geometry, sbi_rng, self_blend, uses_sbi
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
    its integer label `y` (0 real, 1 fake, -1 unknown) and its resolved `split`.

    `roots` are the dataset directories read (`root` the first). Rows with `sbi_of` >= 0
    stand for a fresh self-blend of that real row (`with_self_blends`)."""

    root: Path
    parts: list[Path]
    table: pd.DataFrame
    roots: list[Path] = field(default_factory=list)

    def select(self, split: str | None, labelled: bool = True) -> pd.DataFrame:
        t = self.table
        if split is not None:
            t = t[t["split"] == split]
        if labelled:
            t = t[t["y"] >= 0]
        return t

    @property
    def name(self) -> str:
        """How messages name the data: the directory, or all of them."""
        return str(self.root) if len(self.roots) <= 1 else " + ".join(str(r) for r in self.roots)


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


def dataset_dirs(dataset_dir: str | Path | Sequence[str | Path]) -> list[Path]:
    """One dataset directory or several, as a list (order kept, repeats dropped)."""
    items = [dataset_dir] if isinstance(dataset_dir, (str, Path)) else list(dataset_dir)
    if not items:
        raise DataError("no dataset directory given")
    return list(dict.fromkeys(Path(p) for p in items))


def _read_faces(root: Path, first_part: int) -> tuple[list[Path], pd.DataFrame]:
    """The index columns of one dataset's faces/ parts (numbered from `first_part`)."""
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
        t["part"] = first_part + i
        t["rg"], t["rg_row"] = _part_positions(path)
        frames.append(t)
    faces = pd.concat(frames, ignore_index=True)
    faces["root"] = str(root)
    return parts, faces


def load_index(dataset_dir: str | Path | Sequence[str | Path], seed: int = 0,
               fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, keep_splits: bool = False) -> FaceIndex:
    """Read `faces/` (index columns only) and `videos/` of one or several dataset
    directories and resolve labels and splits.

    Several directories are read as one dataset: a video id met in more than one (the
    reals each fakes dataset carries along) is taken from the first that has its faces,
    and a face id is counted once. Splits are resolved over the union, so a source's
    reals and its fakes stay on one side whichever directory holds them. Splits an earlier
    run kept for this `seed` (DS/splits/ of any of them) are reused; `keep_splits`
    (training) writes the resolved ones back into each directory for its own videos, so
    evaluation sees the same assignment."""
    roots = dataset_dirs(dataset_dir)
    parts: list[Path] = []
    frames, video_tables = [], []
    for root in roots:
        root_parts, faces = _read_faces(root, len(parts))
        parts += root_parts
        frames.append(faces)
        video_tables.append(read_table(root, "videos", VIDEOS_SCHEMA, columns=_VIDEO_COLUMNS).to_pandas())
    faces = pd.concat(frames, ignore_index=True)
    if len(roots) > 1:
        # a video's faces come from the first directory that has them; then one row per face id
        owner = faces.drop_duplicates("video_id")[["video_id", "root"]].set_index("video_id")["root"]
        faces = faces[faces["root"] == faces["video_id"].map(owner)]
        faces = faces.drop_duplicates("face_id", keep="first").reset_index(drop=True)
    for col in ("label", "split", "frame_index", "track_id"):
        if col not in faces:
            faces[col] = None

    videos = pd.concat(video_tables, ignore_index=True) if video_tables else pd.DataFrame(columns=_VIDEO_COLUMNS)
    # within a directory its last row wins (a re-run); across directories the first
    videos = pd.concat([t.drop_duplicates("video_id", keep="last") for t in video_tables if len(t)] or [videos],
                       ignore_index=True).drop_duplicates("video_id", keep="first")
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
    faces["sbi_of"] = np.int64(-1)
    table = videos if len(videos) else None
    given = given_split_videos(faces, table)
    fixed: dict[str, str] = {}
    for root in reversed(roots):  # the first directory's record wins
        fixed.update(read_kept_splits(root, seed))
    name = str(roots[0]) if len(roots) == 1 else " + ".join(str(r) for r in roots)
    try:
        faces["split"] = assign_splits(faces, table, seed=seed, fractions=fractions, fixed=fixed)
    except ValueError as exc:
        raise DataError(f"{name}: {exc}") from exc
    if keep_splits:
        for root in roots:
            own = faces[faces["root"] == str(root)]
            if len(own):
                write_kept_splits(root, own, table, seed, given)
    return FaceIndex(roots[0], parts, faces, roots)


def with_self_blends(index: FaceIndex, fakes: str) -> FaceIndex:
    """The index as training with `fakes` sees it: `dataset` as it is; `sbi` its real
    faces plus one self-blend row per real face (label fake, method `sbi`, video
    `<video_id>-sbi`); `sbi+dataset` every row plus those self-blends. A self-blend row
    points at its real row's pixels (`sbi_of`); the blend itself is drawn when it is read."""
    if not uses_sbi(fakes):
        return index
    t = index.table
    kept = (t if fakes == "sbi+dataset" else t[t["y"] == 0]).reset_index(drop=True)
    reals = kept[kept["y"] == 0]
    if reals.empty:
        raise DataError(f"{index.name}: --fakes {fakes} self-blends real faces, and there are none")
    blends = reals.copy()
    blends["sbi_of"] = reals.index.to_numpy(np.int64)
    blends["face_id"] = reals["face_id"].astype(str) + "-sbi"
    blends["video_id"] = reals["video_id"].astype(str) + "-sbi"
    blends["label"], blends["y"], blends["method"] = "fake", 1, SBI_METHOD
    blends.index = np.arange(len(kept), len(kept) + len(blends))
    return FaceIndex(index.root, index.parts, pd.concat([kept, blends]), index.roots)


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
    img = decode_image(image)
    if y == 1 and mask is not None:
        return finish_sample(img, decode_mask(mask).astype(np.float32) / 255.0, True, spec, rng, aug)
    return finish_sample(img, None, y == 0, spec, rng, aug)


def finish_sample(
    img: np.ndarray,
    mask: np.ndarray | None,
    known: bool,
    spec: ImageSpec,
    rng: np.random.Generator | None,
    aug: AugmentConfig,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Resize a decoded face and its float mask (None: zeros), augment, normalise."""
    img = resize_to(img, spec.height, spec.width)
    if mask is None:
        m = np.zeros((spec.height, spec.width), np.float32)
    else:
        m = resize_to(mask, spec.height, spec.width)
    if rng is not None:
        img, m = augment(img, m, rng, aug)
    return to_tensor(img, spec), torch.from_numpy(np.ascontiguousarray(m))[None], known


def self_blend_sample(
    image: bytes,
    geometry: tuple,
    spec: ImageSpec,
    blend_rng: np.random.Generator,
    rng: np.random.Generator | None,
    aug: AugmentConfig,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """A fresh self-blend of a real face (`dfpipe.train.sbi`): its blend mask is the target."""
    landmarks, mesh = crop_geometry(*geometry)
    fake, mask = self_blend(decode_image(image), landmarks, mesh, blend_rng)
    return finish_sample(fake, mask, True, spec, rng, aug)


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
        return (f"{index.name}: no labelled faces: none of its {len(index.table)} faces is labelled real or fake "
                f"(files extracted directly are 'unknown'); {HOW_TO_LABEL}")
    present = labelled["split"].value_counts()
    have = ", ".join(f"{name} ({n} faces)" for name, n in present.items())
    return f"{index.name}: no labelled faces in split {split!r}; the labelled faces are in: {have} (choose with --split)"


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
        self.sbi_of = index.table["sbi_of"].to_numpy(np.int64) if "sbi_of" in index.table else np.full(len(self.y), -1)
        # a self-blend row has its real row's part, row group and row: it reads those pixels
        self.columns = list(cfg.columns) + (list(GEOMETRY_COLUMNS) if (self.sbi_of >= 0).any() else [])
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
                names = [c for c in self.columns if c in files[p].schema_arrow.names]
                cache[g] = files[p].read_row_group(int(self.rg[row]), columns=names).to_pydict()
            data = cache[g]
            r = int(self.rg_row[row])
            y = int(self.y[row])
            rng = None
            if self.cfg.train:
                rng = np.random.default_rng([self.cfg.seed, self.epoch, self.rank, worker, pos, 13])
            try:
                if self.sbi_of[row] >= 0:
                    geometry = tuple(data.get(c, [None] * (r + 1))[r] for c in GEOMETRY_COLUMNS)
                    blend_rng = sbi_rng(self.cfg.seed, self.epoch if self.cfg.train else 0, int(row))
                    image, mask, known = self_blend_sample(data["image"][r], geometry, self.cfg.spec, blend_rng, rng,
                                                           self.cfg.augment)
                else:
                    image, mask, known = make_sample(data["image"][r], data["mask"][r], y, self.cfg.spec, rng,
                                                     self.cfg.augment)
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
