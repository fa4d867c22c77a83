"""`dfpipe ingest`: a thin layer over `dfpipe.pipeline.ingest.ingest` (FF++, DFDC, Celeb-DF,
a CSV/JSON listing -> pending rows in DS/videos/)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from dfpipe.cli.common import EXIT_INPUT_FAILED, console, fail
from dfpipe.cli.options import library_value, option

if TYPE_CHECKING:
    from dfpipe.pipeline.ingest import IngestSummary

INGEST = "dfpipe.pipeline.ingest:ingest"  # holds the defaults
_COMPRESSION = ", ".join(library_value("dfpipe.pipeline.ingest.ffpp:DEFAULT_COMPRESSION"))


def ingest(
    kind: str = typer.Argument(..., help="Dataset layout: ff++, dfdc, celebdf, folders (ROOT/real/, ROOT/fake/<method>/) or list (a CSV/TSV/JSON listing)."),
    root: Path = typer.Argument(..., help="The dataset's root folder (for `list`: the listing file)."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write DS/videos/ into."),
    compression: Optional[List[str]] = option(
        INGEST, "compression", "--compression", "-c", help=f"FF++ only: c0, c23, c40 or raw; repeat for several (default {_COMPRESSION})."
    ),
    splits: Optional[Path] = option(
        INGEST, "splits", "--splits", help="FF++ only: folder with the official train/val/test.json (default ROOT/splits)."
    ),
) -> None:
    """List a dataset's videos with labels, methods, real/fake pairs and splits, as pending rows
    that `dfpipe extract DS` then processes (fakes reuse their source's face tracks).

    folders: ROOT/real/... and ROOT/fake/<method>/... (files directly in fake/ have no method),
    optionally one level down in ROOT/train|val|test/ to give splits. A fake named like a real
    (004.mp4, or 004_982.mp4 as FF++ names them) is paired with it.

    list: a CSV (or TSV) with a header, or a JSON list of objects. Columns: path (required;
    relative to the listing's folder, or absolute), label (required: real, fake or unknown),
    and optionally source (the path, as listed, of the real a fake was made from), target (the
    identity donor's path), method, compression (c0, c23, c40, raw), split (train, val, test),
    dataset (one name per listing; default custom), identity (who is filmed: made splits keep
    one identity's videos on one side).

    Re-running ingest keeps what extract found; rows whose label, method, split or pair
    changed are updated (their faces' label and split too) and listed.

    Exit status 0 when every listed video was readable, 1 when some were not (their rows
    say why), 2 on a bad layout or bad arguments.
    """
    from dfpipe.pipeline.ingest import IngestError, ingest

    try:
        summaries = ingest(kind, root, out, compression, splits)
    except IngestError as exc:
        fail(str(exc))
    for summary in summaries:
        print_summary(summary)
    console.print(f"next: [bold]dfpipe extract {out}[/bold]")
    if any(s.errors for s in summaries):
        raise typer.Exit(EXIT_INPUT_FAILED)


def print_summary(summary: IngestSummary) -> None:
    """One dataset's counts by label, method and split, then its first errors and warnings."""
    from rich.table import Table

    table = Table(title=f"ingest {summary.dataset} -> {summary.out}")
    table.add_column("count by", style="bold")
    table.add_column("values")
    for name, counter in (("label", summary.by_label), ("method", summary.by_method), ("split", summary.by_split)):
        table.add_row(name, ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "-")
    table.add_row("written", str(summary.written))
    table.add_row("already there (kept)", str(summary.skipped_existing))
    table.add_row("already there (updated)", str(len(summary.updated)))
    table.add_row("errors", str(len(summary.errors)))
    console.print(table)
    for path, message in summary.errors[:20]:
        console.print(f"[red]error[/red] {path}: {message}")
    for key, change in summary.updated[:20]:
        console.print(f"[cyan]updated[/cyan] {key}: {change}")
    for message in summary.warnings[:20]:
        console.print(f"[yellow]warning[/yellow] {message}")
    hidden = sum(max(0, len(x) - 20) for x in (summary.errors, summary.warnings, summary.updated))
    if hidden:
        console.print(f"... and {hidden} more")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
