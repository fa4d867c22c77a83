"""One progress bar look for every long command (stages, training, evaluation)."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar(enabled: bool = True, transient: bool = False) -> Progress:
    """A rich Progress with description, bar, done/total, elapsed and remaining time;
    `enabled=False` gives the same object drawing nothing (scripts, logs, tests)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=transient,
    )
