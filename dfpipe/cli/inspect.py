"""`dfpipe info` and `dfpipe validate`: read-only looks at a dataset directory, thin layers
over `dfpipe.manifests.info.info` and `dfpipe.manifests.validate.validate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dfpipe.cli.common import EXIT_INPUT_FAILED, console, fail
from dfpipe.cli.options import option

if TYPE_CHECKING:
    from dfpipe.manifests.info import DatasetInfo

VALIDATE = "dfpipe.manifests.validate:validate"


def info(
    dataset: Path = typer.Argument(..., help="A dataset directory."),
    videos: bool = typer.Option(False, "--videos", help="Also list every video: label, method, quality, split, status, frames and faces."),
) -> None:
    """Counts, failures and faces per video of a dataset directory."""
    from dfpipe.manifests.info import info

    if not (dataset / "videos").is_dir():
        fail(f"{dataset} is not a dataset directory (no videos/ folder)")
    d = info(dataset, videos=videos)
    print_info(d)
    if videos:
        print_videos(d.videos)


def print_videos(rows: list[dict]) -> None:
    """`dfpipe info --videos`: a row per video; file and method names wrap only at their
    joints (`cli/tables.py`), the short columns never wrap."""
    from rich.table import Table

    from dfpipe.cli.tables import Name, print_table

    table = Table(title="videos")
    for name in ("video", "label", "method", "quality", "split", "status", "frames", "faces"):
        table.add_column(name, justify="right" if name in ("frames", "faces") else "left",
                         no_wrap=name not in ("video", "method"))
    for r in rows:
        cells = ["-" if r[k] is None else str(r[k]) for k in
                 ("video", "label", "method", "quality", "split", "status", "frames", "faces")]
        table.add_row(Name(cells[0]), cells[1], Name(cells[2]), *cells[3:])
    print_table(table, console)


def print_info(d: DatasetInfo) -> None:
    """The one-screen table of `dfpipe info`, then the first failures."""
    from rich.table import Table

    from dfpipe.cli.tables import print_table

    table = Table(title=str(d.root), show_header=False)
    table.add_row("stages run", ", ".join(d.stages) or "-")
    table.add_row("tables (part files)", ", ".join(f"{k} ({v})" for k, v in d.tables.items()))
    table.add_row("videos", str(d.n_videos))
    for title, counts in (("status", d.by_status), ("kind", d.by_kind), ("label", d.by_label),
                          ("method", d.by_method), ("split", d.by_split), ("errors", d.errors)):
        if counts:
            table.add_row(f"  by {title}", ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    table.add_row("faces", str(d.n_faces))
    table.add_row("faces with masks", str(d.n_masks))
    if d.faces_per_video:
        fp = d.faces_per_video
        table.add_row("faces per ok video", f"min {fp['min']:.0f}, median {fp['median']:.0f}, mean {fp['mean']:.1f}, max {fp['max']:.0f}")
    table.add_row("ok videos without faces", str(d.n_no_face))
    if d.n_faces:
        table.add_row("faces with a mesh", str(d.n_mesh))
    if d.by_yaw:
        table.add_row("  by |yaw| (degrees)", ", ".join(f"{k}: {v}" for k, v in d.by_yaw.items()))
    if d.n_faces:
        flags = ", ".join(f"{k.removeprefix('flag_')}: {v}" for k, v in d.flagged.items())
        table.add_row("faces flagged", f"{d.n_flagged} ({flags})")
    table.add_row("camera shots", f"{d.n_shots} ({d.n_cut_videos} video(s) with cuts)")
    if d.dropped:
        table.add_row("faces dropped", ", ".join(f"{k}: {v}" for k, v in sorted(d.dropped.items())))
    print_table(table, console)
    for path, code, message in d.failed[:20]:
        console.print(f"[red]{code}[/] {path}: {message}")


def validate(
    dataset: Path = typer.Argument(..., help="A dataset directory."),
    deep: bool = option(VALIDATE, "deep", help="Also decode every image and mask."),
) -> None:
    """Check a dataset directory against the schemas; exit 0 when valid, 1 otherwise."""
    from dfpipe.manifests.validate import validate

    if not dataset.is_dir():
        fail(f"{dataset} does not exist or is not a folder: give a dataset directory made by ingest or extract")
    report = validate(dataset, deep=deep)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    for e in report.errors:
        console.print(f"[red]error:[/] {e}")
    counts = ", ".join(f"{k}: {v}" for k, v in report.counts.items())
    if report.ok:
        console.print(f"[green]valid[/] ({counts}; {len(report.warnings)} warning(s))")
        return
    console.print(f"[red]invalid[/]: {len(report.errors)} error(s) ({counts})")
    raise typer.Exit(EXIT_INPUT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    app.command("validate")(validate)
