"""`dfpipe show`: a thin layer over `dfpipe.pipeline.show.show`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dfpipe.cli.common import console, fail


def show(
    dataset: Path = typer.Argument(..., help="A dataset directory."),
    out: Optional[Path] = typer.Option(None, help="Where to write contact_sheet.png, index.html and img/ (default: DATASET/show)."),
    per_video: int = typer.Option(8, "--per-video", help="Faces per video, spread over its frames and tracks."),
    videos: Optional[List[str]] = typer.Option(None, "--video", help="Only this video (id, file name or stem); repeat for more."),
    labels: Optional[List[str]] = typer.Option(None, "--label", help="Only videos with this label (real, fake, unknown); repeat for more."),
    methods: Optional[List[str]] = typer.Option(None, "--method", help="Only videos of this method ('-' for none); repeat for more."),
    size: int = typer.Option(128, help="Side of each thumbnail in pixels."),
    sheet_videos: int = typer.Option(60, "--sheet-videos", help="At most this many videos (rows) on the contact sheet; the gallery has all."),
    open_page: bool = typer.Option(False, "--open", help="Open the gallery in a web browser when done."),
) -> None:
    """Look at a dataset: a contact sheet (PNG, a row of crops per video with masks
    outlined) and a static HTML gallery of the crops beside their masks, filterable by
    video, label and method in the browser.

    Read-only on the dataset. The gallery folder can be copied anywhere: it needs no
    server and no network.
    """
    from dfpipe.manifests.schema import LABELS
    from dfpipe.pipeline.show import show

    if not (dataset / "videos").is_dir():
        fail(f"{dataset} is not a dataset directory (no videos/ folder)")
    for name, value in (("--per-video", per_video), ("--size", size), ("--sheet-videos", sheet_videos)):
        if value < 1:
            fail(f"{name} must be a whole number of at least 1, got {value}")
    bad = sorted(set(labels or []) - set(LABELS))
    if bad:
        fail(f"--label must be one of {', '.join(LABELS)}, got {', '.join(bad)}")
    result = show(dataset, out=out, per_video=per_video, videos=videos, labels=labels, methods=methods, size=size,
                  sheet_videos=sheet_videos)
    if result.n_videos == 0:
        console.print("[yellow]no video matches the filters[/] (see dfpipe info DATASET --videos)")
    console.print(f"{result.n_videos} video(s), {result.n_faces} face(s) sampled, {result.n_masks} with a mask "
                  f"({result.seconds:.1f} s)")
    cut = f" (first {result.n_sheet_videos} of {result.n_videos} videos)" if result.n_sheet_videos < result.n_videos else ""
    console.print(f"contact sheet: {result.sheet}{cut}", soft_wrap=True)
    console.print(f"gallery:       {result.page}", soft_wrap=True)
    if open_page:
        import webbrowser

        if not webbrowser.open(result.page.resolve().as_uri()):
            console.print("[yellow]no web browser found[/]: open the gallery's path above")


def register(app: typer.Typer) -> None:
    app.command("show")(show)
