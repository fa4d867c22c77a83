"""The VTF temporal head (M2TR's video-level fusion): the block itself, the detectors'
pooled `feature` output it reads, and train_fusion / fusion_scores end to end on real FF++
face crops with a tiny frame model trained here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_train_helpers import extract_pair, write_clip_dataset

from dfpipe.models.registry import create_model, model_from_checkpoint
from dfpipe.models.vtf import VTF, VTFConfig
from dfpipe.runtime.checkpoint import CheckpointError, load_checkpoint
from dfpipe.train.data import DataError, load_index
from dfpipe.train.fusion import (
    fusion_scores,
    frame_features,
    has_fusion,
    track_sequences,
    train_fusion,
    video_auc,
)
from dfpipe.train.metrics import video_scores
from dfpipe.train.trainer import train

# --------------------------------------------------------------------------- the block


def _head(dim_in: int = 24, **kw) -> VTF:
    torch.manual_seed(0)
    return VTF(VTFConfig(dim_in=dim_in, **kw)).eval()


def test_vtf_shapes_and_limits() -> None:
    head = _head(max_frames=8)
    with torch.no_grad():
        assert head(torch.randn(3, 5, 24)).shape == (3,)
        assert head(torch.randn(1, 1, 24)).shape == (1,)  # a one-frame track
        assert head(torch.randn(2, 8, 24)).shape == (2,)  # exactly max_frames
    with pytest.raises(ValueError, match="at most 8 frames"):
        head(torch.randn(1, 9, 24))
    with pytest.raises(ValueError, match="heads"):
        VTF(VTFConfig(dim_in=8, dim=30, heads=4))


def test_vtf_padding_is_invisible() -> None:
    """A clip padded with garbage (huge values, NaN) under pad_mask scores as the clip alone."""
    head = _head()
    x = torch.randn(2, 5, 24)
    garbage = torch.cat([x, 1e4 * torch.randn(2, 3, 24)], dim=1)
    garbage[:, -1] = float("nan")
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, 5:] = True
    with torch.no_grad():
        alone, padded = head(x), head(garbage, mask)
        # mixed lengths in one batch: each row as if alone
        short = head(x[:1, :3])
        mixed = head(torch.cat([x[:1, :3], torch.zeros(1, 2, 24)], 1).expand(2, -1, -1).contiguous(),
                     torch.tensor([[False] * 3 + [True] * 2, [False] * 5]))
    assert torch.isfinite(padded).all()
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[0], short[0], atol=1e-5, rtol=1e-5)


def test_vtf_frame_order_matters() -> None:
    """Learned positions make the head order-aware: reversed frames score differently."""
    head = _head()
    x = torch.randn(2, 6, 24)
    with torch.no_grad():
        a, b = head(x), head(x.flip(1))
        shifted = head(x, positions=torch.arange(6).expand(2, -1) + 3)
    assert (a - b).abs().max() > 1e-4
    assert (a - shifted).abs().max() > 1e-4


def test_vtf_parameter_count_and_feature_stats() -> None:
    """On EfficientNet-B4's 1792-d features the head stays small (~1.5 M parameters)."""
    n = sum(p.numel() for p in VTF(VTFConfig(dim_in=1792)).parameters())
    assert 5e5 < n < 3e6
    head = _head(dim_in=4)
    feats = torch.tensor([[1.0, 10.0, 5.0, 0.0], [3.0, 30.0, 5.0, 0.0]])
    head.set_feature_stats(feats)
    torch.testing.assert_close(head.feat_mean, torch.tensor([2.0, 20.0, 5.0, 0.0]))
    assert head.feat_scale[0] == 1.0 and head.feat_scale[1] == 10.0
    assert (head.feat_scale[2:] > 0).all()  # constant dimensions get a floor, not zero
    assert {"feat_mean", "feat_scale"} <= set(head.state_dict())


