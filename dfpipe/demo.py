"""`make demo`: build short clips of public-domain faces, extract them, show the result.

Run as `python -m dfpipe.demo --out demo_out`. Writes `demo_out/videos/*.mp4` (camera
motion, zoom, a second face, a portrait clip with rotation metadata, a c40 clip),
the dataset `demo_out/ds/`, and a contact sheet of the crops `demo_out/contact_sheet.png`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def contact_sheet(dataset: str | Path, out_png: str | Path, per_video: int = 6, thumb: int = 128) -> Path:
    """One row per video: `per_video` crops spread over its track(s)."""
    import cv2
    import pyarrow.compute as pc

    from dfpipe.manifests.codec import decode_image
    from dfpipe.manifests.parts import read_table
    from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA

    faces = read_table(dataset, "faces", FACES_SCHEMA, columns=["video_id", "frame_index", "track_id", "image"])
    videos = {r["video_id"]: r["path"] for r in read_table(dataset, "videos", VIDEOS_SCHEMA).to_pylist()}
    rows = []
    for vid in sorted(videos, key=videos.get):
        sel = faces.filter(pc.equal(faces["video_id"], vid)).sort_by([("frame_index", "ascending"), ("track_id", "ascending")])
        if sel.num_rows == 0:
            continue
        idx = np.linspace(0, sel.num_rows - 1, min(per_video, sel.num_rows)).round().astype(int)
        thumbs = [cv2.resize(decode_image(sel["image"][int(i)].as_py()), (thumb, thumb)) for i in idx]
        thumbs += [np.zeros((thumb, thumb, 3), np.uint8)] * (per_video - len(thumbs))
        label = np.full((24, thumb * per_video, 3), 255, np.uint8)
        cv2.putText(label, Path(videos[vid]).name, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        rows += [label, np.hstack(thumbs)]
    sheet = np.vstack(rows) if rows else np.zeros((thumb, thumb, 3), np.uint8)
    out_png = Path(out_png)
    cv2.imwrite(str(out_png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out_png


def main(argv: list[str] | None = None) -> int:
    from dfpipe.cli.common import console, print_error, print_stage_summary
    from dfpipe.media.faceclips import make_demo_videos
    from dfpipe.pipeline.faces import ExtractConfig, extract
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
    console.print(f"next: dfpipe info {args.out / 'ds'}   |   dfpipe validate {args.out / 'ds'}")
    return 1 if summary.n_errors or summary.n_ok != len(clips) else 0


if __name__ == "__main__":
    raise SystemExit(main())
