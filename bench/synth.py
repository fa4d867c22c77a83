"""Synthesis throughput at 720p: frames/s per generator and blend mode, and 2 workers vs 1.

Part 1 times the per-frame composition alone (generator + mask + colour + blend, no decode
or encode) on frames of the shared FF++ real video (1280x720), with landmarks from an
extract run; configurations are interleaved inside each repetition and the median is
reported. Part 2 runs the whole `synthesize` stage (decode, compose, encode c23, re-cut
crops) on four swap fakes with 1 and then 2 Dask workers and reports frames written per
second and their ratio. `--srdf` adds SR-DF's blending comparison (Mask-SSIM, Ewarp).

    .venv/bin/python bench/synth.py [--frames 24] [--repeats 3] [--no-workers] [--no-frames] [--srdf]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
os.environ.setdefault("DFPIPE_WEIGHTS_DIR", os.pathsep.join([str(SHARED / "weights"), str(SHARED / "data" / "facemesh")]))
os.environ.setdefault("DFPIPE_OFFLINE", "1")

import pandas as pd  # noqa: E402

from dfpipe.manifests.codec import decode_image  # noqa: E402
from dfpipe.pipeline.faces.align import transform_points  # noqa: E402
from dfpipe.pipeline.synth import SynthConfig, synthesize  # noqa: E402
from dfpipe.pipeline.synth.compose import Composer  # noqa: E402
from dfpipe.pipeline.synth.external import ExternalGenerator  # noqa: E402
from dfpipe.pipeline.synth.motion import FlowFollow  # noqa: E402
from dfpipe.pipeline.synth.selfblend import SelfBlendGenerator  # noqa: E402
from dfpipe.pipeline.synth.swap import SwapGenerator  # noqa: E402
from dfpipe.pipeline.video.decode import iter_frames  # noqa: E402
from dfpipe.pipeline.video.writing import ffmpeg_exe  # noqa: E402


def make_reals(root: Path, frames: int) -> Path:
    """Two cuts of the FF++ real video (720p) and a zoom over the public-domain astronaut,
    extracted with every frame sampled."""
    import cv2
    import skimage.data

    from dfpipe.pipeline.faces import ExtractConfig, extract

    clips = root / "clips"
    clips.mkdir(parents=True)
    real = SHARED / "data" / "videos" / "ffpp_real_004.mp4"
    for i, start in enumerate((0, 150)):
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(real), "-vf", f"select=gte(n\\,{start})",
                        "-frames:v", str(frames), "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-an",
                        str(clips / f"real004_{i}.mp4")], check=True)
    still = root / "astronaut.png"
    cv2.imwrite(str(still), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    zoom = f"zoompan=z='1+0.002*on':x='iw/2-(iw/zoom/2)':y='ih/4-(ih/zoom/4)':d={frames}:s=512x512:fps=25"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-loop", "1", "-i", str(still), "-vf", zoom, "-frames:v",
                    str(frames), "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(clips / "astro.mp4")],
                   check=True)
    from dfpipe.pipeline.ingest import ingest

    ds = root / "DS"
    listing = root / "listing.csv"  # only videos labelled real are sources or targets
    listing.write_text("path,label\n" + "".join(f"{p},real\n" for p in sorted(clips.glob("*.mp4"))))
    ingest("list", listing, ds)
    extract([ds], None, ExtractConfig(keep="main"), workers=0, progress=False)
    return ds


def per_frame(ds: Path, repeats: int, tmp: Path) -> None:
    videos = pd.read_parquet(ds / "videos")
    faces = pd.read_parquet(ds / "faces")
    target = videos[videos.path.str.contains("real004_0")].iloc[0]
    donor = faces[faces.video_id == videos[videos.path.str.contains("astro")].video_id.iloc[0]]
    best = donor.sort_values("score").iloc[-1]
    src, src_lm = decode_image(best.image), transform_points(np.asarray(best.landmarks).reshape(5, 2), best.matrix)
    rows = faces[faces.video_id == target.video_id].set_index("frame_index").sort_index()
    frames = [f.image for f in iter_frames(ds / target.path)]
    marks = {i: np.asarray(rows.loc[i].landmarks).reshape(5, 2) for i in range(len(frames))}
    gen_dir = tmp / "gen"
    gen_dir.mkdir()
    import cv2

    for i in range(len(frames)):  # "generated" crops: the donor's face for every frame
        cv2.imwrite(str(gen_dir / f"{i:06d}.png"), cv2.cvtColor(src, cv2.COLOR_RGB2BGR))
    matrices = {i: np.asarray(rows.loc[i].matrix).reshape(2, 3) for i in range(len(frames))}
    size = int(rows.iloc[0]["size"])

    from dfpipe.pipeline.synth.fake import _mesher
    from dfpipe.pipeline.synth.meshswap import MeshSwapGenerator
    from dfpipe.pipeline.synth.reenact import ReenactGenerator, SourceExpression

    mesh_donor = donor.sort_values("score").iloc[-1]
    from dfpipe.pipeline.faces.align import transform_mesh

    donor_mesh = transform_mesh(mesh_donor.mesh, mesh_donor.matrix)
    boxes = {i: np.array([rows.loc[i].x1, rows.loc[i].y1, rows.loc[i].x2, rows.loc[i].y2]) for i in range(len(frames))}
    target_meshes = [np.asarray(m, np.float64).reshape(-1, 3) for m in rows.mesh]
    other = videos[videos.path.str.contains("real004_1")].iloc[0]
    expression = SourceExpression(faces[faces.video_id == other.video_id].to_dict("records"), ds / other.path,
                                  _mesher("cpu"))

    from dfpipe.pipeline.synth.occlusion import TargetLook, evenly

    # the target's usual look, as synthesize builds it (occluders kept in front, the default)
    look = TargetLook([(decode_image(r.image), transform_mesh(r.mesh, r.matrix)) for r in evenly(list(rows.itertuples()))])
    generators = {
        "mesh swap": lambda: MeshSwapGenerator(decode_image(mesh_donor.image), donor_mesh, boxes, _mesher("cpu"),
                                               target_meshes=target_meshes, look=look),
        "mesh swap (--no-occluders)": lambda: MeshSwapGenerator(decode_image(mesh_donor.image), donor_mesh, boxes,
                                                                _mesher("cpu"), target_meshes=target_meshes),
        "reenact": lambda: ReenactGenerator(expression, target_meshes, boxes, _mesher("cpu"), 0),
        "swap (rigid)": lambda: SwapGenerator(src, src_lm),
        "swap (follow motion)": lambda: FlowFollow(SwapGenerator(src, src_lm), 0.2),
        "self-blend": lambda: SelfBlendGenerator(np.random.default_rng(0)),
        "external (crops)": lambda: ExternalGenerator(gen_dir, matrices, size),
    }
    configs = [(g, b, "none") for g in generators for b in ("none", "alpha", "poisson", "poisson-mixed")]
    configs += [("swap (follow motion)", "alpha", c) for c in ("rct", "lct", "mkl", "idt")]
    configs += [("mesh swap", "alpha", "lct"), ("mesh swap (--no-occluders)", "alpha", "lct")]
    timings: dict[tuple, list[float]] = {c: [] for c in configs}
    for _ in range(repeats):
        for c in configs:
            start = time.perf_counter()
            composer = Composer(generators[c[0]](), np.random.default_rng(0), c[1], c[2], blend_ratio=1.0)
            prepare = getattr(composer.generator, "prepare_frames", None)
            for i, frame in enumerate(frames):
                if prepare and i % 16 == 0:  # as synthesize does: the mesh generators batch Face Mesh
                    prepare([(k, frames[k], marks[k]) for k in range(i, min(i + 16, len(frames)))])
                composer(frame, i, marks[i])
            timings[c].append(len(frames) / (time.perf_counter() - start))
    h, w = frames[0].shape[:2]
    print(f"Per-frame composition at {w}x{h} ({len(frames)} frames, median of {repeats}):")
    print("| generator | blend | colour | frames/s |\n|---|---|---|---|")
    for c in configs:
        print(f"| {c[0]} | {c[1]} | {c[2]} | {statistics.median(timings[c]):.1f} |")


def srdf_table(ds: Path, tmp: Path) -> None:
    """SR-DF's blending comparison: one swap fake of the FF++ cut (identity: the astronaut)
    per blend/colour mode, scored by score-quality (Mask-SSIM, Ewarp; LPIPS needs ImageNet
    VGG-16 weights, absent offline)."""
    from dfpipe.pipeline.quality import QualityConfig, read_quality, score_quality

    videos = pd.read_parquet(ds / "videos")
    real = videos[videos.path.str.contains("real004_0")].video_id.iloc[0]
    donor = videos[videos.path.str.contains("astro")].video_id.iloc[0]
    pairs = tmp / "pairs.csv"
    pairs.write_text(f"target_video_id,source_video_id\n{real},{donor}\n")
    print("\nSR-DF comparison (swap onto the FF++ cut, c23):")
    print("| geometry | blend | colour | Mask-SSIM | Mask-SSIM inside | id to donor | id to target | id retrieval "
          "| pose error | expression error | seam | Ewarp | Ewarp / real |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    modes = [("landmarks", "none", "none"), ("landmarks", "alpha", "none"), ("landmarks", "alpha", "lct"),
             ("landmarks", "poisson", "none"), ("mesh", "none", "none"), ("mesh", "alpha", "none"),
             ("mesh", "alpha", "rct"), ("mesh", "alpha", "lct"), ("mesh", "poisson", "none"), ("mesh", "poisson", "lct")]
    metrics = ("mask_ssim", "ewarp", "identity", "pose", "expression", "seam")
    for geometry, blend_mode, colour in modes:
        out = tmp / f"srdf-{geometry}-{blend_mode}-{colour}"
        config = SynthConfig(blend=blend_mode, colour=colour, pairs_file=str(pairs), qualities=("c23",), seed=0,
                             geometry=geometry)
        synthesize(ds, out, config, workers=0, progress=False)
        score_quality(out, QualityConfig(metrics=metrics), workers=0, progress=False)
        quality = read_quality(out)[1].set_index("video_id")
        fake, real_ewarp = quality[quality.label == "fake"].iloc[0], quality.loc[real].ewarp
        print(f"| {geometry} | {blend_mode} | {colour} | {fake.mask_ssim:.4f} | {fake.mask_ssim_inside:.4f} | "
              f"{fake.id_to_source:.3f} | {fake.id_to_target:.3f} | {fake.id_retrieval:.2f} | {fake.pose_error:.2f} | "
              f"{fake.expression_error:.4f} | {fake.seam:.3f} | {fake.ewarp:.6f} | {fake.ewarp / real_ewarp:.2f} |")
    print(f"real video Ewarp: {real_ewarp:.6f}")
    nt_reference(tmp, metrics)


def nt_reference(tmp: Path, metrics: tuple[str, ...]) -> None:
    """The shared NeuralTextures pair (a published reenactment) scored the same way."""
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest
    from dfpipe.pipeline.quality import QualityConfig, read_quality, score_quality

    videos = SHARED / "data" / "videos"
    listing = tmp / "nt.csv"
    real, fake = videos / "ffpp_real_004.mp4", videos / "ffpp_fake_NeuralTextures_004_982.mp4"
    listing.write_text(f"path,label,source,method\n{real},real,,\n{fake},fake,{real},NeuralTextures\n")
    ds = tmp / "nt"
    ingest("list", listing, ds)
    extract([ds], None, ExtractConfig(every=10, keep="main"), workers=0, progress=False)
    from dfpipe.pipeline.masks import masks

    masks(ds, workers=0, progress=False)  # pair masks: Mask-SSIM and seam need them
    score_quality(ds, QualityConfig(metrics=metrics), workers=0, progress=False)
    q = read_quality(ds)[1]
    fake_row, real_row = q[q.label == "fake"].iloc[0], q[q.label == "real"].iloc[0]
    print(f"NeuralTextures reference (FF++ c23, every 10th frame): Mask-SSIM {fake_row.mask_ssim:.4f}, "
          f"id to target {fake_row.id_to_target:.3f}, pose error {fake_row.pose_error:.2f}, seam {fake_row.seam:.3f}, "
          f"Ewarp {fake_row.ewarp:.6f} ({fake_row.ewarp / real_row.ewarp:.2f} x real)")


def stage(ds: Path, tmp: Path, workers: int) -> tuple[float, int]:
    out = tmp / f"stage-{workers}"
    config = SynthConfig(method="swap", blend="poisson", colour="rct", qualities=("c23",), pairs=4, seed=0)
    start = time.perf_counter()
    summary = synthesize(ds, out, config, workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    assert summary.n_ok == 4 and not summary.n_errors, summary
    shutil.rmtree(out)
    return summary.counts["frames"] / elapsed, summary.counts["frames"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames per real clip")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-workers", action="store_true", help="skip the 1 vs 2 workers comparison")
    parser.add_argument("--no-frames", action="store_true", help="skip the per-frame table")
    parser.add_argument("--srdf", action="store_true", help="also print the SR-DF blending comparison")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.1f}\n")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ds = make_reals(tmp, args.frames)
        if not args.no_frames:
            per_frame(ds, args.repeats, tmp)
        if args.srdf:
            srdf_table(ds, tmp)
        if not args.no_workers:
            print("\nWhole stage, 4 swap fakes (poisson + rct, c23), decode + compose + encode + crops:")
            results = {}
            for workers in (1, 2, 1, 2):  # interleaved, median of two each
                results.setdefault(workers, []).append(stage(ds, tmp, workers))
            fps = {w: statistics.median(r[0] for r in runs) for w, runs in results.items()}
            for w in (1, 2):
                print(f"  {w} worker(s): {fps[w]:.1f} frames/s ({results[w][0][1]} frames)")
            print(f"  2 workers / 1 worker: {fps[2] / fps[1]:.2f}x")
    print(f"\nload average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
