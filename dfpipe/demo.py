"""`make demo`: build short clips of public-domain faces, extract them, show the result,
then build the demo benchmark from its recipe, ending in its dataset card.

Run as `python -m dfpipe.demo --out demo_out`. Writes `demo_out/videos/*.mp4` (camera
motion, zoom, a second face, a portrait clip with rotation metadata, a c40 clip),
the dataset `demo_out/ds/`, a contact sheet of the crops `demo_out/contact_sheet.png`, and
the benchmark of `examples/demo.yaml` in `demo_out/bench/` (self-blends at c23 and c40,
quality, two tiny detectors) with its card `demo_out/bench/card/index.html`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from dfpipe.cli.common import console, print_error, print_stage_summary
    from dfpipe.media.faceclips import make_demo_videos
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.show import contact_sheet
    from dfpipe.build.recipe import RecipeError
    from dfpipe.build.run import BuildError
    from dfpipe.runtime.weights import WeightsError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", type=Path)
    parser.add_argument("--workers", type=int, default=None, help="Dask workers (default: one per core)")
    args = parser.parse_args(argv)

    console.print(f"[bold]1/4[/] making demo clips of public-domain faces in {args.out / 'videos'}")
    clips = make_demo_videos(args.out / "videos")
    console.print(f"[bold]2/4[/] dfpipe extract {args.out / 'videos'} --out {args.out / 'ds'} --every 5")
    try:
        summary = extract([args.out / "videos"], args.out / "ds", ExtractConfig(every=5), workers=args.workers)
    except WeightsError as exc:
        print_error(str(exc))
        return 2
    print_stage_summary(summary)
    sheet = contact_sheet(args.out / "ds", args.out / "contact_sheet.png")
    console.print(f"[bold]3/4[/] contact sheet of the crops: {sheet}")
    if summary.n_errors or summary.n_ok != len(clips):
        return 1
    bench = args.out / "bench"
    console.print(f"[bold]4/4[/] dfpipe build examples/demo.yaml --out {bench}  (the clips above as its reals)")
    try:
        card = build_demo_bench(args.out / "videos", bench, args.workers)
    except (BuildError, RecipeError) as exc:
        print_error(str(exc))
        return 1
    console.print(f"card: {card}")
    console.print(f"next: dfpipe info {args.out / 'ds'}   |   dfpipe show {args.out / 'ds'} --open   |   open {card}")
    return 0


def build_demo_bench(videos: Path, bench: Path, workers: int | None) -> Path:
    """`examples/demo.yaml` built over `videos` (wherever --out put them) into `bench`."""
    import yaml

    from dfpipe.build.recipe import parse_recipe
    from dfpipe.build.run import build
    from dfpipe.cli.build import print_step, print_steps

    path = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["sources"][0]["reals"] = str(videos.resolve())
    # the shipped recipe wins over an older demo's: changed steps are rebuilt, not refused
    report = build(parse_recipe(raw, path), bench, workers=workers, rebuild_changed=True, on_step=print_step)
    print_steps(report)
    return report.card


if __name__ == "__main__":
    raise SystemExit(main())
