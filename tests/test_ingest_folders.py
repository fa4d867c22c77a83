"""`dfpipe ingest folders`: labels, methods, pairs and splits from a curator's real/ fake/
folders, and a re-ingest that updates changed rows (and their extracted faces)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.manifests.parts import read_table
from dfpipe.pipeline.ingest import IngestError, ingest


def _link(path: Path, target: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def _videos(ds: Path):
    return read_table(ds, "videos").to_pandas().set_index("path")


def test_folders_give_labels_methods_and_pairs(real_video, fake_video, tmp_path):
    root = tmp_path / "mine"
    _link(root / "real" / "004.mp4", real_video)
    _link(root / "fake" / "NeuralTextures" / "004_982.mp4", fake_video)
    (root / "fake" / "notes.txt").write_text("not a video")
    ds = tmp_path / "ds"
    [summary] = ingest("folders", root, ds)
    assert summary.written == 2 and not summary.errors and not summary.warnings
    v = read_table(ds, "videos").to_pandas()
    real = v[v["label"] == "real"].iloc[0]
    fake = v[v["label"] == "fake"].iloc[0]
    assert fake["method"] == "NeuralTextures" and pd.isna(real["method"])
    assert fake["source_video_id"] == real["video_id"]  # 004_982 pairs with 004
    assert set(v["status"]) == {"pending"} and v["split"].isna().all()


def test_split_folders_and_unpaired_fakes(real_video, fake_video, tmp_path):
    root = tmp_path / "mine"
    _link(root / "val" / "real" / "a.mp4", real_video)
    _link(root / "test" / "fake" / "b.mp4", fake_video)  # no method folder, no real of its name
    [summary] = ingest("folders", root, tmp_path / "ds")
    v = read_table(tmp_path / "ds", "videos").to_pandas().set_index("label")
    assert v.loc["real", "split"] == "val" and v.loc["fake", "split"] == "test"
    assert pd.isna(v.loc["fake", "method"]) and pd.isna(v.loc["fake", "source_video_id"])
    assert any("no real of the same name" in w for w in summary.warnings)


def test_bad_layouts_are_exit_2_with_a_reason(tmp_path):
    (tmp_path / "empty" / "real").mkdir(parents=True)
    (tmp_path / "flat").mkdir()
    runner = CliRunner()
    for root, words in ((tmp_path / "empty", "hold no video"), (tmp_path / "flat", "no real/ or fake/"),
                        (tmp_path / "missing", "no such folder")):
        r = runner.invoke(app, ["ingest", "folders", str(root), "--out", str(tmp_path / "ds")])
        assert r.exit_code == 2, r.output
        assert words in " ".join(r.output.split())
    with pytest.raises(IngestError):
        ingest("folders", tmp_path / "flat", tmp_path / "ds")


def test_reingest_updates_changed_rows_and_their_faces(real_video, fake_video, tmp_path):
    from dfpipe.pipeline.faces.config import ExtractConfig
    from dfpipe.pipeline.faces.stage import extract

    root = tmp_path / "mine"
    _link(root / "real" / "004.mp4", real_video)
    _link(root / "fake" / "NT" / "004_982.mp4", fake_video)
    ds = tmp_path / "ds"
    ingest("folders", root, ds)
    extract([ds], config=ExtractConfig(count=2, size=64), workers=0, progress=False)
    done = read_table(ds, "videos").to_pandas()
    assert set(done["status"]) == {"ok"}

    # the curator renames the method folder and moves the pair into val/
    (root / "fake" / "NT").rename(root / "fake" / "NeuralTextures")
    for label in ("real", "fake"):
        (root / "val").mkdir(exist_ok=True)
        (root / label).rename(root / "val" / label)
    [summary] = ingest("folders", root, ds)
    assert summary.written == 0 and summary.skipped_existing == 0
    changes = dict(summary.updated)
    assert "method NT -> NeuralTextures" in changes["val/fake/NeuralTextures/004_982.mp4"]
    assert "split - -> val" in changes["val/real/004.mp4"]
    after = read_table(ds, "videos").to_pandas().set_index("video_id")
    assert set(after["status"]) == {"ok"} and set(after["split"]) == {"val"}  # extract's results kept
    assert (after["n_faces"] == done.set_index("video_id")["n_faces"]).all()
    faces = read_table(ds, "faces", columns=["video_id", "label", "split"]).to_pandas()
    assert set(faces["split"]) == {"val"}
    assert (faces["label"] == faces["video_id"].map(after["label"])).all()
    # nothing changed: a third run keeps every row and says so
    [again] = ingest("folders", root, ds)
    assert again.updated == [] and again.skipped_existing == 2
    r = CliRunner().invoke(app, ["ingest", "folders", str(root), "--out", str(ds)])
    assert r.exit_code == 0 and "updated" in r.output
