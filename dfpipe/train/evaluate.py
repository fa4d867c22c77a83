"""`dfpipe evaluate`: score a checkpoint on one split of a dataset directory.

The split is resolved exactly as in training (same seed), so `--split test` is the set
of faces the run never selected on. Writes `metrics.json`, `faces.parquet` (one row per
face with its probability) and `roc.png` into the report folder.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dfpipe.manifests.schema import SPLITS
from dfpipe.models.registry import model_from_checkpoint
from dfpipe.runtime.checkpoint import load_checkpoint, plain
from dfpipe.runtime.device import resolve_device
from dfpipe.runtime.progress import progress_bar
from dfpipe.train.data import DataError, FaceStream, ImageSpec, StreamConfig, load_index, with_self_blends
from dfpipe.train.fusion import fusion_scores, wants_vtf
from dfpipe.train.inference import score_stream, score_stream_features
from dfpipe.train.metrics import evaluate_scores, frame_metrics, per_perturbation, plot_roc, robustness_table
from dfpipe.train.sbi import check_fakes
from dfpipe.train.shards import one_or_many, readable_datasets

#: the breakdowns `evaluate(by=...)` adds
BREAKDOWNS = ("perturbation",)


def _finite(value: Any) -> Any:
    """NaN -> None so metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def evaluate(
    checkpoint: str | Path,
    dataset_dir: str | Path | Sequence[str | Path],
    split: str = "test",
    report: str | Path | None = None,
    batch: int = 32,
    workers: int = 2,
    device: str | None = None,
    amp: bool = True,
    progress: bool = True,
    by: Sequence[str] = (),
    fusion: str = "auto",
    fakes: str = "dataset",
) -> dict[str, Any]:
    """Metrics of `checkpoint` on `split` (`all` = every labelled face) of `dataset_dir`
    (one dataset directory or shards, or several read as one, as `train` takes them).

    `fakes`: `dataset` scores the stored fakes; `sbi` the reals and a self-blend of each
    (drawn once per face for the seed of the run: the same blends every time); `sbi+dataset`
    both. Self-blends are method `sbi` in the per-method table.

    Video-level metrics come two ways where the checkpoint has a VTF head (`train
    --fusion vtf`): `video` (the mean of frame probabilities, always) and `video_vtf` (the
    head on each track, a video's the max over its tracks). `fusion`: auto = both when
    the head is there, mean = the mean only, vtf = both, an error without a head.

    `by` adds breakdowns beside per method and per compression: `perturbation` (a
    `dfpipe perturb` dataset: metrics per perturbation, and the kind x level AUC table)."""
    if split not in (*SPLITS, "all"):
        raise DataError(f"--split must be one of {', '.join((*SPLITS, 'all'))}, got {split!r}")
    unknown = sorted(set(by) - set(BREAKDOWNS))
    if unknown:
        raise DataError(f"--by: unknown breakdown {', '.join(unknown)}; choose from {', '.join(BREAKDOWNS)}")
    started = time.perf_counter()
    try:
        check_fakes(fakes)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    dirs, _ = readable_datasets(dataset_dir)  # WebDataset shards of an export, as train reads them
    for d in dirs:
        if not d.is_dir():
            raise DataError(f"{d}: no such dataset directory")
    dataset_dir = one_or_many(dirs)
    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = model_from_checkpoint(ckpt, dev)
    spec = ImageSpec.from_default_cfg(ckpt["default_cfg"])
    index = with_self_blends(load_index(dirs, seed=int(ckpt["config"].get("seed", 0))), fakes)
    stream = FaceStream(index, StreamConfig(None if split == "all" else split, spec))
    use_vtf = wants_vtf(ckpt, fusion, checkpoint)
    with progress_bar(progress) as bar:
        task = bar.add_task("evaluate", total=len(stream))
        if use_vtf:
            rows, probs, feats = score_stream_features(model, stream, batch, dev, workers=workers, amp=amp,
                                                       progress=lambda n: bar.advance(task, n))
        else:
            rows, probs = score_stream(model, stream, batch, dev, workers=workers, amp=amp,
                                       progress=lambda n: bar.advance(task, n))
    if "perturbation" in by and index.table["perturbation"].isna().all():
        raise DataError(f"--by perturbation: {dataset_dir} holds no perturbed copies; make them with "
                        f"`dfpipe perturb {dataset_dir} --out DS2` and evaluate DS2")
    cols = ["face_id", "video_id", "frame_index", "track_id", "label", "y", "split", "method", "compression",
            "perturbation"]
    faces = index.table.loc[rows, cols].reset_index(drop=True)
    faces["prob"] = probs
    faces["pred"] = np.where(probs >= 0.5, "fake", "real")
    scored = faces.rename(columns={"label": "label_name", "y": "label"})
    metrics = evaluate_scores(scored)
    if use_vtf:
        videos = fusion_scores(ckpt, scored, feats, device=str(dev))
        metrics["video_vtf"] = frame_metrics(videos["label"], videos["prob_vtf"])
    if "perturbation" in by:
        metrics["per_perturbation"] = per_perturbation(scored)
        metrics["robustness"] = robustness_table(metrics["per_perturbation"])
    result = {
        "checkpoint": str(checkpoint),
        "dataset_dir": dataset_dir,
        "fakes": fakes,
        "split": split,
        "model": ckpt["model_name"],
        "model_kwargs": ckpt["model_kwargs"],
        "epoch": ckpt["epoch"],
        "n_faces": int(len(faces)),
        "n_videos": int(faces["video_id"].nunique()),
        **metrics,
        "seconds": round(time.perf_counter() - started, 3),
    }
    result = _finite(plain(result))
    if report is not None:
        out = Path(report)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        faces.to_parquet(out / "faces.parquet", index=False)
        plot_roc(scored, out / "roc.png", title=f"{ckpt['model_name']} on {split}")
        result["report"] = {name: str(out / name) for name in ("metrics.json", "faces.parquet", "roc.png")}
    return result

