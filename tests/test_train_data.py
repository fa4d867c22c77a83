"""The faces stream and splits on a tiny dataset of real FF++ face crops."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from test_train_helpers import extract_pair, write_clip_dataset

from dfpipe.train.data import (
    DataError,
    FaceStream,
    ImageSpec,
    StreamConfig,
    load_index,
    make_loader,
    round_robin_order,
    shuffle_buffer,
)
from dfpipe.train.splits import assign_splits

SPEC = ImageSpec(48, 48, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def pair(real_video, fake_video, tmp_path_factory):
    return extract_pair(real_video, fake_video, every=10, size=64, work=tmp_path_factory.mktemp("extract"))


@pytest.fixture(scope="module")
def clip_ds(pair, tmp_path_factory):
    real, fake = pair
    return write_clip_dataset(tmp_path_factory.mktemp("clips"), real, fake, clip_frames=40, masks=True)


def _stream(index, seed: int = 5) -> FaceStream:
    return FaceStream(index, StreamConfig("train", SPEC, train=True, shuffle=True, buffer=8, seed=seed))


def test_index_labels_and_video_metadata(clip_ds):
    index = load_index(clip_ds)
    t = index.table
    assert set(t["label"]) == {"real", "fake"}
    assert (t.loc[t["label"] == "fake", "method"] == "NeuralTextures").all()
    assert t["method"][t["label"] == "real"].isna().all()
    assert (t["compression"] == "c23").all()
    # positions point at the right bytes: a row read back by (part, rg, rg_row) is that face
    import pyarrow.parquet as pq

    r = t.iloc[len(t) // 2]
    got = pq.ParquetFile(index.parts[r["part"]]).read_row_group(int(r["rg"]), columns=["face_id"]).column(0)[int(r["rg_row"])]
    assert got.as_py() == r["face_id"]


def test_labels_fall_back_to_the_videos_table(pair, tmp_path):
    real, fake = pair
    root = write_clip_dataset(tmp_path / "a", real, fake, clip_frames=100, face_labels=False)
    t = load_index(root).table
    assert (t.loc[t["video_id"].str.startswith("nt004"), "y"] == 1).all()
    assert (t.loc[t["video_id"].str.startswith("real004"), "y"] == 0).all()
    root = write_clip_dataset(tmp_path / "b", real, fake, clip_frames=100, face_labels=False, with_videos=False)
    index = load_index(root)
    assert (index.table["y"] == -1).all()  # nothing says real or fake: not trainable
    with pytest.raises(DataError, match="no labelled faces") as raised:
        FaceStream(index, StreamConfig("train", SPEC))
    assert "dfpipe ingest list" in str(raised.value) and "label" in str(raised.value)  # says how to label


def test_made_splits_keep_videos_and_pairs_together(clip_ds):
    index = load_index(clip_ds, seed=3)
    t = index.table
    per_video = t.groupby("video_id")["split"].nunique()
    assert (per_video == 1).all(), "a video was split across train/val/test"
    # a fake clip sits in its source real clip's split
    split_of = t.groupby("video_id")["split"].first()
    for vid, split in split_of.items():
        if vid.startswith("nt004_"):
            assert split == split_of["real004_" + vid.split("_", 1)[1]]
    assert set(split_of) == {"train", "val", "test"}
    # deterministic in the seed, and the seed matters
    assert load_index(clip_ds, seed=3).table["split"].equals(t["split"])
    assert any(not load_index(clip_ds, seed=s).table["split"].equals(t["split"]) for s in range(4, 12))


def test_assign_splits_groups_fakes_with_source_or_target():
    faces = pd.DataFrame({"video_id": ["a", "a", "b", "c", "d", "ab", "ba", "e", "f", "g"]})
    videos = pd.DataFrame({
        "video_id": ["a", "b", "c", "d", "ab", "ba", "e", "f", "g"],
        "source_video_id": [None, None, None, None, "a", "b", None, None, None],
        "target_video_id": [None, None, None, None, "b", "a", None, None, None],
        "split": [None] * 9,
    })
    for seed in range(20):
        s = assign_splits(faces, videos, seed=seed)
        by_video = s.groupby(faces["video_id"]).nunique()
        assert (by_video == 1).all()
        split = dict(zip(faces["video_id"], s))
        assert split["a"] == split["b"] == split["ab"] == split["ba"]  # one identity component
    # explicit video splits win and pull unsplit members of their group along
    videos.loc[videos["video_id"] == "b", "split"] = "test"
    s = dict(zip(faces["video_id"], assign_splits(faces, videos, seed=0)))
    assert s["a"] == s["b"] == s["ab"] == "test"
    with pytest.raises(ValueError, match="unknown split"):
        assign_splits(faces.assign(split="holdout"), None)


def test_explicit_time_splits_are_kept(pair, tmp_path):
    real, fake = pair
    root = write_clip_dataset(tmp_path, real, fake, clip_frames=10_000, split_by_frame=(200, 230))
    t = load_index(root).table
    assert (t.loc[t["frame_index"] < 200, "split"] == "train").all()
    assert (t.loc[t["frame_index"] >= 230, "split"] == "test").all()


@pytest.mark.parametrize("world,workers", [(1, 1), (1, 3), (2, 2), (3, 1)])
def test_sharding_covers_each_row_once(clip_ds, world, workers):
    index = load_index(clip_ds)
    cfg = StreamConfig("train", SPEC, train=False, shuffle=True, buffer=8, seed=1)
    seen = Counter()
    for rank in range(world):
        stream = FaceStream(index, cfg, rank, world)
        stream.set_epoch(2)
        for w in range(workers):
            seen.update(stream.shard_rows(w, workers).tolist())
    expected = index.select("train").index.tolist()
    assert sorted(seen) == sorted(expected)
    assert set(seen.values()) == {1}


def test_train_shards_are_equal_and_balanced(clip_ds):
    index = load_index(clip_ds)
    n_train = len(index.select("train"))
    cfg = StreamConfig("train", SPEC, train=True, shuffle=True, balance=True, buffer=8, seed=1)
    lens = [len(FaceStream(index, cfg, r, 3)) for r in range(3)]
    assert len(set(lens)) == 1 and sum(lens) >= n_train  # padded to equal steps per rank
    order = FaceStream(index, cfg).epoch_order()
    ys = index.table["y"].to_numpy()[order]
    assert (ys == 0).sum() == (ys == 1).sum()
    assert set(index.select("train").index) <= set(order.tolist())  # every row still seen


def test_dataloader_workers_read_each_row_once(clip_ds):
    index = load_index(clip_ds)
    cfg = StreamConfig("train", SPEC, train=False, shuffle=True, buffer=8, seed=2)
    stream = FaceStream(index, cfg)
    stream.set_epoch(0, batch_size=4)
    rows = torch.cat([b["row"] for b in make_loader(stream, 4, workers=2)]).tolist()
    assert sorted(rows) == sorted(index.select("train").index.tolist())


def test_epochs_differ_and_repeat(clip_ds):
    index = load_index(clip_ds)
    stream = FaceStream(index, StreamConfig("train", SPEC, train=True, shuffle=True, buffer=8, seed=2))
    stream.set_epoch(0)
    a = stream.shard_rows(0, 1)
    stream.set_epoch(1)
    b = stream.shard_rows(0, 1)
    stream.set_epoch(0)
    assert np.array_equal(a, stream.shard_rows(0, 1)) and not np.array_equal(a, b)


def test_skip_batches_resumes_the_same_samples(clip_ds):
    """Skipping k batches yields exactly the tail of the full epoch, pixels included
    (augmentation is seeded per position), with two loader workers and odd skips."""
    index = load_index(clip_ds)
    stream = FaceStream(index, StreamConfig("train", SPEC, train=True, shuffle=True, buffer=8, seed=4))
    stream.set_epoch(3, skip_batches=0, batch_size=3)
    full = list(make_loader(stream, 3, workers=2))
    for skip in (5, 6, len(full) - 1):
        stream.set_epoch(3, skip_batches=skip, batch_size=3)
        tail = list(make_loader(stream, 3, workers=2))
        assert len(tail) == len(full) - skip
        for a, b in zip(full[skip:], tail):
            assert torch.equal(a["row"], b["row"]) and torch.equal(a["image"], b["image"])


def test_samples_masks_and_normalisation(clip_ds):
    index = load_index(clip_ds)
    stream = FaceStream(index, StreamConfig(None, SPEC))
    stream.set_epoch(0)
    batch = next(iter(make_loader(stream, len(stream))))
    x, y, m, known = batch["image"], batch["label"], batch["mask"], batch["mask_known"]
    assert x.shape[1:] == (3, 48, 48) and m.shape[1:] == (1, 48, 48)
    assert -2.2 < float(x.min()) < 0 < float(x.max()) < 2.7  # ImageNet-normalised pixels
    assert (m[y == 0] == 0).all() and known[y == 0].all()
    fake_known = known & (y == 1)
    assert fake_known.any() and (m[fake_known].amax(dim=(1, 2, 3)) > 0).any()


def test_fake_without_mask_is_flagged_unknown(pair, tmp_path):
    real, fake = pair
    root = write_clip_dataset(tmp_path, real, fake, clip_frames=100, masks=False)
    stream = FaceStream(load_index(root), StreamConfig(None, SPEC))
    stream.set_epoch(0)
    batch = next(iter(make_loader(stream, len(stream))))
    assert not batch["mask_known"][batch["label"] == 1].any()
    assert batch["mask_known"][batch["label"] == 0].all()


def test_augmentation_is_seeded_and_train_only(clip_ds):
    index = load_index(clip_ds)
    first = [next(iter(make_loader(_stream(index), 4)))["image"] for _ in range(2)]
    assert torch.equal(first[0], first[1])
    other_seed = next(iter(make_loader(_stream(index, seed=6), 4)))["image"]
    assert not torch.equal(first[0], other_seed)


def test_helpers_shuffle_buffer_and_round_robin():
    rng = np.random.default_rng(0)
    items = np.arange(100)
    out = shuffle_buffer(items, 10, rng)
    assert sorted(out.tolist()) == items.tolist() and not np.array_equal(out, items)
    assert out[:10].max() < 20  # a buffer of 10 only reaches a little ahead
    assert round_robin_order([3, 3, 2]) == [0, 1, 2, 0, 1, 2, 0, 1]
    assert round_robin_order([3, 1]) == [0, 1, 0, 0]


def test_bad_dataset_messages(tmp_path, clip_ds):
    with pytest.raises(DataError, match="no faces/ parts"):
        load_index(tmp_path)
    index = load_index(clip_ds)
    with pytest.raises(DataError, match="no labelled faces") as raised:
        FaceStream(index.__class__(index.root, index.parts, index.table.assign(split="train")), StreamConfig("test", SPEC))
    assert "'test'" in str(raised.value) and "train (" in str(raised.value)  # names the splits there are


def test_splits_are_kept_for_evaluation_and_new_videos_join_their_group(pair, tmp_path):
    """Training writes DS/splits/; a later read with the same seed gives the same splits even
    when the videos table changed (here: a video's group link is dropped)."""
    import pyarrow.parquet as pq

    from dfpipe.manifests.parts import list_parts
    from dfpipe.train.splits import read_kept_splits

    real, fake = pair
    root = write_clip_dataset(tmp_path, real, fake, clip_frames=40)
    first = load_index(root, seed=7, keep_splits=True).table
    kept = read_kept_splits(root, 7)
    assert set(kept) == set(first["video_id"])  # every video with faces, all made here
    assert [p.name for p in list_parts(root, "splits")] == ["part-seed7.parquet"]
    written = pq.read_table(list_parts(root, "splits")[0]).to_pandas()
    assert set(written["origin"]) == {"made"} and (written["seed"] == 7).all()
    # a different seed would split differently; the kept seed-7 splits do not move
    again = load_index(root, seed=7).table
    assert again["split"].equals(first["split"])
    assert read_kept_splits(root, 8) == {}


def test_small_datasets_get_a_validation_split_with_both_classes():
    """Two unlinked real videos and two unlinked fakes: val must not be all train, and
    stratifying by what a group holds puts a real and a fake in val."""
    faces = pd.DataFrame({"video_id": ["r1", "r2", "f1", "f2"], "label": ["real", "real", "fake", "fake"]})
    for seed in range(10):
        s = dict(zip(faces["video_id"], assign_splits(faces, None, seed=seed)))
        val = {v for v, x in s.items() if x == "val"}
        assert len(val) == 2 and {v[0] for v in val} == {"r", "f"}


def test_identity_in_meta_keeps_videos_of_one_person_together():
    from dfpipe.train.splits import video_groups

    videos = pd.DataFrame({"video_id": ["a", "b", "c"], "identity": ["id0", "id0", None]})
    g = video_groups(["a", "b", "c"], videos)
    assert g["a"] == g["b"] != g["c"]


def test_training_without_a_usable_validation_split_is_refused(pair, tmp_path):
    from dfpipe.train.trainer import TrainError, check_validation

    real, fake = pair
    root = write_clip_dataset(tmp_path, real, fake, clip_frames=10_000, split_by_frame=(10_000, 10_000))
    index = load_index(root)
    assert set(index.table["split"]) == {"train"}
    with pytest.raises(TrainError, match="validation split is empty") as raised:
        check_validation(index)
    assert "ingest list" in str(raised.value) and "train: 2 videos" in str(raised.value)