@pytest.mark.parametrize("name", ["m2tr", "mat"])
def test_detectors_return_the_pooled_feature(name: str) -> None:
    """`feature` (B x num_features) is what the classifier reads, in train and eval mode."""
    import cv2
    import skimage.data

    img = cv2.resize(skimage.data.astronaut()[20:320, 120:420], (64, 64)).astype(np.float32) / 255.0
    x = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    x[1] = x[1].flip(-1)
    torch.manual_seed(0)
    model = create_model(name, tiny=True)
    model.train()
    out = model(x, target=torch.tensor([0.0, 1.0]))
    assert out["feature"].shape == (2, model.num_features)
    model.eval()
    with torch.no_grad():
        out = model(x)
        fc = model.fc if name == "m2tr" else model.classifier
        assert out["feature"].shape == (2, model.num_features)
        torch.testing.assert_close(fc(out["feature"]).squeeze(1), out["logit"])


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def clip_ds(real_video, fake_video, tmp_path_factory):
    """The FF++ pair cut into 40-frame clips: 8 real and 8 fake videos of 4 faces each."""
    real, fake = extract_pair(real_video, fake_video, every=10, size=64, work=tmp_path_factory.mktemp("extract"))
    return write_clip_dataset(tmp_path_factory.mktemp("clips"), real, fake, clip_frames=40, masks=True)


_RUNS: dict[str, Path] = {}


def _frame_run(model: str, clip_ds: Path, tmp_path_factory) -> Path:
    """A tiny frame detector trained two epochs on the clips (best.pt), once per model."""
    if model not in _RUNS:
        out = tmp_path_factory.mktemp(f"run-{model}")
        train(clip_ds, model=model, tiny=True, pretrained=False, out=out, epochs=2, batch=8, workers=0,
              seed=0, progress=False)
        _RUNS[model] = out / "best.pt"
    return _RUNS[model]


@pytest.fixture(scope="module", params=["m2tr", "mat"])
def frame_ckpt(request, clip_ds, tmp_path_factory) -> Path:
    return _frame_run(request.param, clip_ds, tmp_path_factory)


@pytest.fixture(scope="module")
def m2tr_ckpt(clip_ds, tmp_path_factory) -> Path:
    return _frame_run("m2tr", clip_ds, tmp_path_factory)


def test_frame_features_align_with_faces(clip_ds, frame_ckpt):
    faces, feats = frame_features(frame_ckpt, clip_ds, "train")
    ckpt = load_checkpoint(frame_ckpt)
    model = model_from_checkpoint(ckpt)
    want = load_index(clip_ds, seed=0).select("train")
    assert sorted(faces["face_id"]) == sorted(want["face_id"])
    assert {"face_id", "video_id", "track_id", "frame_index", "label", "split", "method", "compression",
            "prob"} <= set(faces.columns)
    assert (faces["split"] == "train").all() and set(faces["label"]) == {0, 1}
    assert feats.dtype == np.float32 and feats.shape == (len(faces), model.num_features)
    fc = model.fc if ckpt["model_name"] == "m2tr" else model.classifier
    with torch.no_grad():  # row i's feature is the one that gave row i's probability
        prob = torch.sigmoid(fc(torch.from_numpy(feats)).squeeze(1)).numpy()
    np.testing.assert_allclose(prob, faces["prob"], atol=1e-5)
    every, _ = frame_features(frame_ckpt, clip_ds, None)
    assert len(every) == len(load_index(clip_ds).select(None))

    seqs = track_sequences(faces, feats, clip=3)
    shuffled = track_sequences(faces.iloc[::-1].reset_index(drop=True), feats[::-1], clip=3)
    assert [s.rows.size for s in seqs] == [s.rows.size for s in shuffled]
    assert max(s.rows.size for s in seqs) == 3 and sum(s.rows.size for s in seqs) == len(faces)
    for s, t in zip(seqs, shuffled):
        frames = faces["frame_index"].to_numpy()[s.rows]
        assert (np.diff(frames) > 0).all() and faces["video_id"].iloc[s.rows].nunique() == 1
        np.testing.assert_array_equal(s.feats, t.feats)  # the same clips whatever the table order
    whole = track_sequences(faces, feats, clip=0)
    assert len(whole) == faces.groupby(["video_id", "track_id"]).ngroups


