"""Video-level temporal fusion (M2TR's VTF) on a trained frame detector.

The frame model (an M2TR or MAT checkpoint of `dfpipe train`) stays frozen: its pooled
per-face features (`out["feature"]`) are extracted once per split, grouped into face tracks
(one sequence per video_id x track_id, in frame order), and a small temporal transformer
(`dfpipe.models.vtf.VTF`) learns one fake logit per track. The head is stored inside a copy
of the frame checkpoint under `ckpt["fusion"]`, so one file scores frames and videos.

Training sees clips of at most `clip` consecutive frames (random crops of the train tracks,
placed at a random offset of the position table so every position is trained); scoring
sees each whole track up to the head's `max_frames`, evenly subsampled when longer.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from dfpipe.manifests.schema import SPLITS
from dfpipe.models.registry import model_from_checkpoint
from dfpipe.models.vtf import VTF, VTFConfig
from dfpipe.runtime.checkpoint import CheckpointError, load_checkpoint, plain, save_checkpoint
from dfpipe.runtime.device import resolve_device
from dfpipe.runtime.progress import progress_bar
from dfpipe.train.data import DataError, FaceIndex, FaceStream, ImageSpec, StreamConfig, load_index
from dfpipe.train.inference import score_stream_features
from dfpipe.train.shards import readable_datasets

#: the faces-table columns `frame_features` returns (`label` is the 0/1 `y`, `label_name` the word)
FACE_COLUMNS = ["face_id", "video_id", "track_id", "frame_index", "label", "y", "split", "method", "compression",
                "perturbation"]
#: how many tracks one scoring forward holds
_SCORE_BATCH = 64


# --------------------------------------------------------------------------- frame features


def _load(checkpoint: str | Path | dict[str, Any]) -> dict[str, Any]:
    return checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location="cpu")


@dataclass
class _FrameModel:
    """A frozen frame detector with what scoring its faces needs."""

    model: nn.Module
    spec: ImageSpec
    index: FaceIndex
    device: torch.device


def _frame_model(ckpt: dict[str, Any], dataset_dir: str | Path | Sequence[str | Path], device: str | None) -> _FrameModel:
    dirs, _ = readable_datasets(dataset_dir)  # WebDataset shards of an export, as train reads them
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt, dev)
    model.requires_grad_(False)
    if not hasattr(model, "num_features"):
        raise CheckpointError(f"{ckpt['model_name']} gives no per-face feature for temporal fusion")
    spec = ImageSpec.from_default_cfg(ckpt["default_cfg"])
    index = load_index(dirs, seed=int(ckpt["config"].get("seed", 0)))  # the training run's splits
    return _FrameModel(model, spec, index, dev)


def _check_split(split: str | None) -> str | None:
    if split not in (None, *SPLITS, "all"):
        raise DataError(f"split must be one of {', '.join((*SPLITS, 'all'))}, got {split!r}")
    return None if split in (None, "all") else split


def _extract(fm: _FrameModel, split: str | None, batch: int, workers: int, amp: bool,
             progress: bool) -> tuple[pd.DataFrame, np.ndarray]:
    stream = FaceStream(fm.index, StreamConfig(split, fm.spec))  # DataError when the split has no labelled faces
    with progress_bar(progress) as bar:
        task = bar.add_task(f"features {split or 'all'}", total=len(stream))
        rows, probs, feats = score_stream_features(fm.model, stream, batch, fm.device, workers=workers, amp=amp,
                                                   progress=lambda n: bar.advance(task, n))
    faces = fm.index.table.loc[rows, FACE_COLUMNS].reset_index(drop=True)
    faces = faces.rename(columns={"label": "label_name", "y": "label"})
    faces["prob"] = probs
    return faces, feats


def frame_features(
    checkpoint: str | Path, dataset_dir: str | Path, split: str | None, batch: int = 32, workers: int = 0,
    device: str | None = None, amp: bool = True, progress: bool = False,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The faces of `split` (None / "all": every labelled face) with the frozen frame model's
    fake probability (`prob`) and pooled feature: (faces table, float32 features N x D), row
    i of one being row i of the other. `label` is 0 real / 1 fake (`label_name` the word)."""
    split = _check_split(split)
    fm = _frame_model(_load(checkpoint), dataset_dir, device)
    return _extract(fm, split, batch, workers, amp, progress)


# --------------------------------------------------------------------------- tracks


@dataclass
class TrackSeq:
    """One face track (or one clip of it): positions in the faces table, in frame order."""

    video_id: str
    track_id: int
    label: int
    rows: np.ndarray
    feats: np.ndarray  # (T, D) float32


def _labels(faces: pd.DataFrame) -> pd.Series:
    """0 real / 1 fake per face; -1 where a face has no label (videos scored by predict)."""
    if "label" not in faces:
        return pd.Series(-1, index=faces.index, dtype=np.int64)
    return pd.to_numeric(faces["label"], errors="coerce").fillna(-1).astype(np.int64)


