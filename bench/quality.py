"""Quality metrics benchmark: Mask-SSIM vs scikit-image, Ewarp throughput, the whole
`score-quality` on the shared FF++ pair.

    .venv/bin/python bench/quality.py [--repeats 5] [--frames 20] [--skip-pipeline] [--skip-720p]

Speed comparisons are ratios measured in the same run, medians over `--repeats`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from dfpipe.pipeline.quality.ewarp import DIS_PRESETS, FlowEstimator, ewarp_pair
from dfpipe.pipeline.quality.ssim import mask_ssim
from dfpipe.pipeline.video.decode import iter_frames

SHARED = Path(os.environ.get("DFPIPE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REAL = SHARED / "data" / "videos" / "ffpp_real_004.mp4"
FAKE = SHARED / "data" / "videos" / "ffpp_fake_NeuralTextures_004_982.mp4"
SK = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1, data_range=255)


def _timed(fn, repeats: int, clock=time.perf_counter) -> float:
    """Median seconds of `fn()`; `clock=time.process_time` gives this process's CPU time,
    which a machine shared with other jobs inflates much less than wall time."""
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def skimage_mask_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    m = mask > 127
    masked = structural_similarity(a * m[..., None], b * m[..., None], **SK)
    _, smap = structural_similarity(a, b, full=True, **SK)
    return masked, float(smap.mean(axis=-1)[m].mean())


def bench_mask_ssim(n_frames: int, repeats: int) -> None:
    real = [f.image[200:520, 480:800] for f in islice(iter_frames(REAL), n_frames)]  # 320 x 320 face region
    fake = [f.image[200:520, 480:800] for f in islice(iter_frames(FAKE), n_frames)]
    mask = np.zeros((320, 320), np.uint8)
    cv2.ellipse(mask, (160, 230), (90, 60), 0, 0, 360, 255, -1)  # lower face
    ours = [mask_ssim(f, r, mask) for f, r in zip(fake, real)]
    ref = [skimage_mask_ssim(f, r, mask) for f, r in zip(fake, real)]
    diff = np.abs(np.array(ours) - np.array(ref)).max()
    # interleaved, so a busy machine slows both sides alike; median of per-repeat ratios
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t_ours.append(_timed(lambda: [mask_ssim(f, r, mask) for f, r in zip(fake, real)], 1))
        t_ref.append(_timed(lambda: [skimage_mask_ssim(f, r, mask) for f, r in zip(fake, real)], 1))
    ratio = statistics.median(r / o for o, r in zip(t_ours, t_ref))
    print(f"Mask-SSIM (both variants, lower-face mask) on {n_frames} real/fake 320x320 crops, median of {repeats}:")
    print(f"  dfpipe       {n_frames / statistics.median(t_ours):8.1f} frames/s")
    print(f"  scikit-image {n_frames / statistics.median(t_ref):8.1f} frames/s")
    print(f"  speed-up     {ratio:8.2f}x   max |difference| {diff:.2e}")


def bench_ewarp(n_frames: int, repeats: int, full_hd: bool = True) -> None:
    frames = [f.image for f in islice(iter_frames(REAL), n_frames + 1)]
    sizes = (("256x256", (256, 256)), ("1280x720", None)) if full_hd else (("256x256", (256, 256)),)
    for label, size in sizes:
        clip = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if size else f for f in frames]
        for preset in DIS_PRESETS:
            flow = FlowEstimator(preset)
            run = lambda: [ewarp_pair(clip[i], clip[i + 1], flow) for i in range(n_frames)]  # noqa: E731
            wall = _timed(run, repeats)
            cpu = _timed(run, repeats, time.process_time)
            print(
                f"Ewarp {label:>9} DIS {preset:<9} {n_frames / wall:8.1f} frame pairs/s wall, "
                f"{n_frames / cpu:8.1f} per CPU-second (flow both ways + occlusion + warp)"
            )


def bench_pipeline() -> None:
    from typer.testing import CliRunner

    from dfpipe.cli.main import app

    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.json"
        listing.write_text(json.dumps([
            {"path": str(REAL), "label": "real", "dataset": "ff++", "compression": "c23"},
            {"path": str(FAKE), "label": "fake", "source": str(REAL), "method": "NeuralTextures", "dataset": "ff++",
             "compression": "c23"},
        ]))
        ds = Path(tmp) / "ds"
        steps = [
            ("ingest", ["ingest", "list", str(listing), "--out", str(ds)]),
            ("extract --count 16", ["extract", str(ds), "--count", "16", "--workers", "0"]),
            ("masks", ["masks", str(ds), "--workers", "0"]),
            ("score-quality --metrics mask_ssim,ewarp", ["score-quality", str(ds), "--metrics", "mask_ssim,ewarp",
                                                          "--workers", "0", "--report", str(ds / "quality.html")]),
        ]
        print("Whole pipeline on the shared pair (2 videos, 1280x720, 309 frames, 16 sampled faces each):")
        for name, args in steps:
            t = time.perf_counter()
            result = runner.invoke(app, args)
            if result.exit_code != 0:
                raise SystemExit(f"{name} failed:\n{result.output}")
            print(f"  {name:<42} {time.perf_counter() - t:7.1f} s")
        import pandas as pd

        videos = pd.read_parquet(ds / "quality" / "videos")
        print(videos[["label", "method", "mask_ssim", "mask_ssim_inside", "ssim", "ewarp"]].to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-720p", action="store_true", help="Ewarp at 256x256 only")
    args = parser.parse_args()
    print(f"cv2 threads {cv2.getNumThreads()}, cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    bench_mask_ssim(args.frames, args.repeats)
    bench_ewarp(args.frames, args.repeats, full_hd=not args.skip_720p)
    if not args.skip_pipeline:
        bench_pipeline()


if __name__ == "__main__":
    main()
