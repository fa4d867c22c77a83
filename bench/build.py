"""`dfpipe build` on the demo recipe: seconds per step, the per-unit rates, and a projection.

    python bench/build.py [--out bench_out/build] [--workers N]

Builds `examples/demo.yaml` from scratch (its clips are made first when absent), prints
each step's seconds, its work in the dry run's units and the rate (seconds per unit): the
figures `dfpipe.build.estimate.CPU_RATES` holds. Then projects an SR-DF-sized build
(`examples/srdf.yaml`: 1,000 FF++ reals, 4,000 fakes at c23 and c40, both detectors at
paper size, 20 epochs) from those rates, stating each assumption it makes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: an SR-DF-sized build, as examples/srdf.yaml writes it
REALS = 1000
SAMPLED_PER_VIDEO = 50  # FF++ c23 videos: about 500 frames (median), every 10th sampled
FAKE_VIDEOS = 4000 * 2  # 4,000 fakes (3 x 1,000 pairs + 1,000 self-blends), each at c23 and c40
EPOCHS = 20
#: full-size detector training on this 2-core CPU, s per face (docs/benchmarks.md, issue 6:
#: M2TR @320 5.32 s and MAT @380 4.67 s a batch-4 step)
FULL_TRAIN_S_PER_FACE = {"m2tr": 5.32 / 4, "mat": 4.67 / 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "build")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DFPIPE_OFFLINE", "1")

    from dfpipe.build.estimate import estimate_steps, fmt_seconds
    from dfpipe.build.plan import plan_steps
    from dfpipe.build.recipe import load_recipe
    from dfpipe.build.run import build
    from dfpipe.media.faceclips import make_demo_videos

    make_demo_videos(REPO / "demo_out" / "videos")
    recipe = load_recipe(REPO / "examples" / "demo.yaml")
    shutil.rmtree(args.out, ignore_errors=True)
    steps = plan_steps(recipe, args.out)
    units = estimate_steps(recipe, args.out, steps, {})
    started = time.perf_counter()
    report = build(recipe, args.out, workers=args.workers, progress=False)
    total = time.perf_counter() - started
    print(f"demo recipe built in {total:.1f} s on {os.cpu_count()} cores (workers={args.workers})")
    print(f"{'step':32} {'seconds':>8} {'work':>10} {'unit':16} {'s/unit':>8}")
    rates: dict[str, float] = {}
    for s in report.steps:
        est = units[s.name]
        rate = s.seconds / est.units if est.units else float("nan")
        rates.setdefault(s.group, rate)
        print(f"{s.name:32} {s.seconds:8.2f} {est.units:10.1f} {est.unit:16} {rate:8.4f}")

    sampled = REALS * SAMPLED_PER_VIDEO
    fake_frames = FAKE_VIDEOS * SAMPLED_PER_VIDEO
    work = {
        "ingest": REALS, "extract": sampled, "splits": REALS, "synth": fake_frames, "merge": REALS + FAKE_VIDEOS,
        "masks": FAKE_VIDEOS, "quality": fake_frames, "evaluate": 0.1 * (sampled + fake_frames) * 2,
    }
    cores = 16
    print(f"\nprojection: {REALS} reals x {SAMPLED_PER_VIDEO} sampled frames, {FAKE_VIDEOS} fake videos, "
          f"{cores} cores (CPU stages assumed to scale with cores from this machine's {os.cpu_count()})")
    scale = (os.cpu_count() or 2) / cores
    cpu_total = 0.0
    for group, n in work.items():
        seconds = n * rates.get(group, 0.0) * scale
        cpu_total += seconds
        print(f"  {group:10} {n:>10,.0f} units x {rates.get(group, 0):.4f} s x {scale:.3f} = {fmt_seconds(seconds)}")
    print(f"  CPU stages: {fmt_seconds(cpu_total)}")
    faces = 0.8 * (sampled + fake_frames)
    for model, rate in FULL_TRAIN_S_PER_FACE.items():
        cpu = faces * EPOCHS * rate
        print(f"  train {model} at paper size: {faces * EPOCHS:,.0f} face-epochs; on this CPU {fmt_seconds(cpu)}; "
              "on a GPU: not measured here (no GPU lent to this session)")


if __name__ == "__main__":
    main()
