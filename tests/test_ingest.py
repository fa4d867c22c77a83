"""Ingest adapters on small folder layouts of each dataset, built from tiny real clips.

The clips are 2-frame 64x36 segments of the shared FF++ video (distinct content, so
distinct content-hash ids), cut with ffmpeg in one call.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dfpipe.manifests.ids import video_content_id as content_id
from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import VIDEOS_SCHEMA
from dfpipe.pipeline.ingest import IngestError, ingest


@pytest.fixture(scope="module")
def clips(tmp_path_factory, real_video) -> list[Path]:
    import imageio_ffmpeg

    folder = tmp_path_factory.mktemp("clips")
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(real_video), "-frames:v", "40",
        "-vf", "scale=64:36", "-c:v", "libx264", "-preset", "ultrafast", "-g", "2", "-an",
        "-f", "segment", "-segment_frames", ",".join(str(i) for i in range(2, 40, 2)),
        "-reset_timestamps", "1", str(folder / "c%02d.mp4"),
    ]
    subprocess.run(cmd, check=True)
    found = sorted(folder.glob("c*.mp4"))
    assert len(found) >= 16
    return found


class ClipPool:
    def __init__(self, clips: list[Path]) -> None:
        self._clips = list(clips)

    def put(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self._clips.pop(0), path)
        return path


def _videos(out: Path) -> pd.DataFrame:
    return read_table(out, "videos", VIDEOS_SCHEMA).to_pandas()


def _by_key(df: pd.DataFrame) -> dict[str, dict]:
    return {json.loads(r["meta"])["key"]: r for r in df.to_dict("records")}


def test_ffpp_layout_labels_pairs_splits_masks(tmp_path, clips):
    pool = ClipPool(clips)
    root = tmp_path / "FF"
    for vid in ("000", "003", "004", "982"):
        pool.put(root / "original_sequences/youtube/c23/videos" / f"{vid}.mp4")
    for method, name in (("Deepfakes", "000_003"), ("Deepfakes", "003_000"), ("NeuralTextures", "004_982")):
        pool.put(root / "manipulated_sequences" / method / "c23/videos" / f"{name}.mp4")
    mask = pool.put(root / "manipulated_sequences/Deepfakes/masks/videos/000_003.mp4")
    pool.put(root / "manipulated_sequences/Deepfakes/c40/videos/000_003.mp4")  # other compression: not listed
    (root / "splits").mkdir()
    (root / "splits/train.json").write_text(json.dumps([["000", "003"]]))
    (root / "splits/val.json").write_text(json.dumps([]))
    (root / "splits/test.json").write_text(json.dumps([["004", "982"]]))

    out = tmp_path / "ds"
    [summary] = ingest("ff++", root, out)
    df = _videos(out)
    assert len(df) == 7 and summary.written == 7
    assert set(df.status) == {"pending"}
    rows = _by_key(df)
    ids = {k: r["video_id"] for k, r in rows.items()}
    assert ids["c23/000"] == content_id(root / "original_sequences/youtube/c23/videos/000.mp4")
    fake = rows["Deepfakes/c23/000_003"]
    assert (fake["label"], fake["method"], fake["compression"], fake["dataset"]) == ("fake", "Deepfakes", "c23", "ff++")
    # frames of 000 with the face of 003: 000 is the pair partner whose tracks the fake reuses
    assert fake["source_video_id"] == ids["c23/000"] and fake["target_video_id"] == ids["c23/003"]
    assert rows["Deepfakes/c23/003_000"]["source_video_id"] == ids["c23/003"]
    assert rows["NeuralTextures/c23/004_982"]["source_video_id"] == ids["c23/004"]
    assert rows["c23/000"]["label"] == "real" and pd.isna(rows["c23/000"]["source_video_id"])
    assert {k: r["split"] for k, r in rows.items()} == {
        "c23/000": "train", "c23/003": "train", "c23/004": "test", "c23/982": "test",
        "Deepfakes/c23/000_003": "train", "Deepfakes/c23/003_000": "train", "NeuralTextures/c23/004_982": "test",
    }
    # paths and the shipped mask are relative to the dataset directory
    assert (out / fake["path"]).resolve() == (root / "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4").resolve()
    assert (out / json.loads(fake["meta"])["mask_path"]).resolve() == mask.resolve()
    assert "mask_path" not in json.loads(rows["Deepfakes/c23/003_000"]["meta"])

    # re-running keeps existing rows (a later extract may have filled them)
    [again] = ingest("ff++", root, out)
    assert again.written == 0 and again.skipped_existing == 7

    out40 = tmp_path / "ds40"
    [s40] = ingest("ff++", root, out40, compression=("c40",))
    d40 = _videos(out40)
    assert len(d40) == 1 and d40.compression.iloc[0] == "c40"
    assert s40.warnings and "not in the dataset" in s40.warnings[0]  # no c40 originals


def test_ffpp_errors_name_the_file(tmp_path, clips):
    pool = ClipPool(clips[:2])
    root = tmp_path / "FF"
    with pytest.raises(IngestError, match=r"FF: no such folder \(FaceForensics\+\+ root\)"):
        ingest("ff++", root, tmp_path / "o")
    root.mkdir()
    with pytest.raises(IngestError, match="original_sequences"):
        ingest("ff++", root, tmp_path / "o")
    pool.put(root / "original_sequences/youtube/c23/videos/000.mp4")
    (root / "splits").mkdir()
    (root / "splits/train.json").write_text("[[\"000\", ")
    with pytest.raises(IngestError, match=r"train\.json: not valid JSON"):
        ingest("ff++", root, tmp_path / "o")
    (root / "splits/train.json").write_text(json.dumps([["000", "001"]]))
    with pytest.raises(IngestError, match=r"val\.json: no such file"):
        ingest("ff++", root, tmp_path / "o")
    (root / "splits/val.json").write_text(json.dumps({"000": 1}))
    (root / "splits/test.json").write_text("[]")
    with pytest.raises(IngestError, match=r"val\.json: expected a JSON list"):
        ingest("ff++", root, tmp_path / "o")
    (root / "splits/val.json").write_text("[]")
    pool.put(root / "manipulated_sequences/Deepfakes/c23/videos/weird.mp4")
    with pytest.raises(IngestError, match=r"weird\.mp4.*<target>_<source>"):
        ingest("ff++", root, tmp_path / "o")
    with pytest.raises(IngestError, match="compression 'c99'"):
        ingest("ff++", root, tmp_path / "o", compression=("c99",))


def test_dfdc_metadata(tmp_path, clips):
    pool = ClipPool(clips)
    root = tmp_path / "dfdc"
    for part, names in (("dfdc_train_part_0", ("aaa.mp4", "bbb.mp4")), ("dfdc_train_part_1", ("ccc.mp4",))):
        for n in names:
            pool.put(root / part / n)
    (root / "dfdc_train_part_0/metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "REAL", "split": "train", "original": None},
        "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
    }))
    (root / "dfdc_train_part_1/metadata.json").write_text(json.dumps({
        "ccc.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        "gone.mp4": {"label": "REAL", "split": "train"},
    }))
    out = tmp_path / "ds"
    [summary] = ingest("dfdc", root, out)
    rows = _by_key(_videos(out))
    assert rows["bbb.mp4"]["source_video_id"] == rows["aaa.mp4"]["video_id"]
    assert rows["ccc.mp4"]["source_video_id"] == rows["aaa.mp4"]["video_id"]  # across parts
    assert {r["label"] for r in rows.values()} == {"real", "fake"}
    assert {r["split"] for r in rows.values()} == {"train"}
    # a listed clip that is not on disk is an error row, never dropped
    gone = rows["gone.mp4"]
    assert (gone["status"], gone["error_code"]) == ("error", "unreadable") and "gone.mp4" in gone["error"]
    assert len(summary.errors) == 1

    (root / "dfdc_train_part_1/metadata.json").write_text(json.dumps({"ccc.mp4": {"label": "MAYBE"}}))
    with pytest.raises(IngestError, match=r"part_1/metadata\.json \['ccc\.mp4'\].*MAYBE"):
        ingest("dfdc", root, tmp_path / "o")
    (root / "dfdc_train_part_1/metadata.json").write_text(json.dumps({"ccc.mp4": {"label": "FAKE"}}))
    with pytest.raises(IngestError, match="needs its 'original'"):
        ingest("dfdc", root, tmp_path / "o")
    with pytest.raises(IngestError, match="no metadata.json"):
        ingest("dfdc", tmp_path / "ds", tmp_path / "o")


def test_celebdf_versions_and_test_list(tmp_path, clips):
    pool = ClipPool(clips)
    root = tmp_path / "celeb"
    v2 = root / "Celeb-DF-v2"
    pool.put(v2 / "Celeb-real/id0_0000.mp4")
    pool.put(v2 / "Celeb-real/id1_0001.mp4")
    pool.put(v2 / "YouTube-real/00000.mp4")
    pool.put(v2 / "Celeb-synthesis/id0_id1_0000.mp4")
    pool.put(v2 / "Celeb-synthesis/id1_id0_0001.mp4")
    (v2 / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id1_id0_0001.mp4\n1 Celeb-real/id1_0001.mp4\n"
    )
    v1 = root / "Celeb-DF"
    pool.put(v1 / "Celeb-real/id5_0003.mp4")
    out = tmp_path / "ds"
    summaries = ingest("celebdf", root, out)
    assert sorted(s.dataset for s in summaries) == ["celebdf-v1", "celebdf-v2"]
    df = _videos(out)
    rows = _by_key(df[df.dataset == "celebdf-v2"])
    fake = rows["Celeb-synthesis/id0_id1_0000.mp4"]
    assert fake["label"] == "fake" and fake["method"] == "celeb-synthesis"
    assert fake["source_video_id"] == rows["Celeb-real/id0_0000.mp4"]["video_id"]
    assert fake["split"] == "train"
    assert rows["Celeb-synthesis/id1_id0_0001.mp4"]["split"] == "test"
    assert rows["YouTube-real/00000.mp4"]["label"] == "real" and rows["YouTube-real/00000.mp4"]["split"] == "test"
    assert df[df.dataset == "celebdf-v1"].split.isna().all()  # no test list there

    (v2 / "List_of_testing_videos.txt").write_text("1 Celeb-synthesis/id1_id0_0001.mp4\n")
    with pytest.raises(IngestError, match="listed as real but sits in Celeb-synthesis"):
        ingest("celebdf", v2, tmp_path / "o")
    (v2 / "List_of_testing_videos.txt").write_text("real YouTube-real/00000.mp4\n")
    with pytest.raises(IngestError, match=r"List_of_testing_videos\.txt:1"):
        ingest("celebdf", v2, tmp_path / "o")


def test_listing_csv_json_and_cli(tmp_path, clips):
    pool = ClipPool(clips)
    root = tmp_path / "mine"
    pool.put(root / "r/a.mp4")
    pool.put(root / "f/a_fake.mp4")
    listing = root / "list.csv"
    with open(listing, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "source", "method", "split"])
        w.writeheader()
        w.writerow({"path": "r/a.mp4", "label": "real", "split": "test"})
        w.writerow({"path": "f/a_fake.mp4", "label": "fake", "source": "r/a.mp4", "method": "MyGAN", "split": "test"})
    out = tmp_path / "ds"
    result = CliRunner().invoke(_app(), ["ingest", "list", str(listing), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "MyGAN: 1" in result.output
    rows = _by_key(_videos(out))
    assert rows["f/a_fake.mp4"]["source_video_id"] == rows["r/a.mp4"]["video_id"]
    assert rows["f/a_fake.mp4"]["method"] == "MyGAN" and rows["r/a.mp4"]["dataset"] == "custom"

    shutil.copy(root / "r/a.mp4", root / "r/copy.mp4")  # same bytes under a second name
    dup_list = root / "dup.json"
    dup_list.write_text(json.dumps([{"path": "r/a.mp4", "label": "real"}, {"path": "r/copy.mp4", "label": "real"}]))
    ingest("list", dup_list, tmp_path / "dup")
    dup = _by_key(_videos(tmp_path / "dup"))
    assert dup["r/a.mp4"]["status"] == "pending"
    assert (dup["r/copy.mp4"]["status"], dup["r/copy.mp4"]["error_code"]) == ("error", "duplicate")

    js = root / "list.json"
    js.write_text(json.dumps([{"path": "r/a.mp4", "label": "genuine"}]))
    with pytest.raises(IngestError, match=r"list\.json entry 1: label 'genuine'"):
        ingest("list", js, tmp_path / "o")
    js.write_text(json.dumps([{"path": "f/a_fake.mp4", "label": "fake", "source": "r/zzz.mp4"}]))
    with pytest.raises(IngestError, match="'r/zzz.mp4' as its pair, which is not listed"):
        ingest("list", js, tmp_path / "o")
    bad = root / "bad.csv"
    bad.write_text("file,kind\nx.mp4,real\n")
    result = CliRunner().invoke(_app(), ["ingest", "list", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "bad.csv" in result.output and "'path' and 'label'" in result.output
    result = CliRunner().invoke(_app(), ["ingest", "dfdc", str(root), "--out", str(tmp_path / "o"), "--splits", str(root)])
    assert result.exit_code == 2 and "ff++ only" in result.output


def _app():
    import typer

    from dfpipe.cli import ingest as cli_ingest

    app = typer.Typer()
    cli_ingest.register(app)

    @app.command("noop", hidden=True)
    def _noop() -> None:  # a second command keeps Typer in multi-command mode, like the real app
        pass

    return app
