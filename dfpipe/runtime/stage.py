"""One runner for every dataset stage (extract, masks, synthesize, score-quality).

A stage is a small object that knows its work items and how to do one; `run_stage` owns
everything around that, the same way for every stage:

- the parameter check against `run.json` (a resumed run must not mix two settings, but
  for a stage's `added_params`, whose other values add items of their own) and the record
  of the run there;
- the filter of items already done (their completion marker, the part written last, exists);
- the Dask map, or the identical serial loop (`workers=0`, or a run too small to gain from
  a cluster: `parallel.choose_execution`), and the record of which one in the summary and
  run.json;
- one error policy: an `ItemError` keeps its code, anything else becomes `internal` with the
  exception's message in the item's error row (traceback logged, shown under --verbose),
  and the run goes on;
- one summary: counts by status, error code and drop reason, read back from the markers of
  every item of the run, new and resumed alike.

The stage object travels to Dask workers, so it holds only its configuration and paths.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Iterable, Mapping, Sequence, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class ItemError(Exception):
    """A known problem with one work item's input: its row gets `code` (a stable error code
    of `dfpipe.manifests.schema.ERROR_CODES`) and the readable `message`. `details` are
    further columns the item learned before it failed (a video's size), kept in its row."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details)


@dataclass
class Outcome:
    """What one item's marker says: read back for the summary, so resumed items count too."""

    key: str
    status: str  # ok / error
    name: str = ""  # what the user knows the item by (a path, a video id)
    error_code: str | None = None
    error: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)  # e.g. faces, tracks, frames
    dropped: Mapping[str, int] = field(default_factory=dict)  # what the item left out, by reason
    note: str | None = None  # something the user should know about an ok item (a fallback taken)


class Stage(Generic[Item]):
    """The protocol `run_stage` drives; subclasses fill in the item-level parts."""

    #: the stage's key in run.json and its progress label
    name: str = "stage"
    #: what one item is, for the summary ("videos", "fakes")
    unit: str = "items"
    #: the steps an item reports while it runs (`runtime.progress.step`), for a second row
    #: of the progress bar ("frames"); None: the bar moves once per item
    steps: str | None = None
    #: the dataset directory the stage writes
    root: Path
    #: parameters whose other value adds items with keys of their own to `root` instead of
    #: being refused (synthesize's seed); run.json keeps every value (`runinfo.record_stage`)
    added_params: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        """What decides the output: a resumed run must share it with the first one."""
        raise NotImplementedError

    def weights(self) -> dict[str, str]:
        """{weights file name: sha256} recorded in run.json; checked before any work."""
        return {}

    def items(self) -> Sequence[Item]:
        """Every work item the run covers, done or not, in the order to hand them out."""
        raise NotImplementedError

    def key(self, item: Item) -> str:
        raise NotImplementedError

    def done(self) -> set[str]:
        """Keys whose completion marker exists."""
        raise NotImplementedError

    def after(self, item: Item) -> tuple[str, ...]:
        """Keys of items that must finish before this one (e.g. a fake after its source)."""
        return ()

    def work_seconds(self, item: Item) -> float | None:
        """A rough estimate of the item's serial seconds, so a run of a few small items skips
        the cluster (`parallel.choose_execution`); None when it cannot be told cheaply."""
        return None

    def prepare(self, items: Sequence[Item]) -> None:
        """Work once before the items, after the run is recorded (rows no item owns)."""

    def setup_worker(self, on_worker: bool) -> None:
        """Once in every process that will run items, before the first (load a model there,
        so a file it cannot use fails the run at once instead of every item)."""

    def process(self, item: Item, on_worker: bool) -> None:
        """Do one item: write its part files, the completion marker last. Raise ItemError
        for a known input problem; any other exception is a bug, kept as an `internal` row."""
        raise NotImplementedError

    def write_error(self, item: Item, error: ItemError) -> None:
        """Write the item's error row(s) (`error.code`, `error.message`, `error.details`),
        which are its completion marker too."""
        raise NotImplementedError

    def outcomes(self, keys: Iterable[str]) -> list[Outcome]:
        """The markers of `keys` as outcomes (missing ones left out)."""
        raise NotImplementedError


@dataclass
class StageSummary:
    """The end-of-run counts of one stage, whatever the stage."""

    stage: str
    root: Path
    unit: str = "items"
    n_items: int = 0
    n_skipped: int = 0  # done by an earlier run
    by_status: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (name, code, message)
    notes: list[str] = field(default_factory=list)
    execution: str = ""  # where the items ran and why (`parallel.choose_execution`)
    seconds: float = 0.0

    @property
    def n_ok(self) -> int:
        return self.by_status.get("ok", 0)

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())


