"""Extract benchmark: (a) decode, (b) detector, (c) full extract on 720p and 1080p;
(d) 2 workers vs 1 on several videos, (w) the same as whole commands, (i) an idle
cluster's housekeeping CPU; (e) peak memory per worker vs video length; (p) PNG strategies;
(m) full extract with the face mesh against --mesh none, and the crop jitter of the
`align` and `mesh` crops along tracks.

    .venv/bin/python bench/extract.py [--repeats 3] [--skip-long]

Prints a table per part; figures go to docs/benchmarks.md. Targets (issue 2):
(c) <= 1.3 x (a + b); (d) speed-up >= 1.7; (e) flat in video length, < 2 GiB for a
10-minute 1080p video; (m, issue 12) the mesh adds <= 25 %. Everything is measured in this
one run, median of --repeats.
"""

from __future__ import annotations

import argparse
import contextlib
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


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_videos(work: Path, skip_long: bool) -> dict[str, Path]:
    from dfpipe.media.faceclips import render_clip
    from dfpipe.pipeline.video.writing import run_ffmpeg

    vids = {"720p": SHARED / "data" / "videos" / "ffpp_real_004.mp4"}
    vids["1080p"] = render_clip(work / "faces_1080p.mp4", n_frames=250, width=1920, height=1080,
                                faces=("astronaut", "grace_hopper"), pan=0.4)
    if not skip_long:
        one_min = render_clip(work / "faces_1080p_1min.mp4", n_frames=1500, width=1920, height=1080,
                              faces=("astronaut",), preset="ultrafast")
        vids["1080p_1min"] = one_min
        vids["1080p_10min"] = work / "faces_1080p_10min.mp4"
        run_ffmpeg(["-y", "-loglevel", "error", "-stream_loop", "9", "-i", str(one_min), "-c", "copy", str(vids["1080p_10min"])])
    return vids


def part_abc(videos: dict[str, Path], every: int, repeats: int) -> list[dict]:
    """Decode alone, detector alone, full extract; one process, 2 torch threads."""
    import torch

    from dfpipe.manifests.ids import video_content_id
    from dfpipe.pipeline.faces import ExtractConfig, VideoJob, extract_video
    from dfpipe.pipeline.faces.detect import load_detector
    from dfpipe.pipeline.video.decode import Sampling, iter_frames

    torch.set_num_threads(2)
    config = ExtractConfig(every=every)
    detector = load_detector(config.detector, None, "cpu", config.max_side, config.score_threshold,
                             config.nms_threshold, config.batch_size)
    rows = []
    for name in ("720p", "1080p"):
        path = videos[name]
        sampling = Sampling(every=every)
        frames = [f.image for f in iter_frames(path, sampling)]

        def decode():
            sum(1 for _ in iter_frames(path, sampling))

        def detect_all():
            for i in range(0, len(frames), config.batch_size):
                detector.detect(frames[i : i + config.batch_size])

        def full():
            with tempfile.TemporaryDirectory() as out:
                extract_video(VideoJob(path, video_content_id(path)), config, out)

        decode_all_rgb = _median_time(lambda: sum(1 for _ in iter_frames(path, Sampling())), 1)
        full()  # warm-up: first-call costs are not what the ratio is about
        # rounds of (a), (b), (c) back to back: each round's ratio sees the same machine state
        rounds = [{k: _median_time(fn, 1) for k, fn in (("a", decode), ("b", detect_all), ("c", full))}
                  for _ in range(repeats)]
        ratios = [r["c"] / (r["a"] + r["b"]) for r in rounds]
        med = {k: statistics.median(r[k] for r in rounds) for k in "abc"}
        rows.append({"video": name, "frames_sampled": len(frames), "a_decode_s": med["a"],
                     "a_decode_all_rgb_s": decode_all_rgb, "b_detect_s": med["b"], "c_extract_s": med["c"],
                     "c_over_a_plus_b": statistics.median(ratios), "round_ratios": ratios})
    return rows


def four_videos(videos: dict[str, Path], work: Path) -> Path:
    """A folder of 4 copies of the 720p video, distinct files (distinct content ids)."""
    from dfpipe.pipeline.video.writing import run_ffmpeg

    inputs = work / "four"
    inputs.mkdir(exist_ok=True)
    for i in range(4):
        dst = inputs / f"v{i}.mp4"
        if not dst.exists():
            run_ffmpeg(["-y", "-loglevel", "error", "-i", str(videos["720p"]), "-c", "copy",
                        "-metadata", f"comment=copy{i}", str(dst)])
    return inputs


