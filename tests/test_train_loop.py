"""The trainer on real face crops with the real tiny M2TR / MAT: exact resume, DDP on CPU
(gloo, 2 processes), evaluate and predict end to end, the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import cut_faststart
from test_train_helpers import extract_pair, write_clip_dataset
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.runtime.checkpoint import load_checkpoint
from dfpipe.train.data import load_index
from dfpipe.train.evaluate import evaluate
from dfpipe.train.predict import predict
from dfpipe.train.trainer import TrainError, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip_ds(real_video, fake_video, tmp_path_factory):
    real, fake = extract_pair(real_video, fake_video, every=10, size=64, work=tmp_path_factory.mktemp("extract"))
    return write_clip_dataset(tmp_path_factory.mktemp("clips"), real, fake, clip_frames=40, masks=True)


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model,workers", [("m2tr", 1), ("mat", 0)])
def test_resume_continues_bit_identically(clip_ds, tmp_path, model, workers):
    kw = dict(model=model, tiny=True, epochs=2, batch=8, workers=workers, seed=7, progress=False)
    straight = train(clip_ds, out=tmp_path / "straight", **kw)
    train(clip_ds, out=tmp_path / "split", stop_after=1, **kw)
    first = load_checkpoint(tmp_path / "split" / "last.pt")
    assert first["epoch"] == 1 and first["step"] == straight["steps_per_epoch"]
    resumed = train(clip_ds, out=tmp_path / "split", resume=True, **kw)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert _states_equal(a["model"], b["model"]), "weights differ after resume"
    assert not _states_equal(first["model"], b["model"])  # the second epoch did train
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k in a["optimizer"]["state"]:
        assert all(torch.equal(v, b["optimizer"]["state"][k][n]) for n, v in a["optimizer"]["state"][k].items()
                   if isinstance(v, torch.Tensor))
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 2 * straight["steps_per_epoch"]
    for key in ("val_auc", "train_loss", "lr", "step"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in straight["history"]], key
    # plain checkpoint: loads with weights_only and says how to rebuild the model
    assert a["model_name"] == model and a["model_kwargs"] == {"tiny": True}
    csv = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    assert list(csv["epoch"]) == [1, 2] and {"val_auc", "train_loss"} <= set(csv.columns)
    assert any((tmp_path / "straight" / "tb").iterdir())


def test_fixed_seed_run_is_reproducible_and_best_is_by_val(clip_ds, tmp_path):
    kw = dict(model="m2tr", tiny=True, epochs=2, batch=8, workers=0, seed=1, progress=False, max_steps=3)
    a = train(clip_ds, out=tmp_path / "a", **kw)
    b = train(clip_ds, out=tmp_path / "b", **kw)
    assert _states_equal(load_checkpoint(tmp_path / "a" / "last.pt")["model"], load_checkpoint(tmp_path / "b" / "last.pt")["model"])
    assert a["steps"] == 6
    best = load_checkpoint(tmp_path / "a" / "best.pt")
    key = [(h["val_auc"], -h["val_logloss"]) for h in a["history"]]  # AUC, ties by log loss
    assert best["epoch"] == a["best"]["epoch"] == 1 + key.index(max(key))
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    # what was used, not the unset options: M2TR's recipe (SGD, lr 5e-4, no decay)
    assert (config["optimizer"], config["lr"], config["weight_decay"]) == ("sgd", 5e-4, 0.0)
    c = train(clip_ds, out=tmp_path / "c", **{**kw, "seed": 2})
    assert not _states_equal(load_checkpoint(tmp_path / "a" / "last.pt")["model"], load_checkpoint(tmp_path / "c" / "last.pt")["model"])
    assert c["steps"] == 6


def test_bad_arguments_fail_before_work(clip_ds, tmp_path):
    with pytest.raises(TrainError, match="divisible"):
        train(clip_ds, model="m2tr", tiny=True, out=tmp_path, batch=6, accum=4, progress=False)
    with pytest.raises(TrainError, match="--resume"):
        train(clip_ds, model="m2tr", tiny=True, out=tmp_path / "none", resume=True, progress=False)
    with pytest.raises(TrainError, match="--optimizer"):
        train(clip_ds, model="mat", tiny=True, out=tmp_path, optimizer="lion", progress=False)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "last.pt").write_bytes(b"a previous run")
    with pytest.raises(TrainError, match="already holds a run"):
        train(clip_ds, model="m2tr", tiny=True, out=tmp_path / "old", progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        train(clip_ds, model="xception", out=tmp_path / "x", epochs=1, progress=False, workers=0)


def test_ddp_two_processes_gloo(clip_ds, tmp_path):
    """`--gpus 2` on a machine without CUDA: two CPU processes, gloo, a few steps each."""
    summary = train(clip_ds, model="m2tr", tiny=True, out=tmp_path / "ddp", epochs=1, batch=8, workers=0,
                    gpus=2, max_steps=2, progress=False, device="cpu")
    assert summary["steps"] == 2
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    n_train = len(load_index(clip_ds).select("train"))
    assert summary["n_train"] >= n_train  # both ranks together cover the split


@pytest.mark.slow
def test_torchrun_module_cli(clip_ds, tmp_path):
    """`torchrun --nproc_per_node 2 -m dfpipe train ...` (env:// init, gloo on CPU)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DFPIPE_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dfpipe", "train", str(clip_ds), "--model", "mat", "--tiny", "--epochs", "1", "--batch", "8",
           "--workers", "0", "--max-steps", "2", "--out", str(tmp_path / "tr"), "--no-progress", "--json"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["steps"] == 2  # one summary, from rank 0 only
    ckpt = load_checkpoint(tmp_path / "tr" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 2 and ckpt["model_name"] == "mat"


@pytest.mark.slow
def test_evaluate_and_predict_end_to_end(clip_ds, tmp_path, fake_video, real_video):
    train(clip_ds, model="m2tr", tiny=True, out=tmp_path / "run", epochs=1, batch=8, workers=0, progress=False)
    ckpt = tmp_path / "run" / "best.pt"
    report = tmp_path / "eval"
    res = evaluate(ckpt, clip_ds, split="test", report=report, workers=0, progress=False)
    test_faces = load_index(clip_ds).select("test")
    faces = pd.read_parquet(report / "faces.parquet")
    assert sorted(faces["face_id"]) == sorted(test_faces["face_id"])  # each test face once
    assert faces["prob"].between(0, 1).all()
    saved = json.loads((report / "metrics.json").read_text())
    assert saved["n_faces"] == res["n_faces"] == len(test_faces)
    assert 0 <= saved["frame"]["auc"] <= 1 and saved["video"]["n"] == test_faces["video_id"].nunique()
    assert "NeuralTextures" in saved["per_method"] and "c23" in saved["per_compression"]
    assert (report / "roc.png").read_bytes()[:4] == b"\x89PNG"

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    cut = cut_faststart(fake_video, tmp_path / "cut.mp4", Fraction(1, 2))  # index first, half the frames: scored on what it has
    out = predict(ckpt, [fake_video, bad, cut], every=60, faces=True, output=tmp_path / "pred.json")
    ok, err, half = out["videos"]
    assert half["status"] == "ok" and re.search(r"cut short|stopped at frame", half["truncated"]) and ok["truncated"] is None
    assert 0 < half["n_sampled"] < ok["n_sampled"] and half["prob"] is not None
    assert ok["status"] == "ok" and ok["n_faces"] >= 4 and 0 <= ok["prob"] <= 1
    assert ok["label"] in ("real", "fake") and len(ok["tracks"]) >= 1
    assert sum(t["n_faces"] for t in ok["tracks"]) == ok["n_faces"] == len(ok["faces"])
    assert err["status"] == "error" and err["error_code"] and err["prob"] is None
    assert json.loads((tmp_path / "pred.json").read_text())["n_errors"] == 1

    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", str(ckpt), str(clip_ds), "--split", "val", "--workers", "0", "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["split"] == "val"
    r = runner.invoke(app, ["predict", str(ckpt), str(real_video), "--every", "100", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["videos"][0]["status"] == "ok"
    r = runner.invoke(app, ["evaluate", str(tmp_path / "missing.pt"), str(clip_ds)])
    assert r.exit_code == 2 and "no such checkpoint" in r.output
