"""bench/gpu_check.sh, the one-shot GPU figures: its dry run lists every check and passes,
and on a machine without CUDA every check SKIPs with its reason and the run exits 0 (CI has
no GPU, so this is what CI can hold it to). A short --cpu-smoke runs the CUDA code path of
the extract check on the CPU."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"

#: the checks docs/benchmarks.md expects figures from (not imported: bench/gpu_check.py
#: forces offline settings into the process that imports it)
NAMES = ("retinaface", "facemesh", "extract", "m2tr", "mat", "dovenet", "torchrun")


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # no GPU, whatever the machine: CUDA_VISIBLE_DEVICES="" hides every device from torch
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "DFPIPE_OFFLINE": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_dry_run_lists_every_check_and_finds_what_it_needs():
    proc = _run("--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.startswith("machine: ") and "torch " in out and "CPUs" in out
    for name in NAMES:
        assert f"PLAN {name}" in out, name
    assert "MISSING" not in out and "dry run: ok" in out


def test_without_cuda_every_check_skips_with_its_reason():
    proc = _run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in NAMES:
        assert f"SKIP {name}: no CUDA device: " in proc.stdout, name
    assert not [line for line in proc.stdout.splitlines() if line.startswith("FAIL ")]
    assert "7 of 7 without FAIL" in proc.stdout


def test_only_picks_checks_and_refuses_unknown_names():
    proc = _run("--only", "mat,torchrun")
    assert proc.returncode == 0
    assert "SKIP mat:" in proc.stdout and "SKIP torchrun:" in proc.stdout and "SKIP m2tr:" not in proc.stdout
    bad = _run("--only", "xception")
    assert bad.returncode == 2 and "unknown check" in bad.stderr


@pytest.mark.shared
def test_cpu_smoke_extract_runs_the_cuda_path_on_the_cpu():
    from conftest import need_weights

    need_weights("retinaface_mobilenet0.25")
    need_weights("facemesh")
    proc = _run("--cpu-smoke", "--only", "extract")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS extract:" in proc.stdout and "max box difference 0.000 px" in proc.stdout