def part_d(videos: dict[str, Path], every: int, work: Path, repeats: int) -> dict:
    """Wall time of a 4-video run on a LocalCluster of 1 and of 2 workers (cluster start
    excluded), in back-to-back rounds; the speed-up is the median of the rounds' ratios."""
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.runtime.parallel import dask_client

    inputs = four_videos(videos, work)
    config = ExtractConfig(every=every)

    def timed(workers: int) -> float:
        out = work / f"d_{workers}"
        shutil.rmtree(out, ignore_errors=True)
        with dask_client(workers) as client:
            client.run(lambda: __import__("dfpipe.pipeline.faces.detect"))  # warm imports, not timed
            t0 = time.perf_counter()
            _extract_with_client(extract, [inputs], out, config, client)
            return time.perf_counter() - t0

    return _worker_rounds(timed, repeats)


def _worker_rounds(timed, repeats: int) -> dict:
    """Rounds of `timed(1)` then `timed(2)` (seconds of a 1- and a 2-worker run): one
    speed-up per round, the median of those is the result."""
    runs: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for workers in (1, 2):
            runs[workers].append(timed(workers))
    ratios = [a / b for a, b in zip(runs[1], runs[2])]
    result = {f"{w}_worker_s": statistics.median(runs[w]) for w in (1, 2)}
    result.update({f"{w}_worker_runs": runs[w] for w in (1, 2)}, round_ratios=ratios)
    result["speedup"] = statistics.median(ratios)
    return result


def _speedup_line(label: str, r: dict) -> str:
    return (f"{label}: 1 worker {r['1_worker_s']:.1f}s, 2 workers {r['2_worker_s']:.1f}s, "
            f"speed-up {r['speedup']:.2f} median of rounds {' '.join(f'{x:.2f}' for x in r['round_ratios'])}; runs: "
            f"1 worker {' '.join(f'{t:.1f}' for t in r['1_worker_runs'])}, "
            f"2 workers {' '.join(f'{t:.1f}' for t in r['2_worker_runs'])}")


def part_w(videos: dict[str, Path], every: int, work: Path, repeats: int) -> dict:
    """The whole `dfpipe extract` command on the same 4 videos with --workers 1 and 2:
    what a user waits for, cluster start-up, worker imports and shut-down included."""
    inputs = four_videos(videos, work)
    cli = [sys.executable, "-m", "dfpipe", "extract", str(inputs), "--every", str(every), "--no-progress"]

    def timed(workers: int) -> float:
        out = work / f"w_{workers}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([*cli, "--out", str(out), "--workers", str(workers)], check=True, capture_output=True)
        return time.perf_counter() - t0

    return _worker_rounds(timed, repeats)


def part_i(seconds: float, repeats: int) -> list[dict]:
    """CPU an idle 2-worker LocalCluster spends on housekeeping (scheduler, nannies and
    client in this process, plus the two workers): Dask's defaults vs dfpipe's settings.
    On 2 busy cores, that CPU comes out of the workers' video time."""
    import psutil
    from distributed import Client, LocalCluster

    from dfpipe.runtime.parallel import dask_client

    def cpu_seconds() -> float:
        procs = [psutil.Process()] + psutil.Process().children(recursive=True)
        return sum(sum(p.cpu_times()[:4]) for p in procs)

    def defaults():
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        return _closing(cluster, Client(cluster))

    rows = []
    for label, start in (("dask defaults", defaults), ("dfpipe", lambda: dask_client(2))):
        samples = []
        for _ in range(repeats):
            with start() as client:
                client.run(lambda: None)
                time.sleep(1.0)
                c0 = cpu_seconds()
                time.sleep(seconds)
                samples.append(cpu_seconds() - c0)
        rows.append({"settings": label, "seconds": seconds, "cpu_s": statistics.median(samples), "runs": samples})
    return rows


@contextlib.contextmanager
def _closing(cluster, client):
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _extract_with_client(extract, inputs, out, config, client):
    """Run extract on an already started cluster (so start-up is not timed)."""
    address = client.scheduler.address
    summary = extract(inputs, out, config, scheduler=address, progress=False)
    assert summary.n_ok == 4, summary


