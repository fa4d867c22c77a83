"""Metrics equal scikit-learn's on the same scores; EER on cases worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, log_loss, roc_auc_score, roc_curve

from dfpipe.train.metrics import eer, evaluate_scores, frame_metrics, plot_roc, video_scores


def _scores(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(1.5 * (2 * y - 1) + rng.normal(0, 1.5, n))))
    return y, p


def test_frame_metrics_equal_sklearn():
    y, p = _scores()
    m = frame_metrics(y, p)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["ap"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m["acc"] == pytest.approx(accuracy_score(y, p >= 0.5), abs=1e-12)
    assert m["logloss"] == pytest.approx(log_loss(y, p), abs=1e-9)
    assert (m["n"], m["n_fake"], m["n_real"]) == (len(y), int(y.sum()), int((1 - y).sum()))
    # EER: where FPR and FNR meet on sklearn's own curve
    fpr, tpr, _ = roc_curve(y, p)
    i = np.nanargmin(np.abs(fpr - (1 - tpr)))
    assert abs(m["eer"] - fpr[i]) < 0.02
    assert 0.0 < m["eer"] < 0.5


def test_eer_known_cases():
    # perfectly separated: 0
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    # perfectly inverted: 1
    assert eer([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 1.0
    # one real above one fake among 2 + 2: FPR = FNR = 0.5 at the crossing
    assert eer([0, 0, 1, 1], [0.1, 0.7, 0.6, 0.9]) == pytest.approx(0.5)
    # 4 reals, 4 fakes, one of each on the wrong side: EER = 1/4
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.75, 0.7, 0.8, 0.85, 0.9]
    assert eer(y, p) == pytest.approx(0.25)


def test_one_class_gives_nan_not_an_exception():
    m = frame_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(m["auc"]) and math.isnan(m["eer"]) and math.isnan(m["ap"])
    assert m["acc"] == pytest.approx(2 / 3)


def test_video_auc_uses_mean_frame_probability_and_breakdowns():
    y, p = _scores(600, seed=1)
    vids = np.arange(600) // 10  # 60 videos of 10 faces; a video's label is its first face's
    frames = pd.DataFrame({"video_id": [f"v{v}" for v in vids], "label": y, "prob": p})
    frames["label"] = frames.groupby("video_id")["label"].transform("first")
    frames["method"] = np.where(frames["label"] == 1, np.where(vids % 2 == 0, "Deepfakes", "FaceSwap"), None)
    frames["compression"] = np.where(vids % 3 == 0, "c40", "c23")
    out = evaluate_scores(frames)
    per_video = frames.groupby("video_id").agg(label=("label", "first"), prob=("prob", "mean"))
    assert out["video"]["auc"] == pytest.approx(roc_auc_score(per_video["label"], per_video["prob"]))
    assert out["video"]["n"] == 60
    assert set(out["per_method"]) == {"Deepfakes", "FaceSwap"}
    sub = frames[(frames["label"] == 0) | (frames["method"] == "Deepfakes")]
    assert out["per_method"]["Deepfakes"]["auc"] == pytest.approx(roc_auc_score(sub["label"], sub["prob"]))
    c40 = frames[frames["compression"] == "c40"]
    assert out["per_compression"]["c40"]["auc"] == pytest.approx(roc_auc_score(c40["label"], c40["prob"]))
    assert len(video_scores(frames)) == 60


def test_roc_png(tmp_path):
    y, p = _scores(100)
    frames = pd.DataFrame({"video_id": np.arange(100) // 5, "label": y, "prob": p})
    path = plot_roc(frames, tmp_path / "roc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
