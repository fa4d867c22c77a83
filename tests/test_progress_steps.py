"""The progress bar moves per frame on long items: the items report steps
(`runtime.progress.step`), the serial path forwards them to a second row of the bar as they
happen, the Dask path through worker events while the item runs; either way the row ends at
the frames done. On a real clip for extract and synthesize."""

from __future__ import annotations

import subprocess
import time

import pytest
from rich.progress import Progress

import dfpipe.runtime.parallel as parallel
from dfpipe.runtime.parallel import Task, dask_client, run_tasks
from dfpipe.runtime.progress import expect_steps, step

N_FRAMES = 24


class RecordingProgress(Progress):
    """A disabled rich Progress that keeps each `completed` its rows moved to."""

    def __init__(self) -> None:
        super().__init__(disable=True)
        self.history: dict[str, list[float]] = {}

    def update(self, task_id, **kwargs):
        super().update(task_id, **kwargs)
        task = self._tasks[task_id]
        seen = self.history.setdefault(task.description.strip(), [0])
        if task.completed != seen[-1]:
            seen.append(task.completed)

    def row(self, name: str):
        return next(t for t in self.tasks if t.description.strip() == name)


@pytest.fixture
def bar(monkeypatch) -> RecordingProgress:
    recording = RecordingProgress()
    monkeypatch.setattr(parallel, "progress_bar", lambda enabled=True, transient=False: recording)
    return recording


def _frames(n: int, stop_at: int | None = None) -> int:
    expect_steps(n)
    for i in range(n):
        if i == stop_at:
            return i  # ends early: fewer steps than it expected
        step()
    return n


def test_the_serial_path_counts_steps_as_they_happen_and_settles_the_total(bar):
    tasks = [Task("a", _frames, (5,)), Task("b", _frames, (6, 2))]
    assert run_tasks(tasks, None, description="demo", steps="frames") == {"a": 5, "b": 2}
    frames = bar.row("frames")
    assert (frames.completed, frames.total) == (7, 7)
    assert bar.history["frames"] == [0, 1, 2, 3, 4, 5, 6, 7]  # one move per frame


def _slow_frames(n: int, seconds: float) -> int:
    expect_steps(n)
    for _ in range(n):
        time.sleep(seconds)
        step()
    return n


def test_the_dask_path_moves_while_an_item_runs_and_settles_the_total(bar):
    """Two 3-second items on two workers: the row moves while they run (worker events,
    at most twice a second per item), not only when each ends, and ends at the steps done."""
    with dask_client(2) as client:
        tasks = [Task("a", _slow_frames, (12, 0.25)), Task("b", _slow_frames, (10, 0.3))]
        assert run_tasks(tasks, client, description="demo", steps="frames") == {"a": 12, "b": 10}
    frames = bar.row("frames")
    assert (frames.completed, frames.total) == (22, 22)
    moves = bar.history["frames"]
    assert len(moves) >= 6 and moves == sorted(moves)  # many moves, never backwards
    assert any(0 < m < 10 for m in moves)  # shown before either item was done


@pytest.fixture(scope="module")
def clip(tmp_path_factory, real_video):
    """The first 24 frames of the shared FF++ real video (1280x720)."""
    from dfpipe.pipeline.video.writing import ffmpeg_exe

    path = tmp_path_factory.mktemp("clip") / "real004.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(real_video), "-frames:v", str(N_FRAMES),
                    "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-an", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def reals(tmp_path_factory, clip, retinaface_weights):
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest

    root = tmp_path_factory.mktemp("reals")
    (root / "listing.csv").write_text(f"path,label\n{clip},real\n")
    ingest("list", root / "listing.csv", root / "DS")
    assert extract([root / "DS"], None, ExtractConfig(every=2, keep="main", size=128), progress=False).n_ok == 1
    return root / "DS"


def test_extract_moves_per_detector_batch_of_sampled_frames(bar, clip, tmp_path, retinaface_weights):
    from dfpipe.pipeline.faces import ExtractConfig, extract

    summary = extract([clip], tmp_path / "DS", ExtractConfig(every=2, size=96, batch_size=4), progress=False)
    assert summary.execution.startswith("serial")  # one video, default workers
    frames = bar.row("frames")
    assert frames.completed == frames.total == summary.counts["sampled frames"] == N_FRAMES // 2
    assert bar.history["frames"] == [0, 4, 8, 12]  # 3 batches of 4 frames, while the video ran


def test_synthesize_moves_per_composed_and_re_cut_frame(bar, reals, tmp_path):
    from dfpipe.pipeline.synth import SynthConfig, synthesize

    summary = synthesize(reals, tmp_path / "DS2", SynthConfig(method="self-blend", qualities=("c0",), per_video=4),
                         progress=False)
    assert summary.n_ok == 1
    frames = bar.row("frames")
    # every frame of the real video composed, then the target's sampled crops re-cut from the fake
    assert frames.completed == frames.total == N_FRAMES + summary.counts["faces"]
    assert bar.history["frames"] == list(range(frames.completed + 1))
