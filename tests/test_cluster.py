"""The stages on an existing Dask cluster, really: `dask scheduler` and two `dask worker`
processes on 127.0.0.1, driven through the installed `dfpipe ... --scheduler ADDRESS`.

- extract, synthesize, masks, score-quality and perturb on the cluster give what a local
  run gives;
- a worker killed with SIGKILL part-way: the run finishes on the other one (Dask moves the
  item), every video once, nothing left half-written;
- the scheduler killed part-way: a clear error, exit 1, and the same command, once a
  scheduler is back at the same address, resumes and ends where a local run ends.

Every process listens on loopback only, the workers exit by themselves 30 s after losing
their scheduler (--death-timeout), the scheduler after 10 idle minutes, and the fixtures
kill them all at the end.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfpipe.manifests.parts import list_parts, read_table

pytestmark = pytest.mark.slow

DFPIPE = [sys.executable, "-m", "dfpipe"]
DASK = [sys.executable, "-m", "dask"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackCluster:
    """A scheduler and `n` single-threaded workers (no nanny: a killed worker stays dead,
    so its work must move), as separate processes on 127.0.0.1."""

    def __init__(self, workdir: Path, n_workers: int = 2, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        workdir.mkdir(parents=True, exist_ok=True)
        self.scheduler = self._spawn("scheduler", [*DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                                   "--no-dashboard", "--idle-timeout", "600"])
        self.workers = [self._spawn(f"worker{i}", [*DASK, "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
                                                   "--nworkers", "1", "--no-nanny", "--no-dashboard",
                                                   "--death-timeout", "30", "--name", f"w{i}"])
                        for i in range(n_workers)]
        self.wait_for_workers(n_workers)

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}-{self.port}.log", "w")
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with Client(self.address, timeout="5s") as client:
                    client.wait_for_workers(n, timeout=max(1.0, deadline - time.monotonic()))
                    return
            except (OSError, TimeoutError):
                time.sleep(0.5)
        raise RuntimeError(f"the loopback cluster did not start: see {self.workdir}")

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def dfpipe(*args, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([*DFPIPE, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "100"})
    if check:
        assert proc.returncode == 0, f"dfpipe {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc


def summary_value(output: str, label: str) -> str:
    """The value beside `label` in a stage's end-of-run table."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no {label!r} in:\n{output}")


def decoded(blob: bytes | None) -> np.ndarray | None:
    from PIL import Image

    return None if blob is None else np.asarray(Image.open(io.BytesIO(blob)))


def assert_same_table(ours: Path, theirs: Path, table: str, key: str) -> int:
    """`table` of two dataset directories holds the same rows: floats to 1e-3 (a worker's
    torch runs one thread, the serial path two: sums in another order), landmarks and meshes
    (pixels) to a tenth of a pixel (on fakes, those sums move a synthesized pixel by a grey
    level here and there, and the mesh found on it by up to 0.05 px), other arrays to 1e-2,
    images to a mean absolute difference under 0.5 grey level, everything else exactly.
    Returns the rows."""
    a = read_table(ours, table).to_pandas().sort_values(key).reset_index(drop=True)
    b = read_table(theirs, table).to_pandas().sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 0 and a[key].is_unique and list(a[key]) == list(b[key]), table
    for col in a.columns:
        if col in ("meta", "path", "seconds") or col.endswith("_seconds"):
            continue
        x, y = a[col], b[col]
        if x.map(lambda v: isinstance(v, bytes)).any():
            for va, vb in zip(x, y):
                ia, ib = decoded(va), decoded(vb)
                assert (ia is None) == (ib is None), (table, col)
                if ia is not None:
                    assert ia.shape == ib.shape and np.abs(ia.astype(int) - ib.astype(int)).mean() < 0.5, (table, col)
        elif pd.api.types.is_float_dtype(x):
            np.testing.assert_allclose(x.to_numpy(float), y.to_numpy(float), rtol=1e-3, atol=1e-3, equal_nan=True,
                                       err_msg=f"{table}.{col}")
        elif x.map(lambda v: isinstance(v, np.ndarray)).any():
            for va, vb in zip(x, y):
                if va is None or vb is None:
                    assert va is None and vb is None, (table, col)
                else:
                    np.testing.assert_allclose(np.asarray(va, float), np.asarray(vb, float), rtol=1e-3,
                                               atol=0.1 if col in ("landmarks", "mesh") else 1e-2,
                                               err_msg=f"{table}.{col}")
        else:
            assert x.fillna("<na>").astype(str).tolist() == y.fillna("<na>").astype(str).tolist(), f"{table}.{col}"
    return len(a)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A curator's folder of four real-face clips (public-domain photos, camera motion)."""
    from dfpipe.media.faceclips import render_clip

    root = tmp_path_factory.mktemp("clusterclips") / "folder"
    faces = [("astronaut",), ("grace_hopper",), ("astronaut", "grace_hopper"), ("grace_hopper", "astronaut")]
    for i, who in enumerate(faces):
        render_clip(root / "real" / f"clip{i}.mp4", n_frames=40, width=480, height=270, faces=who, pan=0.2 + 0.1 * i)
    return root


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.close()


