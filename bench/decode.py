"""Decode throughput of the PyAV and decord backends, every frame and every 10th frame.

Clips: the shared FF++ c23 video (1280x720, 309 frames) and a 1080p real-face clip made
with `render_clip` (astronaut + Grace Hopper, 150 frames, x264 CRF 23). Each repetition
runs every backend back to back (interleaved, so machine load hits them alike); the
figures are medians over repetitions, and the ratio is taken within each repetition.
Throughput counts *video* frames covered per second (so sampling shows its saving), and
peak RSS growth is measured during the pass. A second table times sparse sampling of a
30 s 720p clip with a keyframe every second (as phones write them): PyAV seeking over the
gaps, PyAV decoding through, and decord. `--nonref-only`: decoding through with the
unsampled non-reference frames dropped (dfpipe's default for H.264 / HEVC) vs every frame.

    .venv/bin/python bench/decode.py --repeats 5
    .venv/bin/python bench/decode.py --repeats 5 --nonref-only
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from dfpipe.media.faceclips import render_clip
from dfpipe.pipeline.video import decord_backend, pyav_backend
from dfpipe.pipeline.video.decode import Sampling, iter_frames, probe

SHARED_VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos" / "ffpp_real_004.mp4"

# name -> (backend, decord thread count); "decord-auto" shows why dfpipe pins one thread
BACKENDS = {"pyav": ("pyav", None), "decord": ("decord", 1), "decord-auto": ("decord", 0)}
# sparse sampling of a long clip with a keyframe every second: PyAV seeking over gaps,
# PyAV decoding through (seeking off), decord (which seeks by itself)
SPARSE = {"pyav (seeks)": ("pyav", None), "pyav (no seek)": ("pyav", 10**9), "decord": ("decord", None)}


def one_pass(path: Path, sampling: Sampling, name: str) -> tuple[float, int, int]:
    """Seconds, frames yielded and peak RSS growth (bytes) for one full pass."""
    backend, threads = BACKENDS[name]
    if threads is not None:
        decord_backend._DECORD_THREADS = threads
    process = psutil.Process()
    start_rss = peak = process.memory_info().rss
    start = time.perf_counter()
    n = 0
    for _ in iter_frames(path, sampling, backend):
        n += 1
        if n % 8 == 0:
            peak = max(peak, process.memory_info().rss)
    seconds = time.perf_counter() - start
    decord_backend._DECORD_THREADS = 1
    return seconds, n, max(peak, process.memory_info().rss) - start_rss


def sparse_pass(path: Path, sampling: Sampling, name: str) -> tuple[float, int]:
    backend, min_skip = SPARSE[name]
    saved = pyav_backend._SEEK_MIN_SKIP
    if min_skip is not None:
        pyav_backend._SEEK_MIN_SKIP = min_skip
    try:
        start = time.perf_counter()
        n = sum(1 for _ in iter_frames(path, sampling, backend))
        return time.perf_counter() - start, n
    finally:
        pyav_backend._SEEK_MIN_SKIP = saved


def sparse_table(path: Path, repeats: int) -> None:
    info = probe(path)
    print(f"\nSparse sampling, {info.width}x{info.height}, {info.n_frames} frames, keyframe every second")
    print("| sampling | method | seconds per pass | vs pyav (no seek) | frames out |")
    print("|---|---|---|---|---|")
    for label, sampling in {"count=16": Sampling(count=16), "fps=0.5": Sampling(fps=0.5)}.items():
        times: dict[str, list[float]] = {m: [] for m in SPARSE}
        ratios: dict[str, list[float]] = {m: [] for m in SPARSE}
        outs: dict[str, int] = {}
        for _ in range(repeats):
            run = {}
            for name in SPARSE:
                run[name], outs[name] = sparse_pass(path, sampling, name)
                times[name].append(run[name])
            for name in SPARSE:
                ratios[name].append(run["pyav (no seek)"] / run[name])  # > 1: faster
        for name in SPARSE:
            print(
                f"| {label} | {name} | {statistics.median(times[name]):.2f} | "
                f"{statistics.median(ratios[name]):.2f}x | {outs[name]} |",
                flush=True,
            )


def nonref_pass(path: Path, sampling: Sampling, skip: bool) -> tuple[float, int]:
    saved = pyav_backend._NONREF_CODECS
    if not skip:
        pyav_backend._NONREF_CODECS = set()
    try:
        start = time.perf_counter()
        n = sum(1 for _ in iter_frames(path, sampling, "pyav"))
        return time.perf_counter() - start, n
    finally:
        pyav_backend._NONREF_CODECS = saved


def nonref_table(clips: dict[str, Path], repeats: int) -> None:
    """PyAV decoding through with the unsampled non-reference frames dropped undecoded
    (dfpipe's default for H.264 / HEVC) vs decoding every frame, interleaved."""
    print("\nDropping unsampled non-reference frames (PyAV, decoding through)")
    print("| clip | sampling | decodes all | skips non-ref (dfpipe) | speed-up | frames out |")
    print("|---|---|---|---|---|---|")
    samplings = {"every 5th": Sampling(every=5), "every 10th": Sampling(every=10), "fps=5": Sampling(fps=5.0)}
    for clip_name, path in clips.items():
        for label, sampling in samplings.items():
            times: dict[bool, list[float]] = {False: [], True: []}
            ratios, outs = [], {}
            for _ in range(repeats):
                for skip in (False, True):
                    seconds, outs[skip] = nonref_pass(path, sampling, skip)
                    times[skip].append(seconds)
                ratios.append(times[False][-1] / times[True][-1])
            assert outs[False] == outs[True]
            print(f"| {clip_name} | {label} | {statistics.median(times[False]):.2f} s | "
                  f"{statistics.median(times[True]):.2f} s | {statistics.median(ratios):.2f}x | {outs[True]} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames-1080p", type=int, default=150)
    parser.add_argument("--sparse-only", action="store_true", help="only the sparse-sampling table")
    parser.add_argument("--nonref-only", action="store_true", help="only the non-reference frame skipping table")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.nonref_only:
            clip = render_clip(
                Path(tmp) / "faces_1080p.mp4", n_frames=args.frames_1080p, width=1920, height=1080,
                faces=("astronaut", "grace_hopper"), preset="veryfast",
            )  # fmt: skip
            nonref_table({"720p FF++ (309 fr)": SHARED_VIDEO, f"1080p faces ({args.frames_1080p} fr)": clip}, args.repeats)
            return
        long_clip = render_clip(
            Path(tmp) / "long_gop25.mp4", n_frames=750, width=1280, height=720,
            faces=("astronaut", "grace_hopper"), preset="ultrafast", gop=25,
        )  # fmt: skip
        sparse_table(long_clip, args.repeats)
        if args.sparse_only:
            return
        print()
        clip = render_clip(
            Path(tmp) / "faces_1080p.mp4", n_frames=args.frames_1080p, width=1920, height=1080,
            faces=("astronaut", "grace_hopper"), preset="veryfast",
        )  # fmt: skip
        clips = {"720p FF++ (309 fr)": SHARED_VIDEO, f"1080p faces ({args.frames_1080p} fr)": clip}
        samplings = {"every frame": Sampling(), "every 10th": Sampling(every=10)}
        print("| clip | sampling | backend | video frames/s | vs pyav | frames out | peak RSS growth |")
        print("|---|---|---|---|---|---|---|")
        for clip_name, path in clips.items():
            n_video = probe(path).n_frames
            for sampling_name, sampling in samplings.items():
                times: dict[str, list[float]] = {b: [] for b in BACKENDS}
                ratios: dict[str, list[float]] = {b: [] for b in BACKENDS}
                rss: dict[str, int] = {b: 0 for b in BACKENDS}
                outs: dict[str, int] = {}
                for _ in range(args.repeats):
                    run = {}
                    for name in BACKENDS:
                        seconds, n_out, grew = one_pass(path, sampling, name)
                        run[name] = seconds
                        outs[name] = n_out
                        rss[name] = max(rss[name], grew)
                        times[name].append(seconds)
                    for name in BACKENDS:
                        ratios[name].append(run["pyav"] / run[name])  # > 1: faster than pyav
                for name in BACKENDS:
                    fps = n_video / statistics.median(times[name])
                    print(
                        f"| {clip_name} | {sampling_name} | {name} | {fps:.1f} | "
                        f"{statistics.median(ratios[name]):.2f}x | {outs[name]} | {rss[name] / 2**20:.0f} MiB |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
