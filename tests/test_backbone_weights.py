"""Backbone weights for training: `backbone_weights=` (a real timm checkpoint of the tiny
trunk's network, pinned by sha256), offline `--pretrained` from timm's Hugging Face cache,
and the refusals (wrong hash, another network, an empty cache) as clear errors, exit 2
from the CLI. Nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from test_train_helpers import extract_pair, write_clip_dataset
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.models.blocks import EfficientNetTrunk
from dfpipe.runtime.checkpoint import load_checkpoint
from dfpipe.runtime.weights import sha256_of
from dfpipe.train.backbone import build_model
from dfpipe.train.trainer import TrainConfig, TrainError, train

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "test_efficientnet"  # the tiny M2TR's trunk
RUN = dict(model="m2tr", tiny=True, batch=8, workers=0, max_steps=1, progress=False, seed=3)
N_TRUNK = 73  # its tensors that count: 86 in the state dict less 13 BatchNorm step counters


@pytest.fixture(scope="module")
def clip_ds(real_video, fake_video, tmp_path_factory):
    real, fake = extract_pair(real_video, fake_video, every=10, size=64, work=tmp_path_factory.mktemp("extract"))
    return write_clip_dataset(tmp_path_factory.mktemp("clips"), real, fake, clip_frames=40)


@pytest.fixture(scope="module")
def timm_state() -> dict[str, torch.Tensor]:
    """A timm checkpoint of the tiny trunk's network, classifier included, from a fixed seed."""
    torch.manual_seed(1234)
    return timm.create_model(BACKBONE, pretrained=False).state_dict()


@pytest.fixture(scope="module")
def weights_file(timm_state, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / f"{BACKBONE}.pth"
    torch.save({"state_dict": timm_state, "epoch": 300}, path)  # as timm's train.py writes it
    return path


def _trunk_params(model_state: dict[str, torch.Tensor], prefix: str = "trunk.") -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in model_state.items() if k.startswith(prefix)}


def _as_trunk(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in timm_state.items():
        for theirs, ours in EfficientNetTrunk.TIMM_PREFIXES:
            if k.startswith(theirs):
                out[ours + k[len(theirs):]] = v
    return out


def _assert_trunk_is(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], names) -> None:
    assert set(names) <= set(expected)
    for k in names:
        assert torch.equal(state[k], expected[k]), k


def test_backbone_weights_start_the_trunk_and_resume_needs_no_file(clip_ds, weights_file, timm_state, tmp_path):
    sha = sha256_of(weights_file)
    out = tmp_path / "run"
    summary = train(clip_ds, out=out, epochs=2, stop_after=1, lr=0.0, backbone_weights=weights_file,
                    backbone_sha256=sha.upper(), **RUN)
    assert any(f"sha256 {sha}" in n and f"{N_TRUNK} of {N_TRUNK} trunk tensors" in n for n in summary["notes"]), summary["notes"]
    config = json.loads((out / "config.json").read_text())
    assert (config["backbone_weights"], config["backbone_sha256"]) == (str(weights_file), sha)
    expected = _as_trunk(timm_state)
    # the trainer's own model builder, from the run's config: the trunk is the file's, exactly
    built = build_model(TrainConfig(**config)).trunk.state_dict()
    _assert_trunk_is(built, expected, [k for k in built if not k.endswith("num_batches_tracked")])
    # and the run trained from it: with lr 0 one SGD step leaves every trunk parameter as loaded
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["config"]["backbone_sha256"] == sha
    params = [k.removeprefix("trunk.") for k, _ in build_model(TrainConfig(**config)).named_parameters()
              if k.startswith("trunk.")]
    _assert_trunk_is(_trunk_params(ckpt["model"]), expected, params)

    # resume: the file is gone and not named; the weights come from last.pt, the record stays
    moved = weights_file.rename(tmp_path / "gone.pth")
    try:
        resumed = train(clip_ds, out=out, epochs=2, resume=True, lr=0.0, **RUN)
    finally:
        moved.rename(weights_file)
    assert resumed["epochs"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["backbone_sha256"] == sha and load_checkpoint(out / "last.pt")["config"]["backbone_sha256"] == sha


def test_wrong_sha256_is_refused_with_both_hashes(clip_ds, weights_file, tmp_path):
    sha, wrong = sha256_of(weights_file), "0" * 64
    with pytest.raises(TrainError) as err:
        train(clip_ds, out=tmp_path / "a", backbone_weights=weights_file, backbone_sha256=wrong, **RUN)
    assert sha in str(err.value) and wrong in str(err.value)
    assert not (tmp_path / "a").exists()  # refused before any work
    r = CliRunner().invoke(app, ["train", str(clip_ds), "--tiny", "--out", str(tmp_path / "b"), "--no-progress",
                                 "--backbone-weights", str(weights_file), "--backbone-sha256", wrong])
    assert r.exit_code == 2, r.output
    assert sha in r.output and wrong in r.output and "Traceback" not in r.output


def test_another_network_is_refused_with_the_match_report(clip_ds, tmp_path):
    path = tmp_path / "resnet18.safetensors"
    from safetensors.torch import save_file

    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), str(path))
    with pytest.raises(TrainError, match=rf"not a checkpoint of test_efficientnet .*0 of {N_TRUNK} trunk tensors") as err:
        train(clip_ds, out=tmp_path / "a", backbone_weights=path, **RUN)
    assert "missing: conv_stem.weight" in str(err.value) and "unexpected: conv1.weight" in str(err.value)
    r = CliRunner().invoke(app, ["train", str(clip_ds), "--tiny", "--out", str(tmp_path / "b"), "--no-progress",
                                 "--backbone-weights", str(path)])
    assert r.exit_code == 2 and f"0 of {N_TRUNK} trunk tensors" in r.output, r.output