def run_chain(work: Path, clips: Path, *where: str) -> None:
    """The curator's chain: ingest, extract, self-blend fakes, merge, masks, quality, perturb."""
    work.mkdir(parents=True, exist_ok=True)
    dfpipe("ingest", "folders", clips, "--out", "ds", cwd=work)
    dfpipe("extract", "ds", "--every", "5", "--size", "160", "--no-progress", *where, cwd=work)
    dfpipe("synthesize", "ds", "--out", "fakes", "--method", "self-blend", "--no-progress", *where, cwd=work)
    dfpipe("merge", "ds", "fakes", "--out", "all", cwd=work)
    dfpipe("masks", "all", "--no-progress", *where, cwd=work)
    dfpipe("score-quality", "all", "--metrics", "mask_ssim,ewarp,identity", "--no-progress", *where, cwd=work)
    dfpipe("perturb", "all", "--out", "perturbed", "--kinds", "GB:3,BW:2+GNC:1", "--no-progress", *where, cwd=work)


def test_stages_on_a_cluster_equal_a_local_run(cluster, clips, tmp_path):
    run_chain(tmp_path / "local", clips, "--workers", "0")
    run_chain(tmp_path / "cluster", clips, "--scheduler", cluster.address)
    local, remote = tmp_path / "local", tmp_path / "cluster"
    run = json.loads((remote / "ds" / "run.json").read_text())
    assert run["stages"]["extract"]["execution"]["mode"] == "scheduler"
    assert assert_same_table(local / "ds", remote / "ds", "videos", "video_id") == 4
    assert assert_same_table(local / "ds", remote / "ds", "faces", "face_id") >= 40
    assert assert_same_table(local / "fakes", remote / "fakes", "videos", "video_id") == 8  # 4 fakes, their 4 reals
    assert assert_same_table(local / "fakes", remote / "fakes", "faces", "face_id") >= 30
    assert assert_same_table(local / "all", remote / "all", "masks", "video_id") == 4
    assert assert_same_table(local / "all", remote / "all", "faces", "face_id") >= 80  # with their masks
    assert assert_same_table(local / "all" / "quality", remote / "all" / "quality", "videos", "video_id") == 8
    assert assert_same_table(local / "all" / "quality", remote / "all" / "quality", "frames", "face_id") >= 40
    # seeded by each copy's id: the random blocks and noise land alike wherever it runs
    assert assert_same_table(local / "perturbed", remote / "perturbed", "faces", "face_id") == 3 * 80
    assert dfpipe("validate", "all", cwd=remote).returncode == 0


def extract_rows(ds: Path) -> pd.DataFrame:
    return read_table(ds, "faces", columns=["face_id", "video_id", "x1", "y1", "x2", "y2"]).to_pandas()


