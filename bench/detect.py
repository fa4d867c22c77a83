"""Face-detector throughput on real 720p video frames.

Compares, in one run, RetinaFace mobilenet0.25 at `max_side` 640 vs full size, batch 1 vs 8,
and 1 vs 2 torch threads. Frames are decoded once beforehand, so the figures are detection
only (resize + network + decoding + NMS). The configurations are interleaved inside each
repetition and the median over repetitions is reported, because the machine is shared.

    .venv/bin/python bench/detect.py [--frames 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
os.environ.setdefault("DFPIPE_WEIGHTS_DIR", os.pathsep.join([str(SHARED / "weights"), str(SHARED / "data" / "facemesh")]))
os.environ.setdefault("DFPIPE_OFFLINE", "1")

from dfpipe.pipeline.faces.detect import FaceDetector  # noqa: E402  (after the weights dir is set)


def read_frames(path: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise SystemExit(f"could not read frames from {path}")
    return frames


def frames_per_second(detector: FaceDetector, frames: list[np.ndarray]) -> float:
    start = time.perf_counter()
    results = detector.detect(frames)
    elapsed = time.perf_counter() - start
    assert all(len(r) >= 1 for r in results), "the presenter's face was missed"
    return len(frames) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=SHARED / "data" / "videos" / "ffpp_real_004.mp4")
    parser.add_argument("--frames", type=int, default=16, help="frames per timing (a multiple of 8)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    frames = read_frames(args.video, args.frames)
    h, w = frames[0].shape[:2]
    print(f"{len(frames)} frames of {args.video.name} ({w}x{h}), torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, median of {args.repeats} repetitions, "
          f"load average before {os.getloadavg()[0]:.1f}\n")

    configs = list(itertools.product((640, None), (1, 8), (1, 2)))  # max_side, batch, threads
    detectors = {(m, b): FaceDetector(max_side=m, batch_size=b) for m, b, _ in configs}
    timings: dict[tuple, list[float]] = {c: [] for c in configs}
    for c in configs:  # warm-up: allocator, prior cache, thread pools
        torch.set_num_threads(c[2])
        frames_per_second(detectors[c[:2]], frames[: c[1]])
    for _ in range(args.repeats):
        for c in configs:
            torch.set_num_threads(c[2])
            cv2.setNumThreads(c[2])
            timings[c].append(frames_per_second(detectors[c[:2]], frames))

    fps = {c: statistics.median(v) for c, v in timings.items()}
    print(f"load average after {os.getloadavg()[0]:.1f} (other work on the machine skews threaded figures)")
    print(f"{'max_side':>9} {'batch':>5} {'threads':>7} {'frames/s':>9} {'ms/frame':>9}")
    for (m, b, t), v in fps.items():
        print(f"{str(m or 'full'):>9} {b:>5} {t:>7} {v:>9.1f} {1000 / v:>9.1f}")
    print("\nratios (same run):")
    for t in (1, 2):
        print(f"  {t} thread(s): 640 vs full, batch 8: x{fps[(640, 8, t)] / fps[(None, 8, t)]:.2f}")
    for m in (640, None):
        for t in (1, 2):
            print(f"  max_side {m or 'full'}, {t} thread(s): batch 8 vs 1: x{fps[(m, 8, t)] / fps[(m, 1, t)]:.2f}")
        for b in (1, 8):
            print(f"  max_side {m or 'full'}, batch {b}: 2 vs 1 threads: x{fps[(m, b, 2)] / fps[(m, b, 1)]:.2f}")


if __name__ == "__main__":
    main()