def part_e(videos: dict[str, Path], every: int) -> list[dict]:
    """Peak RSS of a serial extract process (what one Dask worker holds) per video length."""
    rows = []
    for name in ("1080p", "1080p_1min", "1080p_10min"):
        if name not in videos:
            continue
        code = (
            "import resource, sys, tempfile, time;"
            "from dfpipe.pipeline.faces import ExtractConfig, VideoJob, extract_video; from dfpipe.manifests.ids import video_content_id;"
            "import torch; torch.set_num_threads(1);"
            f"p = sys.argv[1]; t0 = time.perf_counter();"
            f"r = extract_video(VideoJob(__import__('pathlib').Path(p), video_content_id(p)), ExtractConfig(every={every}), tempfile.mkdtemp());"
            # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark into ru_maxrss
            # across fork + exec, so a big bench process would inflate its children's figure
            "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0];"
            "print(r['n_sampled'], r['n_faces'], time.perf_counter() - t0, hwm)"
        )
        out = subprocess.run([sys.executable, "-c", code, str(videos[name])], capture_output=True, text=True, check=True)
        n_sampled, n_faces, seconds, maxrss_kb = out.stdout.split()[-4:]
        rows.append({"video": name, "sampled": int(n_sampled), "faces": int(n_faces), "seconds": float(seconds),
                     "peak_rss_mib": int(maxrss_kb) / 1024})
    return rows


def part_p(videos: dict[str, Path], every: int) -> list[dict]:
    """PNG encode time and size per crop: zlib's default strategy vs the run-length one
    dfpipe uses, on the real face crops of the 720p (FF++) and 1080p clips."""
    import cv2
    import pyarrow.parquet as pq

    from dfpipe.manifests.codec import decode_image
    from dfpipe.manifests.ids import video_content_id
    from dfpipe.pipeline.faces import ExtractConfig, VideoJob, extract_video

    strategies = {"default": cv2.IMWRITE_PNG_STRATEGY_DEFAULT, "rle (dfpipe)": cv2.IMWRITE_PNG_STRATEGY_RLE}
    rows = []
    for name in ("720p", "1080p"):
        with tempfile.TemporaryDirectory() as out:
            path = videos[name]
            extract_video(VideoJob(path, video_content_id(path)), ExtractConfig(every=every), out)
            crops = [cv2.cvtColor(decode_image(b), cv2.COLOR_RGB2BGR)
                     for b in pq.read_table(Path(out) / "faces", columns=["image"]).column("image").to_pylist()]
        for label, strategy in strategies.items():
            params = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_STRATEGY, strategy]
            sizes = [len(cv2.imencode(".png", c, params)[1]) for c in crops]
            seconds = _median_time(lambda: [cv2.imencode(".png", c, params) for c in crops], 3)
            rows.append({"video": name, "strategy": label, "crops": len(crops), "ms_per_crop": 1000 * seconds / len(crops),
                         "kib_per_crop": statistics.mean(sizes) / 1024})
    return rows


def part_m(videos: dict[str, Path], every: int, repeats: int) -> list[dict]:
    """Full extract with the mesh (default) and with --mesh none, in back-to-back rounds;
    the added cost is the median of the rounds' ratios."""
    import torch

    from dfpipe.manifests.ids import video_content_id
    from dfpipe.pipeline.faces import ExtractConfig, VideoJob, extract_video

    torch.set_num_threads(2)
    rows = []
    for name in ("720p", "1080p"):
        path = videos[name]

        def full(mesh: str) -> float:
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                extract_video(VideoJob(path, video_content_id(path)), ExtractConfig(every=every, mesh=mesh), out)
                return time.perf_counter() - t0

        full("facemesh"), full("none")  # warm-up
        rounds = [(full("facemesh"), full("none")) for _ in range(repeats)]
        ratios = [m / n for m, n in rounds]
        rows.append({"video": name, "mesh_s": statistics.median(m for m, _ in rounds),
                     "none_s": statistics.median(n for _, n in rounds), "ratio": statistics.median(ratios),
                     "round_ratios": ratios})
    return rows


