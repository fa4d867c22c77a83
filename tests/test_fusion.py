"""Video-level fusion through the user's commands: `train --fusion vtf` stores M2TR's VTF
head in best.pt, `evaluate` reports video AUC both ways, `predict` scores with the head,
all on real faces (the FF++ c23 clip and its NeuralTextures fake, cut into clips)."""

from __future__ import annotations

import pytest
from test_train_helpers import extract_pair, write_clip_dataset
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.runtime.checkpoint import load_checkpoint
from dfpipe.train.evaluate import evaluate
from dfpipe.train.fusion import frame_features, fusion_scores, has_fusion
from dfpipe.train.predict import predict
from dfpipe.train.trainer import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip_ds(real_video, fake_video, tmp_path_factory):
    real, fake = extract_pair(real_video, fake_video, every=5, size=64, work=tmp_path_factory.mktemp("extract"))
    return write_clip_dataset(tmp_path_factory.mktemp("clips"), real, fake, clip_frames=40)


@pytest.fixture(scope="module")
def fused(clip_ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = train(clip_ds, model="m2tr", tiny=True, out=out, epochs=2, batch=8, workers=0, progress=False,
                    fusion="vtf", fusion_epochs=15, fusion_clip=4)
    return out / "best.pt", summary


def test_train_stores_a_vtf_head_that_fits_its_tracks(fused, clip_ds):
    ckpt_path, summary = fused
    ckpt = load_checkpoint(ckpt_path, map_location="cpu")
    assert has_fusion(ckpt) and ckpt["fusion"]["clip"] == 4 and ckpt["fusion"]["epochs"] == 15
    fig = summary["fusion"]
    assert fig["train"]["n_videos"] >= 4 and fig["train"]["n_tracks"] >= fig["train"]["n_videos"]
    assert fig["train"]["video_auc_vtf"] > 0.8  # it must at least fit the tracks it trained on
    # the head in the file scores as the one trained: same probabilities from the reloaded file
    faces, feats = frame_features(ckpt_path, clip_ds, "train", workers=0)
    videos = fusion_scores(ckpt_path, faces, feats)
    assert len(videos) == faces["video_id"].nunique() and videos["prob_vtf"].between(0, 1).all()
    assert videos["prob_mean"].tolist() == pytest.approx(faces.groupby("video_id")["prob"].mean().sort_index().tolist())


def test_evaluate_reports_video_auc_both_ways(fused, clip_ds):
    ckpt, _ = fused
    both = evaluate(ckpt, clip_ds, split="all", workers=0, progress=False)
    mean_only = evaluate(ckpt, clip_ds, split="all", workers=0, progress=False, fusion="mean")
    assert both["video"] == mean_only["video"] and "video_vtf" not in mean_only
    assert both["video_vtf"]["n"] == both["video"]["n"] == both["n_videos"]
    assert 0 <= both["video_vtf"]["auc"] <= 1
    result = CliRunner().invoke(app, ["evaluate", str(ckpt), str(clip_ds), "--split", "all", "--workers", "0",
                                      "--no-progress"])
    assert result.exit_code == 0 and "videos by VTF" in result.output, result.output


def test_predict_scores_videos_with_the_head(fused, fake_video, tmp_path):
    ckpt, _ = fused
    out = predict(ckpt, [fake_video], every=30)
    (video,) = out["videos"]
    assert video["status"] == "ok" and video["fusion"] == "vtf" and 0 <= video["prob"] <= 1
    weighted = sum(t["prob"] * t["n_faces"] for t in video["tracks"]) / sum(t["n_faces"] for t in video["tracks"])
    assert video["prob_mean"] == pytest.approx(weighted)  # the mean of all its frames
    mean = predict(ckpt, [fake_video], every=30, fusion="mean")["videos"][0]
    assert mean["fusion"] == "mean" and mean["prob"] == pytest.approx(video["prob_mean"])


def test_fusion_vtf_without_a_head_is_a_bad_argument(clip_ds, tmp_path):
    train(clip_ds, model="m2tr", tiny=True, out=tmp_path / "plain", epochs=1, batch=8, workers=0, progress=False)
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "plain" / "best.pt"), str(clip_ds), "--fusion", "vtf",
                                      "--workers", "0"])
    assert result.exit_code == 2 and "--fusion vtf" in result.output and "no VTF head" in result.output
    result = CliRunner().invoke(app, ["train", str(clip_ds), "--model", "m2tr", "--tiny", "--fusion", "lstm",
                                      "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--fusion must be one of" in result.output
