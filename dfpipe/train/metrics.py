"""Detection metrics the way the M2TR / MAT papers report them.

Frame level: AUC, accuracy at probability 0.5, equal error rate, average precision (all
from scikit-learn's curves, so the numbers match what other tools print). Video level:
AUC of the mean frame probability per video. Breakdowns per method and per compression
compare each manipulated subset against all reals, as FF++ papers do.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, average_precision_score, log_loss, roc_auc_score, roc_curve


def _two_classes(labels: np.ndarray) -> bool:
    return labels.size > 0 and np.unique(labels).size == 2


def eer(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Equal error rate: where the false-positive rate equals the false-negative rate,
    interpolated linearly between the two ROC points that bracket the crossing."""
    labels = np.asarray(labels)
    if not _two_classes(labels):
        return math.nan
    fpr, tpr, _ = roc_curve(labels, np.asarray(scores, dtype=np.float64))
    fnr = 1.0 - tpr
    diff = fpr - fnr  # increasing from -1 to +1 along the curve
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        return float(fpr[i])
    # crossing between points i-1 and i
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def frame_metrics(labels: Sequence[int], probs: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """AUC, ACC at `threshold`, EER, AP and log loss of fake probabilities; NaN where one
    class is missing (AUC is undefined then), never an exception."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    out = {"n": int(y.size), "n_fake": int(y.sum()), "n_real": int((1 - y).sum())}
    out["acc"] = float(accuracy_score(y, p >= threshold)) if y.size else math.nan
    out["logloss"] = float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])) if y.size else math.nan
    if _two_classes(y):
        out["auc"] = float(roc_auc_score(y, p))
        out["ap"] = float(average_precision_score(y, p))
        out["eer"] = eer(y, p)
    else:
        out.update(auc=math.nan, ap=math.nan, eer=math.nan)
    return out


def video_scores(frames: pd.DataFrame) -> pd.DataFrame:
    """Mean frame probability per video (columns `video_id`, `label`, `prob`, `n_faces`)."""
    grouped = frames.groupby("video_id", sort=True)
    return pd.DataFrame(
        {
            "label": grouped["label"].first(),
            "prob": grouped["prob"].mean(),
            "n_faces": grouped["prob"].size(),
        }
    ).reset_index()


def _with_video_auc(sub: pd.DataFrame) -> dict[str, float]:
    m = frame_metrics(sub["label"], sub["prob"])
    vids = video_scores(sub)
    m["video_auc"] = frame_metrics(vids["label"], vids["prob"])["auc"]
    return m


def per_method(frames: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Each manipulation method's fakes against all real faces (FF++ convention)."""
    if "method" not in frames:
        return {}
    reals = frames[frames["label"] == 0]
    fakes = frames[frames["label"] == 1]
    return {
        str(method): _with_video_auc(pd.concat([reals, part]))
        for method, part in fakes.groupby(fakes["method"].fillna("unknown"))
    }


def per_compression(frames: pd.DataFrame) -> dict[str, dict[str, float]]:
    """All faces (real and fake) of each compression level (raw / c23 / c40), as FF++ ships
    its reals at every level. Where the reals have no level (fakes re-encoded from raw reals,
    as synthesis makes them), each level's fakes against all reals instead."""
    if "compression" not in frames or frames["compression"].isna().all():
        return {}
    reals = frames[frames["label"] == 0]
    if len(reals) and reals["compression"].isna().all():
        fakes = frames[frames["label"] == 1]
        return {str(level): _with_video_auc(pd.concat([reals, part]))
                for level, part in fakes.groupby(fakes["compression"].fillna("unknown"))}
    levels = frames["compression"].fillna("unknown")
    return {str(level): _with_video_auc(part) for level, part in frames.groupby(levels)}


def per_perturbation(frames: pd.DataFrame) -> dict[str, dict[str, float]]:
    """All faces (real and fake) of each perturbation of a `dfpipe perturb` dataset ("none"
    = the clean originals, "GB-3", "CS-2+JPEG-4"): reals and fakes were perturbed alike, so
    each perturbation is its own test set, as DeeperForensics-1.0 reports them."""
    if "perturbation" not in frames or frames["perturbation"].isna().all():
        return {}
    names = frames["perturbation"].fillna("none")
    return {str(name): _with_video_auc(part) for name, part in frames.groupby(names)}


def robustness_table(per: dict[str, dict[str, float]], metric: str = "auc") -> dict[str, dict[str, float]]:
    """`per_perturbation`'s single perturbations as kind -> {level: metric}, the table
    curators publish (kinds as rows, levels 1-5 as columns; mixes are left out)."""
    table: dict[str, dict[str, float]] = {}
    for name, m in per.items():
        kind, _, level = name.rpartition("-")
        if "+" in name or not kind or not level.isdigit():
            continue
        table.setdefault(kind, {})[level] = m[metric]
    return {k: dict(sorted(v.items())) for k, v in table.items()}


def evaluate_scores(frames: pd.DataFrame) -> dict:
    """All metrics for a table of per-face results (`label` 0/1, `prob`, `video_id`,
    optional `method`, `compression`). Per method: that method's fakes against all reals;
    per compression: all faces of that compression level (see `per_compression`)."""
    frame = frame_metrics(frames["label"], frames["prob"])
    vids = video_scores(frames)
    video = frame_metrics(vids["label"], vids["prob"])
    return {
        "frame": frame,
        "video": video,
        "per_method": per_method(frames),
        "per_compression": per_compression(frames),
    }


def plot_roc(frames: pd.DataFrame, path: str | Path, title: str = "ROC") -> Path:
    """ROC curve PNG of frame and video scores (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    vids = video_scores(frames)
    for name, tbl in (("frame", frames), ("video", vids)):
        y = np.asarray(tbl["label"])
        if not _two_classes(y):
            continue
        fpr, tpr, _ = roc_curve(y, tbl["prob"])
        ax.plot(fpr, tpr, label=f"{name} AUC {roc_auc_score(y, tbl['prob']):.4f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