def crop_jitter(path: Path, every: int, crop: str, smooth: int = 0) -> dict:
    """Mean frame-to-frame displacement (crop pixels) of the aligned mesh along tracks,
    over all 468 points and over the rigid ones, for one crop mode."""
    import cv2
    import numpy as np
    import pyarrow.parquet as pq

    from dfpipe.manifests.ids import video_content_id
    from dfpipe.pipeline.faces import ExtractConfig, VideoJob, extract_video
    from dfpipe.pipeline.faces.align import RIGID_MESH_POINTS

    from dfpipe.manifests.codec import decode_image

    with tempfile.TemporaryDirectory() as out:
        extract_video(VideoJob(path, video_content_id(path)), ExtractConfig(every=every, crop=crop, smooth=smooth), out)
        table = pq.read_table(next(Path(out, "faces").glob("*.parquet")),
                              columns=["track_id", "frame_index", "mesh", "matrix", "size", "image"]).to_pylist()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flows = []
    steps_all, steps_rigid = [], []
    by_track: dict[int, list[dict]] = {}
    for r in table:
        by_track.setdefault(r["track_id"], []).append(r)
    for rows in by_track.values():
        rows.sort(key=lambda r: r["frame_index"])
        aligned = []
        for r in rows:
            m = np.asarray(r["matrix"]).reshape(2, 3)
            pts = np.asarray(r["mesh"], dtype=np.float64).reshape(-1, 3)[:, :2]
            aligned.append((pts @ m[:, :2].T + m[:, 2]) * (256.0 / r["size"]))  # in 256-px crop units
        for a, b in zip(aligned, aligned[1:]):
            d = np.linalg.norm(b - a, axis=1)
            steps_all.append(d.mean())
            steps_rigid.append(d[list(RIGID_MESH_POINTS)].mean())
        # independent of both fits: optical flow between consecutive crops, centre half
        greys = [cv2.resize(cv2.cvtColor(decode_image(r["image"]), cv2.COLOR_RGB2GRAY), (256, 256)) for r in rows]
        for a, b in zip(greys, greys[1:]):
            flow = dis.calc(a, b, None)[64:192, 64:192]
            flows.append(float(np.linalg.norm(flow, axis=-1).mean()))
    return {"all_px": float(np.mean(steps_all)), "rigid_px": float(np.mean(steps_rigid)),
            "flow_px": float(np.mean(flows)), "steps": len(steps_all)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--every-long", type=int, default=25, help="sampling for part (e): one frame a second")
    parser.add_argument("--skip-long", action="store_true", help="skip the 1- and 10-minute videos of part (e)")
    parser.add_argument("--parts", default="abcdwiepm")
    args = parser.parse_args()
    work = Path(os.environ.get("DFPIPE_BENCH_DIR", REPO / "bench_out" / "extract"))
    work.mkdir(parents=True, exist_ok=True)
    videos = make_videos(work, args.skip_long)
    report = {"every": args.every, "repeats": args.repeats, "cpus": os.cpu_count()}
    if set("abc") & set(args.parts):
        report["abc"] = part_abc(videos, args.every, args.repeats)
        for r in report["abc"]:
            print(f"{r['video']}: sampled {r['frames_sampled']}  (a) decode {r['a_decode_s']:.2f}s "
                  f"[all frames to RGB {r['a_decode_all_rgb_s']:.2f}s]  (b) detect {r['b_detect_s']:.2f}s  "
                  f"(c) extract {r['c_extract_s']:.2f}s  (c)/(a+b) = {r['c_over_a_plus_b']:.2f} median of rounds "
                  f"{' '.join(f'{x:.2f}' for x in r['round_ratios'])}  (target <= 1.3)")
    if "d" in args.parts:
        report["d"] = part_d(videos, args.every, work, args.repeats)
        print(_speedup_line("(d) 4 videos, cluster started beforehand (target >= 1.7)", report["d"]))
    if "w" in args.parts:
        report["w"] = part_w(videos, args.every, work, args.repeats)
        print(_speedup_line("(w) whole command, 4 videos", report["w"]))
    if "i" in args.parts:
        report["i"] = part_i(20.0, args.repeats)
        for r in report["i"]:
            print(f"(i) idle 2-worker cluster, {r['settings']}: {r['cpu_s']:.2f} s CPU in {r['seconds']:.0f} s "
                  f"(runs {' '.join(f'{x:.2f}' for x in r['runs'])})")
    if "m" in args.parts:
        report["m"] = part_m(videos, args.every, args.repeats)
        for r in report["m"]:
            print(f"(m) {r['video']}: extract with mesh {r['mesh_s']:.2f}s, --mesh none {r['none_s']:.2f}s, "
                  f"ratio {r['ratio']:.3f} median of rounds {' '.join(f'{x:.3f}' for x in r['round_ratios'])} "
                  f"(target <= 1.25)")
        report["jitter"] = {}
        for name in ("720p", "1080p"):
            for crop in ("align", "mesh"):
                j = crop_jitter(videos[name], 1, crop)
                report["jitter"][f"{name}/{crop}"] = j
                print(f"(m) jitter {name} --crop {crop}: aligned mesh moves {j['all_px']:.3f} px/frame "
                      f"(rigid points {j['rigid_px']:.3f}), crop-to-crop optical flow {j['flow_px']:.3f} px "
                      f"over {j['steps']} steps, 256-px crop")
    if "e" in args.parts:
        report["e"] = part_e(videos, args.every_long)
        for r in report["e"]:
            print(f"(e) {r['video']}: {r['sampled']} sampled frames, {r['faces']} faces, {r['seconds']:.0f}s, "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB (target flat, < 2048)")
    if "p" in args.parts:
        report["p"] = part_p(videos, args.every)
        for r in report["p"]:
            print(f"(png) {r['video']} {r['strategy']}: {r['crops']} crops, {r['ms_per_crop']:.2f} ms and "
                  f"{r['kib_per_crop']:.0f} KiB per crop")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
