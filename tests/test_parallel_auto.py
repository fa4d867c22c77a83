"""Where a stage's items run (`parallel.choose_execution`): a run too small to gain from a
Dask cluster goes serial by itself; an explicit `--workers N` or `--scheduler` is obeyed.
The choice is in the summary and in run.json, and the items show where they ran (their
process id). On a cluster, the steps an item reports reach the bar when it ends."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from rich.progress import Progress

from dfpipe.manifests.parts import part_keys, read_table, write_rows
import dfpipe.runtime.parallel as parallel
from dfpipe.runtime.parallel import choose_execution
from dfpipe.runtime.progress import expect_steps, step
from dfpipe.runtime.runinfo import read_run
from dfpipe.runtime.stage import Outcome, Stage, run_stage

_ROWS = pa.schema([("key", pa.string()), ("status", pa.string()), ("error_code", pa.string()),
                   ("error", pa.string()), ("pid", pa.int64())])


@dataclass
class PidStage(Stage[int]):
    """Writes, per number, the id of the process that did it; each is 3 steps."""

    root: Path
    numbers: tuple[int, ...]
    name = "pid"
    unit = "numbers"
    steps = "steps"

    def params(self):
        return {}

    def items(self):
        return list(self.numbers)

    def key(self, item):
        return f"n{item}"

    def done(self):
        return part_keys(self.root, "rows")

    def process(self, item, on_worker):
        expect_steps(3)
        for _ in range(3):
            step()
        write_rows(self.root, "rows", self.key(item), [{"key": self.key(item), "status": "ok", "pid": os.getpid()}], _ROWS)

    def write_error(self, item, error):
        raise AssertionError(error)

    def outcomes(self, keys):
        return [Outcome(r["key"], r["status"]) for r in read_table(self.root, "rows", _ROWS).to_pylist()]


def _pids(root: Path) -> set[int]:
    return {r["pid"] for r in read_table(root, "rows", _ROWS).to_pylist()}


def test_one_item_with_default_workers_runs_in_this_process_without_dask(tmp_path):
    summary = run_stage(PidStage(tmp_path, (1,)), progress=False)
    assert summary.n_ok == 1 and summary.execution == "serial: 1 item to do"
    assert read_run(tmp_path)["stages"]["pid"]["execution"]["mode"] == "serial"
    assert _pids(tmp_path) == {os.getpid()}


def test_explicit_workers_start_a_cluster_even_for_few_items(tmp_path, monkeypatch):
    bar = Progress(disable=True)
    monkeypatch.setattr(parallel, "progress_bar", lambda enabled=True, transient=False: bar)
    summary = run_stage(PidStage(tmp_path, (1, 2)), workers=2, progress=False)
    assert summary.n_ok == 2 and summary.execution == "local cluster: 2 workers (--workers 2)"
    assert read_run(tmp_path)["stages"]["pid"]["execution"] == {"mode": "local", "workers": 2, "reason": "--workers 2"}
    assert os.getpid() not in _pids(tmp_path)  # the items ran in worker processes
    (steps,) = [t for t in bar.tasks if t.description.strip() == "steps"]
    assert steps.completed == steps.total == 6  # counted on the workers, shown as each item ended


def test_a_rerun_with_everything_done_starts_nothing(tmp_path):
    run_stage(PidStage(tmp_path, (1,)), progress=False)
    again = run_stage(PidStage(tmp_path, (1,)), workers=2, progress=False)
    assert again.n_skipped == 1 and again.execution == "none: nothing to do"


def test_the_rule():
    assert choose_execution(1, None, None, cores=16).mode == "serial"
    assert choose_execution(5, None, None, cores=1).mode == "serial"
    local = choose_execution(3, None, None, cores=16)
    assert (local.mode, local.workers) == ("local", 3)  # no more workers than items
    assert choose_execution(40, None, None, cores=16).workers == 16
    assert choose_execution(1, 2, None).mode == "local"  # --workers is obeyed
    assert choose_execution(9, 0, None).mode == "serial"
    assert choose_execution(1, None, "tcp://host:8786").describe() == "scheduler: tcp://host:8786"
    # a run the stage knows is small stays serial; unknown or large work gets the cluster
    small = choose_execution(12, None, None, cores=16, work_seconds=3.6)
    assert small.mode == "serial" and small.describe() == "serial: 12 small items, about 4 s of work"
    assert choose_execution(12, None, None, cores=16, work_seconds=None).mode == "local"
    assert choose_execution(40, None, None, cores=16, work_seconds=parallel.SMALL_RUN_SECONDS).mode == "local"
    assert choose_execution(12, 2, None, work_seconds=1.0).mode == "local"  # --workers still wins


def test_a_folder_of_a_few_photos_extracts_serially(tmp_path, retinaface_weights, photo):
    import cv2

    from dfpipe.pipeline.faces.config import ExtractConfig
    from dfpipe.pipeline.faces.stage import extract

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "grace_hopper"):
        cv2.imwrite(str(photos / f"{name}.png"), cv2.cvtColor(photo(name), cv2.COLOR_RGB2BGR))
    summary = extract([photos], tmp_path / "ds", ExtractConfig(mesh="none"), progress=False)
    assert summary.n_ok == 2 and summary.execution == "serial: 2 small items, about 1 s of work"
    assert summary.counts["faces"] >= 2
    assert read_run(tmp_path / "ds")["stages"]["extract"]["execution"]["mode"] == "serial"


def test_videos_of_unknown_length_are_left_to_the_cluster_rule(tmp_path, any_video):
    from dfpipe.pipeline.faces.config import ExtractConfig
    from dfpipe.pipeline.faces.stage import _stage
    from dfpipe.runtime.stage import estimate_work

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        (videos / f"v{i}.mp4").write_bytes(any_video.read_bytes() + bytes([i]))  # two contents, two items
    stage = _stage([videos], tmp_path / "ds", ExtractConfig(mesh="none"))
    assert len(stage.items()) == 2 and estimate_work(stage, stage.items()) is None
    assert choose_execution(2, None, None, cores=2, work_seconds=None).mode == "local"


def test_a_stage_sent_to_an_existing_cluster_carries_absolute_paths(tmp_path, monkeypatch):
    """Workers of `dask worker` run in their own folder: every relative path of the stage,
    its config and its items is made absolute here (tests/test_cluster.py runs it for real)."""
    from pathlib import Path

    from dfpipe.pipeline.faces.config import ExtractConfig
    from dfpipe.pipeline.faces.inputs import VideoJob
    from dfpipe.pipeline.faces.stage import ExtractStage
    from dfpipe.runtime.stage import with_absolute_paths

    monkeypatch.chdir(tmp_path)
    stage = ExtractStage(Path("ds"), ExtractConfig(weights="w/retina.pth"), jobs=[VideoJob(Path("v/a.mp4"), "abc")])
    sent = with_absolute_paths(stage)
    assert sent.root == tmp_path / "ds" and sent.config.weights == str(tmp_path / "w" / "retina.pth")
    assert sent.jobs[0].path == tmp_path / "v" / "a.mp4" and sent.jobs[0].video_id == "abc"
    assert stage.root == Path("ds") and stage.jobs[0].path == Path("v/a.mp4")  # the caller's stays as given
