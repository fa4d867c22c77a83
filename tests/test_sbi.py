"""Self-blends made on the fly (`train --fakes sbi`), and training on several datasets,
on real FF++ face crops with their Face Mesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train_helpers import extract_pair, write_clip_dataset

from dfpipe.manifests.codec import decode_image
from dfpipe.pipeline.masks.pairmask import face_region_mask
from dfpipe.train.data import (
    DataError,
    FaceStream,
    ImageSpec,
    StreamConfig,
    load_index,
    with_self_blends,
)
from dfpipe.train.evaluate import evaluate
from dfpipe.train.sbi import crop_geometry, sbi_rng, self_blend
from dfpipe.train.trainer import TrainError, train

SIZE = 96
RAW = ImageSpec(SIZE, SIZE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # tensors are the pixels / 255


@pytest.fixture(scope="module")
def pair(real_video, fake_video, tmp_path_factory):
    return extract_pair(real_video, fake_video, every=10, size=SIZE, work=tmp_path_factory.mktemp("extract"))


@pytest.fixture(scope="module")
def clip_ds(pair, tmp_path_factory):
    real, fake = pair
    return write_clip_dataset(tmp_path_factory.mktemp("clips"), real, fake, clip_frames=40, masks=True)


def _pixels(sample: dict) -> np.ndarray:
    return np.rint(sample["image"].permute(1, 2, 0).numpy() * 255).astype(np.int16)


def _blends(index, epoch: int, seed: int = 3, workers: int = 0) -> dict[str, dict]:
    """face_id -> sample of every self-blend row of the train split in one epoch."""
    stream = FaceStream(index, StreamConfig("train", RAW, train=True, shuffle=True, buffer=8, seed=seed,
                                            augment=_no_augment()))
    stream.set_epoch(epoch)
    from dfpipe.train.data import make_loader

    out = {}
    for batch in make_loader(stream, 4, workers):
        for i, row in enumerate(batch["row"].tolist()):
            if index.table.loc[row, "sbi_of"] >= 0:
                out[index.table.loc[row, "face_id"]] = {k: batch[k][i] for k in ("image", "mask", "label", "mask_known")}
    return out


def _no_augment():
    from dfpipe.train.augment import preset

    return preset("none")


def test_index_adds_one_self_blend_per_real_face(clip_ds):
    base = load_index(clip_ds)
    sbi = with_self_blends(base, "sbi")
    reals = base.table[base.table["y"] == 0]
    blends = sbi.table[sbi.table["sbi_of"] >= 0]
    assert len(blends) == len(reals) and len(sbi.table) == 2 * len(reals)  # the stored fakes are left out
    assert (blends["method"] == "sbi").all() and (blends["y"] == 1).all()
    # each blend keeps its real's split, so a val real's blend is a val fake
    src = sbi.table.loc[blends["sbi_of"].to_numpy()]
    assert (src["split"].to_numpy() == blends["split"].to_numpy()).all()
    assert (src["y"] == 0).all()
    both = with_self_blends(base, "sbi+dataset")
    assert len(both.table) == len(base.table) + len(reals)
    assert set(both.table.loc[both.table["sbi_of"] < 0, "face_id"]) == set(base.table["face_id"])


def test_a_fresh_blend_per_sample_and_the_same_for_the_same_seed_and_epoch(clip_ds):
    index = with_self_blends(load_index(clip_ds), "sbi")
    first = _blends(index, epoch=0)
    again = _blends(index, epoch=0, workers=2)  # other loader workers: the same blends
    other_epoch = _blends(index, epoch=1)
    other_seed = _blends(index, epoch=0, seed=4)
    assert len(first) >= 8 and first.keys() == again.keys() == other_epoch.keys()
    for fid in first:
        assert torch.equal(first[fid]["image"], again[fid]["image"])
        assert torch.equal(first[fid]["mask"], again[fid]["mask"])
        assert first[fid]["label"] == 1 and first[fid]["mask_known"]
    changed = [not torch.equal(first[f]["image"], other_epoch[f]["image"]) for f in first]
    assert all(changed), "a new epoch must draw new blends"
    assert all(not torch.equal(first[f]["mask"], other_seed[f]["mask"]) for f in first)
    # within an epoch no two faces share one draw: their masks' shapes differ
    areas = [float(s["mask"].sum()) for s in first.values()]
    assert len(set(np.round(areas, 3))) == len(areas)


def test_masks_line_up_with_the_blend_and_the_face(clip_ds):
    import pyarrow.parquet as pq

    index = load_index(clip_ds)
    reals = index.table[index.table["y"] == 0]
    checked = 0
    for _, r in reals.head(6).iterrows():
        rg = pq.ParquetFile(index.parts[r["part"]]).read_row_group(int(r["rg"]), columns=["image", "landmarks", "mesh", "matrix"])
        row = {k: rg.column(k)[int(r["rg_row"])].as_py() for k in rg.column_names}
        assert row["mesh"] is not None, "extract stores the Face Mesh: the blend mask is drawn from it"
        image = decode_image(row["image"])
        lm, mesh = crop_geometry(row["landmarks"], row["mesh"], row["matrix"])
        fake, mask = self_blend(image, lm, mesh, sbi_rng(0, 0, checked))
        assert fake.shape == image.shape and mask.shape == image.shape[:2] and mask.dtype == np.float32
        assert 0.05 < mask.max() <= 1.0 and mask.min() >= 0.0
        diff = np.abs(fake.astype(np.int16) - image.astype(np.int16)).max(-1)
        # outside the mask the real is untouched; the changed pixels are those under it
        assert (diff[mask == 0] == 0).all()
        assert diff[mask > 0.2].mean() > diff[mask == 0].mean() + 1
        # the mask sits on the face: inside the face mesh's outline grown by a margin
        face, _ = face_region_mask(row["mesh"], row["landmarks"], row["matrix"], image.shape[0])
        import cv2

        grown = cv2.dilate(face, np.ones((SIZE // 6, SIZE // 6), np.uint8)) > 0
        assert mask[~grown].max(initial=0) < 0.05
        assert mask[grown].sum() / mask.sum() > 0.99
        checked += 1
    assert checked == 6


def test_train_with_sbi_trains_the_mask_head_and_evaluates_on_fresh_blends(clip_ds, tmp_path):
    summary = train(clip_ds, model="m2tr", tiny=True, out=tmp_path / "run", epochs=1, batch=8, workers=0,
                    progress=False, fakes="sbi", seed=1, log_every=1)
    reals = int((load_index(clip_ds).select("train")["y"] == 0).sum())
    assert summary["n_train"] == 2 * reals  # each real face and one self-blend of it
    import pandas as pd

    steps = pd.read_csv(tmp_path / "run" / "steps.csv")
    seg = [c for c in steps.columns if "seg" in c]
    assert seg and steps[seg[0]].notna().all() and (steps[seg[0]] > 0).all()  # the blend masks are targets
    result = evaluate(tmp_path / "run" / "best.pt", clip_ds, split="all", fakes="sbi", workers=0, progress=False)
    assert set(result["per_method"]) == {"sbi"} and result["fakes"] == "sbi"
    assert result["n_faces"] == 2 * int((load_index(clip_ds).table["y"] == 0).sum())
    with pytest.raises(TrainError, match="--fakes must be one of"):
        train(clip_ds, model="m2tr", tiny=True, out=tmp_path / "bad", fakes="blend", progress=False)


def test_train_on_two_datasets_sees_both_and_counts_a_shared_face_once(pair, tmp_path):
    real, fake = pair
    half = len(real) // 2
    a = write_clip_dataset(tmp_path / "a", real[:half], fake[:half], clip_frames=40)
    b = write_clip_dataset(tmp_path / "b", real[half - 4:], fake[half - 4:], clip_frames=40)  # shares frames with a
    ia, ib, both = load_index(a), load_index(b), load_index([a, b])
    shared = set(ia.table["face_id"]) & set(ib.table["face_id"])
    assert shared, "the fixture must share faces"
    # a video both hold comes from the first (its faces there), the others from where they are
    only_b = ib.table[~ib.table["video_id"].isin(set(ia.table["video_id"]))]
    assert len(only_b) and len(both.table) == len(ia.table) + len(only_b)
    assert both.table["face_id"].is_unique
    assert set(both.table["root"]) == {str(a), str(b)}
    # one video's faces from one place: a video both hold is read from the first
    for vid, roots in both.table.groupby("video_id")["root"].agg(set).items():
        assert len(roots) == 1, vid
    assert both.table.groupby("video_id")["split"].nunique().max() == 1
    summary = train([a, b], model="mat", tiny=True, out=tmp_path / "run", epochs=1, batch=8, workers=0,
                    progress=False, seed=2)
    assert summary["n_train"] >= len(both.select("train"))
    counts = summary["splits"]
    assert sum(c["faces"] for c in counts.values()) == len(both.select(None))
    # each directory kept the splits of its own videos, and alone it reads them back
    assert (a / "splits").is_dir() and (b / "splits").is_dir()
    again = load_index([a, b], seed=2)
    assert again.table.set_index("face_id")["split"].equals(
        load_index([a, b], seed=2).table.set_index("face_id")["split"])
    result = evaluate(tmp_path / "run" / "best.pt", [a, b], split="all", workers=0, progress=False)
    assert result["n_faces"] == len(both.select(None))
    with pytest.raises(DataError, match="no such dataset directory"):
        evaluate(tmp_path / "run" / "best.pt", [a, tmp_path / "missing"], workers=0, progress=False)


def test_cli_takes_several_datasets_and_fakes(pair, tmp_path):
    from typer.testing import CliRunner

    from dfpipe.cli.main import app

    real, fake = pair
    a = write_clip_dataset(tmp_path / "a", real, fake, clip_frames=40)
    b = write_clip_dataset(tmp_path / "b", real[:8], fake[:8], clip_frames=20)
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(a), str(b), "--model", "m2tr", "--tiny", "--epochs", "1", "--batch", "8",
                                   "--workers", "0", "--fakes", "sbi+dataset", "--out", str(run), "--no-progress"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["evaluate", str(run / "best.pt"), str(a), str(b), "--split", "all", "--fakes", "sbi",
                                   "--workers", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "method sbi" in res.output
    res = CliRunner().invoke(app, ["train", str(a), "--model", "m2tr", "--tiny", "--fakes", "nope", "--out",
                                   str(tmp_path / "bad"), "--no-progress"])
    assert res.exit_code == 2 and "--fakes must be one of" in res.output
