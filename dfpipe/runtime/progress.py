"""One progress bar look for every long command (stages, training, evaluation), and the
sub-steps (frames) a long work item reports while it runs.

An item that takes a minute (a fake, a long video) reports its steps through
`expect_steps` / `step`, wherever in its code the frames are; the stage runner decides where
they go (`item_steps`): on the serial path to a second row of the bar, as they happen; on a
Dask worker as events sent to the client at most twice a second (`StepEvents`, read by
`LiveSteps`), settled by the count handed back with the item's result. Outside a run both do
nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator

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


class ItemSteps:
    """The steps of the item running in this process: how many it expects, how many are
    done; each change is also passed to `on_change(expected_delta, done_delta)`."""

    def __init__(self, on_change: Callable[[int, int], None] | None = None) -> None:
        self.expected = 0
        self.done = 0
        self._on_change = on_change

    def expect(self, n: int) -> None:
        self.expected += n
        if self._on_change:
            self._on_change(n, 0)

    def advance(self, n: int) -> None:
        self.done += n
        if self._on_change:
            self._on_change(0, n)


_current: ItemSteps | None = None


@contextlib.contextmanager
def item_steps(on_change: Callable[[int, int], None] | None = None) -> Iterator[ItemSteps]:
    """Count the steps the code inside reports (one item at a time per process)."""
    global _current
    previous, _current = _current, ItemSteps(on_change)
    try:
        yield _current
    finally:
        _current = previous


def expect_steps(n: int) -> None:
    """The running item has `n` more steps ahead (an estimate is fine: the runner settles
    the total to the steps done when the item ends)."""
    if _current is not None and n > 0:
        _current.expect(int(n))


def step(n: int = 1) -> None:
    """The running item did `n` more steps."""
    if _current is not None and n > 0:
        _current.advance(int(n))


class StepsRow:
    """The bar's second row: steps done over the run's items so far, of those expected by
    the items started (so its remaining time is the running item's)."""

    def __init__(self, bar: Progress, label: str) -> None:
        self.bar = bar
        self.task = bar.add_task(f"  {label}", total=0, visible=False)
        self.expected = 0
        self.done = 0

    def change(self, expected: int, done: int) -> None:
        self.expected += expected
        self.done += done
        self.bar.update(self.task, total=max(self.expected, self.done), completed=self.done, visible=True)

    def settle(self, item: ItemSteps) -> None:
        """An item ended: its expected steps become those it did (it failed early, or its
        estimate was off), so the total stays the steps of the items done plus ahead."""
        if item.expected != item.done:
            self.change(item.done - item.expected, 0)


class StepEvents:
    """On a Dask worker: an item's step changes, sent to the client as worker events on
    `topic` at most every `interval` seconds (the item's result carries the final count, so
    changes still pending when it ends are not lost)."""

    def __init__(self, topic: str, key: str, interval: float = 0.5) -> None:
        self.topic, self.key, self.interval = topic, key, interval
        self.expected = self.done = 0
        self.last = time.monotonic()

    def __call__(self, expected: int, done: int) -> None:
        self.expected += expected
        self.done += done
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        try:
            from distributed import get_worker

            get_worker().log_event(self.topic, [self.key, self.expected, self.done])
        except ValueError:  # not on a worker (a task run in the client's process)
            return
        self.expected = self.done = 0


class LiveSteps:
    """On the client: moves the bar's steps row as `StepEvents` arrive (on the client's
    event-loop thread), then settles each item to the count its result carries; events
    that arrive after the result are dropped."""

    def __init__(self, row: StepsRow) -> None:
        self.row = row
        self.applied: dict[str, list[int]] = {}
        self.finished: set[str] = set()
        self.lock = threading.Lock()

    def on_event(self, event: tuple) -> None:
        key, expected, done = event[1]
        with self.lock:
            if key in self.finished:
                return
            applied = self.applied.setdefault(key, [0, 0])
            applied[0] += expected
            applied[1] += done
            self.row.change(expected, done)

    def finish(self, key: str, done: int) -> None:
        """The item ended with `done` steps: what was shown for it becomes exactly that."""
        with self.lock:
            self.finished.add(key)
            expected, shown = self.applied.pop(key, (0, 0))
            if done or expected or shown:
                self.row.change(done - expected, done - shown)