def test_train_fusion_fits_saves_and_reloads(clip_ds, frame_ckpt, tmp_path):
    fused = tmp_path / "fused.pt"
    fig = train_fusion(frame_ckpt, clip_ds, out=fused, clip=2, epochs=30, seed=0)
    assert not has_fusion(load_checkpoint(frame_ckpt))  # `out` given: the original is left alone
    ckpt = load_checkpoint(fused)
    assert has_fusion(ckpt)
    entry = ckpt["fusion"]
    assert entry["kind"] == "vtf" and entry["clip"] == 2 and entry["epochs"] == 30
    assert entry["config"]["dim_in"] == model_from_checkpoint(ckpt).num_features
    original = load_checkpoint(frame_ckpt)
    assert all(torch.equal(original["model"][k], v) for k, v in ckpt["model"].items())  # frame model untouched

    faces, feats = frame_features(fused, clip_ds, "train")
    vids = fusion_scores(fused, faces, feats)
    assert len(vids) == faces["video_id"].nunique() and vids["video_id"].is_unique
    assert vids["prob_vtf"].between(0, 1).all() and np.isfinite(vids["prob_vtf"]).all()
    assert vids["n_frames"].sum() == len(faces) and (vids["n_tracks"] >= 1).all()
    # learning check: the head fits the tracks it was trained on
    assert video_auc(vids["label"], vids["prob_vtf"]) > 0.8
    assert fig["train"]["video_auc_vtf"] == pytest.approx(video_auc(vids["label"], vids["prob_vtf"]))
    # the mean baseline is metrics.video_scores' mean frame probability
    ref = video_scores(faces)
    np.testing.assert_array_equal(vids["video_id"], ref["video_id"])
    np.testing.assert_allclose(vids["prob_mean"], ref["prob"])

    # reloaded from disk = the dict in memory = the figures train_fusion measured
    again = fusion_scores(ckpt, faces, feats)
    pd.testing.assert_frame_equal(vids, again)
    val_faces, val_feats = frame_features(fused, clip_ds, "val")
    val = fusion_scores(fused, val_faces, val_feats)
    assert len(val) == val_faces["video_id"].nunique()
    auc = video_auc(val["label"], val["prob_vtf"])
    assert auc == pytest.approx(entry["val_video_auc"], nan_ok=True)
    assert auc == pytest.approx(fig["val"]["video_auc_vtf"], nan_ok=True)
    test_faces, test_feats = frame_features(fused, clip_ds, "test")
    test = fusion_scores(fused, test_faces, test_feats)
    assert len(test) == test_faces["video_id"].nunique() and np.isfinite(test["prob_vtf"]).all()


def test_train_fusion_is_deterministic_and_replaces_by_default(clip_ds, m2tr_ckpt, tmp_path):
    frame_ckpt = m2tr_ckpt
    a = tmp_path / "a.pt"
    shutil.copy(frame_ckpt, a)
    train_fusion(a, clip_ds, clip=2, epochs=3, seed=4)  # no `out`: `a` itself gains the head
    train_fusion(frame_ckpt, clip_ds, out=tmp_path / "b.pt", clip=2, epochs=3, seed=4)
    train_fusion(frame_ckpt, clip_ds, out=tmp_path / "c.pt", clip=2, epochs=3, seed=5)
    sa, sb, sc = (load_checkpoint(tmp_path / f"{n}.pt")["fusion"]["state_dict"] for n in "abc")
    assert has_fusion(load_checkpoint(a))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_train_fusion_refuses_one_class(clip_ds, m2tr_ckpt, real_video, fake_video, tmp_path):
    frame_ckpt = m2tr_ckpt
    real, _ = extract_pair(real_video, fake_video, every=10, size=64, work=tmp_path / "extract")
    reals_only = write_clip_dataset(tmp_path / "reals", real, [], clip_frames=40)
    with pytest.raises(DataError, match="only real"):
        train_fusion(frame_ckpt, reals_only, out=tmp_path / "x.pt", epochs=1)
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(DataError, match="split must be"):
        frame_features(frame_ckpt, clip_ds, "holdout")
    faces, feats = frame_features(frame_ckpt, clip_ds, "val")
    with pytest.raises(CheckpointError, match="no temporal fusion head"):
        fusion_scores(frame_ckpt, faces, feats)
