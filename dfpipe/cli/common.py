"""Small helpers shared by CLI modules: consistent errors and exit codes.

Exit status: 0 = everything asked was done; 1 = the run finished but some inputs failed
(error rows written) or validation found problems; 2 = bad arguments, nothing done.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

EXIT_OK = 0
EXIT_INPUT_FAILED = 1
EXIT_BAD_ARGS = 2


def print_error(message: str) -> None:
    """`error: message` on stderr. soft_wrap: a long path stays on one line (copyable,
    greppable); escape: a message holding [brackets] is text, not rich markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def fail(message: str, code: int = EXIT_BAD_ARGS) -> NoReturn:
    print_error(message)
    raise typer.Exit(code)


def print_run_table(title: str, rows: list[tuple[str, object]], failed: list[tuple[str, str, str]], out) -> None:
    """The one-screen end-of-run summary: counts, then the first failures with their codes."""
    from rich.table import Table

    from dfpipe.cli.tables import print_table

    table = Table(title=title, show_header=False)
    for name, value in rows:
        table.add_row(name, str(value))
    print_table(table, console)
    for path, code, message in failed[:20]:  # one line each, as print_error: a long path stays whole
        console.print(f"[red]{code}[/] {escape(path)}: {escape(message)}", soft_wrap=True)
    if len(failed) > 20:
        console.print(f"... and {len(failed) - 20} more (dfpipe info {out})")


def print_stage_summary(summary, extra: list[tuple[str, object]] | None = None) -> None:
    """The end-of-run table of every dataset stage (a `runtime.stage.StageSummary`): items,
    how many were done before, ok / failed by error code, what was dropped by reason, the
    stage's own counts, then the first failures."""
    unit = summary.unit
    rows: list[tuple[str, object]] = [
        (unit, summary.n_items), ("already done (skipped)", summary.n_skipped),
        (f"{unit} ok", summary.n_ok), ("failed", summary.n_errors),
    ]
    rows += [(f"  {code}", n) for code, n in sorted(summary.errors.items())]
    rows += [(name, n) for name, n in summary.counts.items()]
    if summary.dropped:
        rows.append(("dropped", sum(summary.dropped.values())))
        rows += [(f"  {reason}", n) for reason, n in sorted(summary.dropped.items())]
    rows += list(extra or [])
    if summary.execution:
        rows.append(("ran", summary.execution))
    rows.append(("seconds", f"{summary.seconds:.1f}"))
    print_run_table(f"{summary.stage} -> {summary.root}", rows, summary.failed, summary.root)
    for note in summary.notes[:20]:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