def test_option_conflicts_are_refused(clip_ds, weights_file, tmp_path):
    with pytest.raises(TrainError, match="give one"):
        train(clip_ds, out=tmp_path, backbone_weights=weights_file, pretrained=True, **RUN)
    with pytest.raises(TrainError, match="give the file too"):
        train(clip_ds, out=tmp_path, backbone_sha256="0" * 64, **RUN)
    with pytest.raises(TrainError, match="no such file"):
        train(clip_ds, out=tmp_path, backbone_weights=tmp_path / "none.pth", **RUN)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="not a readable checkpoint"):
        train(clip_ds, out=tmp_path, backbone_weights=tmp_path / "junk.pth", **RUN)


def test_offline_pretrained_reads_the_hugging_face_cache(clip_ds, timm_state, tmp_path, monkeypatch):
    """A cache laid out as huggingface_hub writes it (refs/main -> a snapshot), holding the
    safetensors file timm would fetch: offline --pretrained loads it and fetches nothing."""
    from huggingface_hub import constants
    from safetensors.torch import save_file

    pcfg = timm.models.get_pretrained_cfg(BACKBONE)
    repo = tmp_path / "hub" / f"models--{pcfg.hf_hub_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(timm_state, str(repo / "snapshots" / commit / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DFPIPE_OFFLINE", "1")

    summary = train(clip_ds, out=tmp_path / "run", epochs=1, lr=0.0, pretrained=True, **RUN)
    assert any("model.safetensors" in n for n in summary["notes"]), summary["notes"]
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["config"]["pretrained"] is True and ckpt["config"]["backbone_weights"] is None
    trunk = dict(build_model(TrainConfig(**ckpt["config"])).trunk.named_parameters())
    _assert_trunk_is(_trunk_params(ckpt["model"]), _as_trunk(timm_state), list(trunk))

    # the same cache emptied: the clear error, in the library
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(TrainError, match=r"ImageNet weights of test_efficientnet are not on this machine"):
        train(clip_ds, out=tmp_path / "run2", pretrained=True, **RUN)


def test_pretrained_offline_with_an_empty_cache_exits_2(clip_ds, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = CliRunner().invoke(app, ["train", str(clip_ds), "--model", "m2tr", "--pretrained", "--out",
                                 str(tmp_path / "run"), "--no-progress", "--workers", "0"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    _assert_says_where_it_looked(r.output, tmp_path)
    assert not (tmp_path / "run").exists()


def _assert_says_where_it_looked(err: str, tmp_path: Path) -> None:
    assert "ImageNet weights of efficientnet_b4 are not on this machine" in err, err
    assert f"{tmp_path / 'hf' / 'hub'} for timm/efficientnet_b4" in err
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in err
    assert "--backbone-weights FILE" in err and "timm.create_model('efficientnet_b4', pretrained=True)" in err


@pytest.mark.slow
def test_pretrained_offline_with_an_empty_cache_exits_2_as_run(clip_ds, tmp_path):
    """The CLI as a user runs it, HF_HOME and TORCH_HOME naming empty folders."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HOME=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "torch"), HF_HUB_OFFLINE="1",
               DFPIPE_OFFLINE="1")
    cmd = [sys.executable, "-m", "dfpipe", "train", str(clip_ds), "--model", "m2tr", "--pretrained",
           "--out", str(tmp_path / "run"), "--no-progress", "--workers", "0"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    _assert_says_where_it_looked(proc.stderr, tmp_path)