def _track_rows(faces: pd.DataFrame) -> list[tuple[str, int, int, np.ndarray]]:
    """(video_id, track_id, label, row positions in frame order) per track. Faces without a
    track id form one track per video; without a frame index they keep their table order."""
    t = pd.DataFrame({
        "video_id": faces["video_id"].astype(str).to_numpy(),
        "track_id": pd.to_numeric(faces["track_id"], errors="coerce").fillna(-1).astype(np.int64).to_numpy(),
        "frame": pd.to_numeric(faces["frame_index"], errors="coerce").fillna(-1).to_numpy(),
        "pos": np.arange(len(faces)),
    })
    t = t.sort_values(["video_id", "track_id", "frame", "pos"], kind="stable")
    labels = _labels(faces).to_numpy()
    out = []
    for (vid, tid), g in t.groupby(["video_id", "track_id"], sort=False):
        rows = g["pos"].to_numpy(np.int64)
        out.append((str(vid), int(tid), int(labels[rows[0]]), rows))
    return out


def track_sequences(faces: pd.DataFrame, feats: np.ndarray, clip: int) -> list[TrackSeq]:
    """One sequence per (video_id, track_id), frames in frame_index order; tracks longer than
    `clip` are cut into consecutive clips of at most `clip` frames (`clip` < 1: whole tracks)."""
    if len(faces) != len(feats):
        raise ValueError(f"{len(faces)} faces but {len(feats)} feature rows")
    out = []
    for vid, tid, label, rows in _track_rows(faces):
        step = clip if clip >= 1 else len(rows)
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            out.append(TrackSeq(vid, tid, label, part, feats[part]))
    return out


def _eval_rows(rows: np.ndarray, max_frames: int) -> np.ndarray:
    """The whole track, or `max_frames` of it evenly spread when it is longer."""
    if len(rows) <= max_frames:
        return rows
    return rows[np.linspace(0, len(rows) - 1, max_frames).round().astype(np.int64)]


def _pad(seqs: list[np.ndarray], offsets: list[int] | None = None) -> tuple[torch.Tensor, ...]:
    """(B, T, D) features, (B, T) padding mask and (B, T) positions of ragged sequences."""
    t = max(len(s) for s in seqs)
    d = seqs[0].shape[1]
    x = np.zeros((len(seqs), t, d), np.float32)
    mask = np.ones((len(seqs), t), bool)
    pos = np.zeros((len(seqs), t), np.int64)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
        mask[i, :len(s)] = False
        off = offsets[i] if offsets else 0
        pos[i] = off  # padding points at a valid slot; the mask hides it
        pos[i, :len(s)] += np.arange(len(s))
    return torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(pos)


# --------------------------------------------------------------------------- scoring


def has_fusion(ckpt: dict[str, Any]) -> bool:
    """Whether a checkpoint carries a temporal fusion head (`train_fusion` wrote it)."""
    entry = ckpt.get("fusion")
    return isinstance(entry, dict) and entry.get("kind") == "vtf" and "state_dict" in entry


def wants_vtf(ckpt: dict[str, Any], fusion: str, checkpoint: str | Path) -> bool:
    """Whether evaluate / predict score videos with the checkpoint's VTF head: `fusion` auto
    (when it has one), mean (never) or vtf (a DataError without a head)."""
    if fusion not in ("auto", "mean", "vtf"):
        raise DataError(f"--fusion must be auto, mean or vtf, got {fusion!r}")
    if fusion == "vtf" and not has_fusion(ckpt):
        raise DataError(f"--fusion vtf: {checkpoint} has no VTF head; train one with `dfpipe train ... --fusion vtf`")
    return fusion != "mean" and has_fusion(ckpt)


def load_fusion(ckpt: dict[str, Any], device: str | torch.device | None = None) -> VTF:
    """The checkpoint's VTF head in eval mode."""
    if not has_fusion(ckpt):
        raise CheckpointError("the checkpoint holds no temporal fusion head; add one with train_fusion")
    entry = ckpt["fusion"]
    head = VTF(VTFConfig(**entry["config"]))
    head.load_state_dict(entry["state_dict"], strict=True)
    return head.to(resolve_device(device)).eval()


@torch.no_grad()
def _track_probs(head: VTF, feats: np.ndarray, tracks: list[np.ndarray]) -> np.ndarray:
    """VTF fake probability of each track (row positions), whole track up to max_frames."""
    was_training = head.training
    head.eval()
    device = next(head.parameters()).device
    out = []
    for i in range(0, len(tracks), _SCORE_BATCH):
        seqs = [feats[_eval_rows(r, head.cfg.max_frames)] for r in tracks[i:i + _SCORE_BATCH]]
        x, mask, _ = _pad(seqs)
        out.append(torch.sigmoid(head(x.to(device), mask.to(device)).float()).cpu().numpy())
    head.train(was_training)
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0, np.float64)


