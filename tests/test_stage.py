"""The stage runner (`dfpipe.runtime.stage`): one error policy, resume, the parameter guard,
and the summary, on a small stage of its own and on the real extract and masks stages."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dfpipe.manifests.parts import part_keys, part_path, read_table, write_rows
from dfpipe.manifests.schema import MASKS_SCHEMA, VIDEOS_SCHEMA
from dfpipe.runtime.runinfo import ParamsMismatch, read_run
from dfpipe.runtime.stage import ItemError, Outcome, Stage, run_stage
from conftest import make_pair_dataset

_ROWS = pa.schema([("key", pa.string()), ("status", pa.string()), ("error_code", pa.string()),
                   ("error", pa.string()), ("value", pa.int64())])


@dataclass
class SquareStage(Stage[int]):
    """Squares numbers into one part per number; 3 is bad input, 5 hits a bug."""

    root: Path
    numbers: tuple[int, ...]
    offset: int = 0
    name = "square"
    unit = "numbers"

    def params(self):
        return {"offset": self.offset}

    def items(self):
        return list(self.numbers)

    def key(self, item):
        return f"n{item}"

    def done(self):
        return part_keys(self.root, "rows")

    def process(self, item, on_worker):
        if item == 3:
            raise ItemError("bad_input", "three is not allowed")
        if item == 5:
            raise ZeroDivisionError("a bug")
        write_rows(self.root, "rows", self.key(item), [{"key": self.key(item), "status": "ok", "value": item * item + self.offset}], _ROWS)

    def write_error(self, item, error):
        write_rows(self.root, "rows", self.key(item),
                   [{"key": self.key(item), "status": "error", "error_code": error.code, "error": error.message}], _ROWS)

    def outcomes(self, keys):
        wanted = set(keys)
        rows = read_table(self.root, "rows", _ROWS).to_pylist()
        return [Outcome(r["key"], r["status"], error_code=r["error_code"], error=r["error"], counts={"sum": r["value"] or 0})
                for r in rows if r["key"] in wanted]


def test_errors_become_rows_and_the_other_items_finish(tmp_path):
    summary = run_stage(SquareStage(tmp_path, (1, 2, 3, 4, 5, 6)), workers=0, progress=False)
    rows = {r["key"]: r for r in read_table(tmp_path, "rows", _ROWS).to_pylist()}
    assert {k: r["status"] for k, r in rows.items()} == {
        "n1": "ok", "n2": "ok", "n3": "error", "n4": "ok", "n5": "error", "n6": "ok"}
    assert rows["n3"]["error_code"] == "bad_input" and rows["n3"]["error"] == "three is not allowed"
    assert rows["n5"]["error_code"] == "internal" and rows["n5"]["error"] == "ZeroDivisionError: a bug"
    assert summary.n_items == 6 and summary.n_ok == 4 and summary.n_errors == 2
    assert dict(summary.errors) == {"bad_input": 1, "internal": 1}
    assert summary.counts["sum"] == 1 + 4 + 16 + 36
    assert read_run(tmp_path)["stages"]["square"]["params"] == {"offset": 0}


def test_a_rerun_skips_done_items_and_other_parameters_are_refused(tmp_path):
    run_stage(SquareStage(tmp_path, (1, 2)), workers=0, progress=False)
    first = part_path(tmp_path, "rows", "n1").stat().st_mtime_ns
    summary = run_stage(SquareStage(tmp_path, (1, 2, 4)), workers=0, progress=False)
    assert summary.n_skipped == 2 and summary.n_ok == 3 and summary.counts["sum"] == 1 + 4 + 16
    assert part_path(tmp_path, "rows", "n1").stat().st_mtime_ns == first  # not redone
    with pytest.raises(ParamsMismatch, match="other parameters"):
        run_stage(SquareStage(tmp_path, (1, 2), offset=1), workers=0, progress=False)
    assert part_keys(tmp_path, "rows") == {"n1", "n2", "n4"}  # nothing written by the refused run


# ----------------------------------------------------------------------------- real stages


@pytest.fixture(scope="module")
def pair_dataset(tmp_path_factory, real_video, fake_video, retinaface_weights) -> Path:
    """The shared FF++ pair, ingested as real + fake and extracted (3 frames each)."""
    return make_pair_dataset(tmp_path_factory.mktemp("stage"), real_video, fake_video)


def test_extract_keeps_going_after_a_bug_in_one_video(tmp_path, real_video, fake_video, retinaface_weights, monkeypatch):
    """An unexpected exception in one video is an `internal` row; the other video is extracted."""
    import dfpipe.pipeline.faces.stage as stage_module
    from dfpipe.pipeline.faces import ExtractConfig, extract

    real_parts = stage_module.extract_video_parts

    def flaky(job, config, root, decode_ahead=True):
        if job.path.name == fake_video.name:
            raise KeyError("unexpected")
        return real_parts(job, config, root, decode_ahead)

    monkeypatch.setattr(stage_module, "extract_video_parts", flaky)
    summary = extract([real_video, fake_video], tmp_path, ExtractConfig(count=2, size=96), workers=0, progress=False)
    rows = {Path(r["path"]).name: r for r in read_table(tmp_path, "videos", VIDEOS_SCHEMA).to_pylist()}
    assert rows[real_video.name]["status"] == "ok" and rows[real_video.name]["n_faces"] == 2
    assert rows[fake_video.name]["status"] == "error" and rows[fake_video.name]["error_code"] == "internal"
    assert "KeyError" in rows[fake_video.name]["error"]
    assert summary.n_ok == 1 and dict(summary.errors) == {"internal": 1}
    assert not part_path(tmp_path, "faces", rows[fake_video.name]["video_id"]).exists()


def test_masks_write_error_rows(pair_dataset, tmp_path, monkeypatch):
    """A fake that cannot be masked gets its `masks/` error row, and a rerun skips it."""
    from dfpipe.pipeline.masks import stage as masks_stage
    from dfpipe.pipeline.masks.stage import masks

    ds = tmp_path / "ds"
    shutil.copytree(pair_dataset, ds)
    fake = next(v for v in read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist() if v["label"] == "fake")
    part_path(ds, "faces", fake["video_id"]).unlink()  # a broken dataset: the fake's faces are gone
    summary = masks(ds, workers=0, progress=False)
    (row,) = pq.read_table(part_path(ds, "masks", fake["video_id"]), schema=MASKS_SCHEMA).to_pylist()
    assert row["status"] == "error" and row["error_code"] == "bad_input" and "no faces part" in row["error"]
    assert summary.n_errors == 1 and summary.failed[0][1] == "bad_input"
    again = masks(ds, workers=0, progress=False)
    assert again.n_skipped == 1 and again.n_errors == 1  # its row is its marker: counted, not redone

    def broken(root, video, config):
        raise RuntimeError("mask bug")

    ds2 = tmp_path / "ds2"
    shutil.copytree(pair_dataset, ds2)
    monkeypatch.setattr(masks_stage, "mask_video", broken)
    summary = masks(ds2, workers=0, progress=False)
    (row,) = pq.read_table(part_path(ds2, "masks", fake["video_id"]), schema=MASKS_SCHEMA).to_pylist()
    assert row["error_code"] == "internal" and row["error"] == "RuntimeError: mask bug"
    assert summary.n_errors == 1


def test_masks_ok_rows_count_faces_by_source(pair_dataset, tmp_path):
    from dfpipe.pipeline.masks.stage import mask_sources, masks

    ds = tmp_path / "ds"
    shutil.copytree(pair_dataset, ds)
    summary = masks(ds, workers=0, progress=False)
    assert summary.n_ok == 1 and summary.n_errors == 0 and mask_sources(summary) == {"pair": 3}
    (row,) = read_table(ds, "masks", MASKS_SCHEMA).to_pylist()
    assert (row["status"], row["n_faces"], row["n_pair"]) == ("ok", 3, 3)
