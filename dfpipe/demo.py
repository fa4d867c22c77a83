"""`make demo`: build short clips of public-domain faces, extract them, show the result.

Run as `python -m dfpipe.demo --out demo_out`. Writes `demo_out/videos/*.mp4` (camera
motion, zoom, a second face, a portrait clip with rotation metadata, a c40 clip),
the dataset `demo_out/ds/`, and a contact sheet of the crops `demo_out/contact_sheet.png`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from dfpipe.cli.common import console, print_error, print_stage_summary
    from dfpipe.media.faceclips import make_demo_videos
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.show import contact_sheet
    from dfpipe.runtime.weights import WeightsError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", type=Path)
    parser.add_argument("--workers", type=int, default=None, help="Dask workers (default: one per core)")
    args = parser.parse_args(argv)

    console.print(f"[bold]1/3[/] making demo clips of public-domain faces in {args.out / 'videos'}")
    clips = make_demo_videos(args.out / "videos")
    console.print(f"[bold]2/3[/] dfpipe extract {args.out / 'videos'} --out {args.out / 'ds'} --every 5")
    try:
        summary = extract([args.out / "videos"], args.out / "ds", ExtractConfig(every=5), workers=args.workers)
    except WeightsError as exc:
        print_error(str(exc))
        return 2
    print_stage_summary(summary)
    sheet = contact_sheet(args.out / "ds", args.out / "contact_sheet.png")
    console.print(f"[bold]3/3[/] contact sheet of the crops: {sheet}")
    console.print(f"next: dfpipe info {args.out / 'ds'}   |   dfpipe show {args.out / 'ds'} --open")
    return 1 if summary.n_errors or summary.n_ok != len(clips) else 0


if __name__ == "__main__":
    raise SystemExit(main())