def run_stage(
    stage: Stage,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> StageSummary:
    """Run `stage` over its items not yet done, then summarize all of them.

    Raises ParamsMismatch (from runinfo) before any work when the stage already ran in
    `stage.root` with other parameters, and whatever `stage.weights()` raises for a
    missing or wrong weights file.
    """
    from dfpipe.runtime.parallel import Task, choose_execution, dask_client, run_on_each_worker, run_tasks
    from dfpipe.runtime.runinfo import check_params, record_stage

    started = time.perf_counter()
    root = Path(stage.root)
    params = stage.params()
    check_params(root, stage.name, params, added=stage.added_params)
    weights = stage.weights()
    items = list(stage.items())
    keys = [stage.key(i) for i in items]
    done = stage.done()
    todo = [i for i, k in zip(items, keys) if k not in done]
    todo_keys = {stage.key(i) for i in todo}
    summary = StageSummary(stage.name, root, stage.unit, n_items=len(items), n_skipped=len(items) - len(todo))
    execution = choose_execution(len(todo), workers, scheduler, work_seconds=estimate_work(stage, todo))
    summary.execution = execution.describe()
    log.info("%s: %s", stage.name, summary.execution)
    on_dask = execution.mode in ("local", "scheduler")
    if execution.mode == "scheduler":  # a worker resolves paths against its own folder, not ours
        stage = with_absolute_paths(stage)
    with dask_client(execution.workers, scheduler) if on_dask else contextlib.nullcontext() as client:
        if todo:
            run_on_each_worker(client, stage.setup_worker, client is not None)
        root.mkdir(parents=True, exist_ok=True)
        record_stage(root, stage.name, params, weights=weights, execution=execution.as_record(),
                     added=stage.added_params)
        stage.prepare(items)
        tasks = [
            Task(
                key=k,
                fn=run_item,
                args=(stage, item, client is not None),
                after=tuple(a for a in stage.after(item) if a in todo_keys),
            )
            for item, k in ((i, stage.key(i)) for i in todo)
        ]
        if tasks:
            run_tasks(tasks, client, description=stage.name, progress=progress, steps=stage.steps)
    for outcome in stage.outcomes(keys):
        add_outcome(summary, outcome)
    summary.seconds = time.perf_counter() - started
    return summary


#: string fields of a stage's config that name a file or folder (the rest are Path objects)
PATH_FIELDS = ("weights", "pairs_file", "from_generator", "harmonizer")


def with_absolute_paths(obj: Any) -> Any:
    """A copy of a stage for workers of an existing cluster: every relative path in it,
    its config and its work items made absolute against this process's folder. Workers
    started elsewhere (`dask worker` in another folder, on another machine sharing the
    storage) would otherwise read and write under their own folder: the run would end
    "ok" with its outputs somewhere else."""
    import copy
    import dataclasses

    if isinstance(obj, Path):
        return obj if obj.is_absolute() else obj.resolve()
    if isinstance(obj, list):
        return [with_absolute_paths(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(with_absolute_paths(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name in PATH_FIELDS and isinstance(value, str) and value and not Path(value).is_absolute():
                changes[f.name] = str(Path(value).resolve())
            elif isinstance(value, (Path, list, tuple)) or dataclasses.is_dataclass(value):
                changes[f.name] = with_absolute_paths(value)
        if not changes:
            return obj
        out = copy.copy(obj)
        for name, value in changes.items():
            object.__setattr__(out, name, value)
        return out
    if isinstance(obj, Stage):
        out = copy.copy(obj)
        for name, value in vars(obj).items():
            if isinstance(value, (Path, list, tuple)) or dataclasses.is_dataclass(value):
                object.__setattr__(out, name, with_absolute_paths(value))
        return out
    return obj


def estimate_work(stage: Stage, todo: Sequence[Any]) -> float | None:
    """The stage's estimate of the serial seconds of `todo`: None as soon as one item's is
    unknown, and the sum so far once it reaches SMALL_RUN_SECONDS (a large folder is not
    walked through to the end)."""
    from dfpipe.runtime.parallel import SMALL_RUN_SECONDS

    total = 0.0
    for item in todo:
        seconds = stage.work_seconds(item)
        if seconds is None:
            return None
        total += seconds
        if total >= SMALL_RUN_SECONDS:
            return total
    return total


def run_item(stage: Stage, item: Any, on_worker: bool) -> str:
    """One item under the one error policy; returns its status. Never raises for the item's
    own failures: they become its error row, and the run goes on."""
    try:
        stage.process(item, on_worker)
        return "ok"
    except ItemError as exc:
        log.debug("%s %s: %s (%s)", stage.name, stage.key(item), exc.message, exc.code)
        stage.write_error(item, exc)
    except Exception as exc:  # a bug must not stop the run: an `internal` row, traceback logged
        log.error("%s failed on %s: %s: %s (a bug; --verbose shows the traceback)", stage.name, stage.key(item),
                  type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
        stage.write_error(item, ItemError("internal", f"{type(exc).__name__}: {exc}"))
    return "error"


def add_outcome(summary: StageSummary, outcome: Outcome) -> None:
    summary.by_status[outcome.status] += 1
    summary.counts.update({k: int(v or 0) for k, v in outcome.counts.items()})
    summary.dropped.update({k: int(v or 0) for k, v in outcome.dropped.items()})
    if outcome.note:
        summary.notes.append(f"{outcome.name or outcome.key}: {outcome.note}")
    if outcome.status == "error":
        code = outcome.error_code or "internal"
        summary.errors[code] += 1
        summary.failed.append((outcome.name or outcome.key, code, outcome.error or ""))
