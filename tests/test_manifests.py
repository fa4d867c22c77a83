"""The manifest contract: schemas documented, atomic parts, run.json guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfpipe.manifests.parts import list_parts, part_path, read_table, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.runtime.runinfo import ParamsMismatch, check_params, read_run, record_stage

DOC = Path(__file__).resolve().parents[1] / "docs" / "manifests.md"


@pytest.mark.parametrize("schema", [VIDEOS_SCHEMA, FACES_SCHEMA], ids=["videos", "faces"])
def test_every_column_is_documented(schema):
    text = DOC.read_text()
    missing = [f.name for f in schema if f"`{f.name}`" not in text]
    assert not missing, f"docs/manifests.md does not describe {missing}"


def test_rows_missing_keys_become_nulls_and_parts_are_atomic(tmp_path):
    table = rows_to_table([{"video_id": "a", "path": "x.mp4", "status": "ok"}], VIDEOS_SCHEMA)
    assert table.schema.equals(VIDEOS_SCHEMA) and table["fps"].null_count == 1
    path = write_part_atomic(table, part_path(tmp_path, "videos", "a"))
    assert path.name == "part-a.parquet" and not list((tmp_path / "videos").glob(".tmp-*"))
    (tmp_path / "videos" / ".tmp-123-part-b.parquet").write_bytes(b"half written")  # a killed writer
    assert list_parts(tmp_path, "videos") == [path]
    assert read_table(tmp_path, "videos", VIDEOS_SCHEMA).num_rows == 1


def test_run_json_refuses_other_parameters(tmp_path):
    check_params(tmp_path, "extract", {"every": 10})  # nothing recorded yet
    record_stage(tmp_path, "extract", {"every": 10, "size": 320}, weights={"w.pth": "abc"})
    check_params(tmp_path, "extract", {"every": 10, "size": 320})
    with pytest.raises(ParamsMismatch, match=r"every: 10 -> 5"):
        check_params(tmp_path, "extract", {"every": 5, "size": 320})
    run = read_run(tmp_path)
    assert run["stages"]["extract"]["weights"] == {"w.pth": "abc"} and "torch" in run["stages"]["extract"]["versions"]