def _video_table(head: VTF, faces: pd.DataFrame, feats: np.ndarray) -> pd.DataFrame:
    tracks = _track_rows(faces)
    probs = _track_probs(head, feats, [rows for *_, rows in tracks])
    per_track = pd.DataFrame({"video_id": [t[0] for t in tracks], "prob": probs})
    by_track = per_track.groupby("video_id", sort=True)["prob"]
    keyed = faces.assign(video_id=faces["video_id"].astype(str), label=_labels(faces))
    for col in ("method", "compression"):
        if col not in keyed:
            keyed[col] = None
    grouped = keyed.groupby("video_id", sort=True)
    table = pd.DataFrame({
        "label": grouped["label"].first(),
        "method": grouped["method"].first(),
        "compression": grouped["compression"].first(),
        "prob_vtf": by_track.max(),
        "prob_mean": grouped["prob"].mean(),
        "n_frames": grouped["prob"].size(),
        "n_tracks": by_track.size(),
    })
    return table.reset_index()


def fusion_scores(checkpoint_or_ckpt: str | Path | dict[str, Any], faces: pd.DataFrame, feats: np.ndarray,
                  device: str | None = None) -> pd.DataFrame:
    """One row per video: video_id, label, method, compression, prob_vtf, prob_mean,
    n_frames, n_tracks (sorted by video_id, as metrics.video_scores orders them).

    A video's VTF probability is the MAX over its tracks: FF++-style labels call a video fake
    when any face in it is swapped, and a fake may hold one swapped face among real ones, so a
    mean over tracks (even weighted by length) would dilute exactly the evidence that decides
    the label. `prob_mean` is the baseline "M2TR mean": the mean frame probability over all
    of the video's faces, as metrics.video_scores computes it."""
    head = load_fusion(_load(checkpoint_or_ckpt), device)
    if len(faces) != len(feats):
        raise ValueError(f"{len(faces)} faces but {len(feats)} feature rows")
    if feats.ndim != 2 or feats.shape[1] != head.cfg.dim_in:
        raise ValueError(f"features of shape {feats.shape}: the head reads {head.cfg.dim_in} per face "
                         "(features of another frame model?)")
    return _video_table(head, faces, feats)


