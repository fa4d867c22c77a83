"""A small run as a user waits for it: `dfpipe extract` on one short clip, left to choose
(serial, no Dask: `parallel.choose_execution`) against forced `--workers 2` (a LocalCluster
started and stopped inside the command). Rounds alternate the two; the ratio is forced over
automatic, median of the rounds' ratios.

    .venv/bin/python bench/small_run.py [--repeats 3] [--every 5 | --every 0] [--video PATH]
    .venv/bin/python bench/small_run.py --video ../shared/data/faces   # a folder of 11 photos

A folder of a few photos is serial too: the stage's estimate of its work is under
`parallel.SMALL_RUN_SECONDS`.

Figures go to docs/benchmarks.md (issue 14).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFPIPE_SHARED", REPO.parent / "shared"))
os.environ.setdefault("DFPIPE_WEIGHTS_DIR", os.pathsep.join([str(SHARED / "weights"), str(SHARED / "data" / "facemesh")]))
os.environ.setdefault("DFPIPE_OFFLINE", "1")


def timed_extract(video: Path, out: Path, every: int, extra: list[str]) -> tuple[float, str]:
    """Seconds of one whole `dfpipe extract` command and how its run.json says it ran."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "dfpipe", "extract", str(video), "--out", str(out), *_sampling(every), "--no-progress",
           *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    execution = json.loads((out / "run.json").read_text())["stages"]["extract"]["execution"]
    return seconds, execution["mode"]


def _sampling(every: int) -> list[str]:
    return ["--every", str(every)] if every else ["--count", "1"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=int, default=5, help="sampling; 0 = one frame (--count 1): start-up alone")
    parser.add_argument("--video", type=Path, help="a clip, or a folder of photos", default=SHARED / "data" / "videos" / "ffpp_real_004.mp4")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"auto": [], "workers2": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for label, extra in (("auto", []), ("workers2", ["--workers", "2"])):
                seconds, mode = timed_extract(args.video, Path(tmp) / label, args.every, extra)
                assert mode == ("serial" if label == "auto" else "local"), (label, mode)
                runs[label].append(seconds)
    ratios = [w / a for a, w in zip(runs["auto"], runs["workers2"])]
    print(f"dfpipe extract {args.video.name} {' '.join(_sampling(args.every))}: automatic (serial) "
          f"{statistics.median(runs['auto']):.1f}s, --workers 2 {statistics.median(runs['workers2']):.1f}s, "
          f"ratio {statistics.median(ratios):.2f} median of rounds {' '.join(f'{r:.2f}' for r in ratios)}; "
          f"runs: automatic {' '.join(f'{t:.1f}' for t in runs['auto'])}, "
          f"--workers 2 {' '.join(f'{t:.1f}' for t in runs['workers2'])}")


if __name__ == "__main__":
    main()