def n_extracted(ds: Path) -> int:
    """Videos whose extract finished (their row went from pending to ok)."""
    return int((read_table(ds, "videos", columns=["status"]).column("status").to_numpy(zero_copy_only=False) == "ok").sum())


def wait_for_extracted(ds: Path, at_least: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        n = n_extracted(ds)
        if n >= at_least:
            return n
        time.sleep(0.05)
    raise AssertionError(f"{at_least} video(s) never extracted (run exited {proc.poll()})")


@pytest.fixture(scope="module")
def local_extract(clips, tmp_path_factory) -> Path:
    """The reference: the same every-frame extract, serial, on this machine."""
    work = tmp_path_factory.mktemp("localextract")
    dfpipe("ingest", "folders", clips, "--out", "ds", cwd=work)
    dfpipe("extract", "ds", "--every", "1", "--size", "128", "--no-progress", "--workers", "0", cwd=work)
    return work / "ds"


def test_a_worker_killed_part_way_loses_nothing(clips, local_extract, tmp_path):
    cluster = LoopbackCluster(tmp_path / "cluster")
    try:
        dfpipe("ingest", "folders", clips, "--out", "ds", cwd=tmp_path)
        run = subprocess.Popen([*DFPIPE, "extract", "ds", "--every", "1", "--size", "128", "--no-progress",
                                "--scheduler", cluster.address], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        done_before = wait_for_extracted(tmp_path / "ds", 1, run)
        cluster.kill(cluster.workers[0])
        output, _ = run.communicate(timeout=600)
        assert run.returncode == 0, output
        assert done_before < 4, "the kill came after the run"
        assert "Traceback" not in output and summary_value(output, "videos ok") == "4", output
        assert cluster.workers[1].poll() is None
    finally:
        cluster.close()
    ds = tmp_path / "ds"
    videos = read_table(ds, "videos").to_pandas()
    assert (videos.status == "ok").all() and len(videos) == 4
    assert len(list_parts(ds, "faces")) == 4 and not list((ds / "faces").glob(".tmp-*"))
    assert extract_rows(ds).face_id.is_unique
    assert assert_same_table(local_extract, ds, "faces", "face_id") > 100
    assert dfpipe("validate", "ds", cwd=tmp_path).returncode == 0


def test_a_lost_scheduler_stops_clearly_and_the_same_command_resumes(clips, local_extract, tmp_path):
    cluster = LoopbackCluster(tmp_path / "cluster")
    command = [*DFPIPE, "extract", "ds", "--every", "1", "--size", "128", "--no-progress", "--scheduler", cluster.address]
    try:
        dfpipe("ingest", "folders", clips, "--out", "ds", cwd=tmp_path)
        run = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for_extracted(tmp_path / "ds", 1, run)
        cluster.kill(cluster.scheduler)
        output, _ = run.communicate(timeout=120)
    finally:
        cluster.close()
    assert run.returncode == 1, output
    assert "Traceback" not in output, output
    assert "lost the connection to the Dask scheduler at" in output and "re-run the same command" in output, output
    done = n_extracted(tmp_path / "ds")
    assert 1 <= done < 4, output

    again = LoopbackCluster(tmp_path / "cluster2", port=cluster.port)  # back at the same address
    try:
        proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    finally:
        again.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary_value(proc.stdout, "already done (skipped)") == str(done), proc.stdout
    assert summary_value(proc.stdout, "videos ok") == "4", proc.stdout
    assert assert_same_table(local_extract, tmp_path / "ds", "faces", "face_id") > 100


def test_an_unreachable_scheduler_is_a_bad_argument(clips, tmp_path):
    dfpipe("ingest", "folders", clips, "--out", "ds", cwd=tmp_path)
    proc = dfpipe("extract", "ds", "--scheduler", f"tcp://127.0.0.1:{free_port()}", "--no-progress", cwd=tmp_path,
                  check=False, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in proc.stderr and "Traceback" not in proc.stderr
    assert not list_parts(tmp_path / "ds", "faces")
