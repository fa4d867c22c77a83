"""The one-screen end-of-run summary of `dfpipe ingest` (a rich table per dataset)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from dfpipe.pipeline.ingest import IngestError, IngestSummary, ingest


def print_summary(summary: IngestSummary, console: Console) -> None:
    table = Table(title=f"ingest {summary.dataset} -> {summary.out}")
    table.add_column("count by", style="bold")
    table.add_column("values")
    for name, counter in (("label", summary.by_label), ("method", summary.by_method), ("split", summary.by_split)):
        table.add_row(name, ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "-")
    table.add_row("written", str(summary.written))
    table.add_row("already there (kept)", str(summary.skipped_existing))
    table.add_row("errors", str(len(summary.errors)))
    console.print(table)
    for path, message in summary.errors[:20]:
        console.print(f"[red]error[/red] {path}: {message}")
    for message in summary.warnings[:20]:
        console.print(f"[yellow]warning[/yellow] {message}")
    hidden = max(0, len(summary.errors) - 20) + max(0, len(summary.warnings) - 20)
    if hidden:
        console.print(f"... and {hidden} more")


def run_ingest(
    kind: str,
    root: Path,
    out: Path,
    compression: list[str] | None = None,
    splits: Path | None = None,
) -> int:
    """Ingest and print the summary; the exit status (0 ok, 1 some videos unreadable, 2 bad input)."""
    console = Console(stderr=False)
    try:
        summaries = ingest(kind, root, out, tuple(compression) if compression else None, splits)
    except IngestError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    for summary in summaries:
        print_summary(summary, console)
    console.print("next: [bold]dfpipe extract " + str(out) + "[/bold]")
    return 1 if any(s.errors for s in summaries) else 0