def video_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC, NaN when one class is missing."""
    labels = np.asarray(labels)
    if labels.size == 0 or np.unique(labels).size < 2:
        return math.nan
    return float(roc_auc_score(labels, probs))


# --------------------------------------------------------------------------- training


def _need_tracks(tracks: list, faces: pd.DataFrame, split: str, both: bool) -> None:
    """DataError unless `split` has tracks (of both classes when `both`)."""
    if not tracks:
        raise DataError(f"split {split!r} has no face tracks to fuse")
    labels = {t[2] for t in tracks}
    if both and len(labels) < 2:
        only = "real" if labels == {0} else "fake"
        raise DataError(f"split {split!r} holds only {only} tracks ({len(tracks)} tracks of "
                        f"{faces['video_id'].nunique()} videos); temporal fusion needs real and fake videos "
                        "to train on")


def _random_crops(tracks: list[tuple[str, int, int, np.ndarray]], clip: int, max_frames: int,
                  rng: np.random.Generator) -> list[tuple[np.ndarray, int, int]]:
    """An epoch's training clips: ceil(T / clip) crops of min(clip, T) consecutive frames per
    track at random starts, each with a random offset into the position table."""
    out = []
    for *_, label, rows in tracks:
        n = len(rows)
        length = min(clip, n)
        for _ in range(-(-n // clip)):
            start = int(rng.integers(0, n - length + 1))
            offset = int(rng.integers(0, max_frames - length + 1))
            out.append((rows[start:start + length], offset, label))
    return out


def _train_epoch(head: VTF, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                 feats: np.ndarray, crops: list, batch: int, pos_weight: torch.Tensor,
                 rng: np.random.Generator) -> float:
    """One pass over the epoch's crops in a random order; mean BCE per crop."""
    head.train()
    device = pos_weight.device
    order = rng.permutation(len(crops))
    total, seen = 0.0, 0
    for i in range(0, len(order), batch):
        part = [crops[j] for j in order[i:i + batch]]
        x, mask, pos = _pad([feats[rows] for rows, _, _ in part], [off for _, off, _ in part])
        y = torch.tensor([float(lab) for *_, lab in part], device=device)
        logit = head(x.to(device), mask.to(device), pos.to(device))
        loss = F.binary_cross_entropy_with_logits(logit, y, pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(head.parameters(), 1.0)  # a tiny train set gives spiky steps
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(part)
        seen += len(part)
    return total / max(seen, 1)


def _figures(head: VTF, faces: pd.DataFrame, feats: np.ndarray) -> dict[str, Any]:
    vids = _video_table(head, faces, feats)
    return {"video_auc_vtf": video_auc(vids["label"], vids["prob_vtf"]),
            "video_auc_mean": video_auc(vids["label"], vids["prob_mean"]),
            "n_videos": int(len(vids)), "n_tracks": int(vids["n_tracks"].sum()), "n_faces": int(len(faces))}


def train_fusion(
    checkpoint: str | Path,
    dataset_dir: str | Path,
    out: Path | None = None,
    clip: int = 16,
    epochs: int = 30,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch: int = 16,
    seed: int = 0,
    device: str | None = None,
    amp: bool = True,
    progress: bool = False,
    workers: int = 0,
    feature_batch: int = 32,
    **vtf: Any,
) -> dict[str, Any]:
    """Train a VTF head on the frozen frame features of `checkpoint` (train split), keep the
    epoch of best validation video AUC (lowest train loss breaks ties, and decides alone when
    val holds one class), and write the checkpoint with `ckpt["fusion"]` to `out` (default:
    replace `checkpoint`). `vtf` are VTFConfig sizes (dim, depth, heads, mlp_ratio, drop,
    max_frames). Returns the figures: train / val video AUC of VTF and of the frame mean."""
    started = time.perf_counter()
    if epochs < 1 or batch < 1 or clip < 1:
        raise ValueError(f"epochs, batch and clip must be at least 1 (got {epochs}, {batch}, {clip})")
    if out is None and isinstance(checkpoint, dict):
        raise ValueError("train_fusion on a checkpoint dict needs `out`, the file to write")
    ckpt = _load(checkpoint)
    fm = _frame_model(ckpt, dataset_dir, device)
    train_faces, train_feats = _extract(fm, "train", feature_batch, workers, amp, progress)
    train_tracks = _track_rows(train_faces)
    _need_tracks(train_tracks, train_faces, "train", both=True)
    val_faces, val_feats = _extract(fm, "val", feature_batch, workers, amp, progress)
    val_tracks = _track_rows(val_faces)
    _need_tracks(val_tracks, val_faces, "val", both=False)
    feature_seconds = time.perf_counter() - started
    val_two = len({t[2] for t in val_tracks}) == 2

    cfg = VTFConfig(dim_in=int(train_feats.shape[1]), **vtf)
    if clip > cfg.max_frames:
        raise ValueError(f"clip {clip} is longer than the head's max_frames {cfg.max_frames}")
    dev = fm.device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        head = VTF(cfg)
        head.set_feature_stats(torch.from_numpy(train_feats))
        head = head.to(dev)
        opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
        n_fake = sum(-(-len(t[3]) // clip) for t in train_tracks if t[2] == 1)
        n_real = sum(-(-len(t[3]) // clip) for t in train_tracks if t[2] == 0)
        total = epochs * -(-(n_fake + n_real) // batch)  # the crop count is the same every epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
        pos_weight = torch.tensor(n_real / n_fake, device=dev)  # class balance of the clips
        history, best_key, best = [], None, None
        for epoch in range(1, epochs + 1):
            crops = _random_crops(train_tracks, clip, cfg.max_frames, rng)
            loss = _train_epoch(head, opt, sched, train_feats, crops, batch, pos_weight, rng)
            vids = _video_table(head, val_faces, val_feats)
            auc = video_auc(vids["label"], vids["prob_vtf"])
            history.append({"epoch": epoch, "train_loss": loss, "val_video_auc": auc})
            key = (auc if val_two else 0.0, -loss)
            if best_key is None or key > best_key:
                best_key, best = key, {"epoch": epoch, "state": copy.deepcopy(head.state_dict()), "auc": auc}
        head.load_state_dict(best["state"])
        head.eval()
    train_fig, val_fig = _figures(head, train_faces, train_feats), _figures(head, val_faces, val_feats)
    entry = {
        "kind": "vtf",
        "config": plain(asdict(cfg)),
        "state_dict": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()},
        "clip": clip,
        "val_video_auc": best["auc"],
        "epochs": epochs,
        "best_epoch": best["epoch"],
        "seed": seed,
        "selected_by": "val_video_auc" if val_two else "train_loss",
        "history": plain(history),
    }
    target = Path(out) if out is not None else Path(checkpoint)
    save_checkpoint({**ckpt, "fusion": entry}, target)
    return plain({
        "checkpoint": str(target),
        "model": ckpt["model_name"],
        "clip": clip,
        "epochs": epochs,
        "best_epoch": best["epoch"],
        "selected_by": entry["selected_by"],
        "num_params": sum(p.numel() for p in head.parameters()),
        "train": train_fig,
        "val": val_fig,
        "history": history,
        "feature_seconds": round(feature_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
    })
