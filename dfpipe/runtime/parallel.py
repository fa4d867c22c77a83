"""Run a per-item function over many items: serially, on a LocalCluster, or on an
existing Dask cluster, with one rich progress bar.

The per-item function is plain Python and returns a small summary; large outputs are
written by the function itself (part files), so nothing large passes through the
scheduler. `workers=0` is the identical serial path, handy for debugging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from dfpipe.runtime.progress import LiveSteps, StepEvents, StepsRow, item_steps, progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One work item: `fn(*args)`; `after` names keys of tasks that must finish first."""

    key: str
    fn: Callable[..., Any]
    args: tuple
    after: tuple[str, ...] = ()


class ClusterError(RuntimeError):
    """The Dask cluster failed the run, not an item: a scheduler that cannot be reached
    (`code` 2, before any work) or one lost part-way (`code` 1). Items finished before it
    are kept, so the same command resumes once the cluster is back."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


#: how long to wait for `--scheduler` to answer before saying it cannot be reached
#: (distributed's own default is 30 s, then a traceback)
CONNECT_TIMEOUT = "10s"


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


@dataclass(frozen=True)
class Execution:
    """How a run's items run and why: shown in the end-of-run summary, kept in run.json."""

    mode: str  # serial / local (a LocalCluster we start) / scheduler (an existing cluster) / none
    workers: int  # LocalCluster processes; 0 otherwise
    reason: str

    def describe(self) -> str:
        if self.mode == "local":
            return f"local cluster: {self.workers} worker{'s' if self.workers != 1 else ''} ({self.reason})"
        return f"{self.mode}: {self.reason}"

    def as_record(self) -> dict[str, Any]:
        return {"mode": self.mode, "workers": self.workers, "reason": self.reason}


#: below this many seconds of serial work a LocalCluster cannot pay for itself: its start-up
#: and the models loaded once per worker cost 3-5 s on a 2-core machine, about what two
#: workers save on 10 s of work (bench/small_run.py: 11 photos, 9.1 s serial, 11.2 s on 2 workers)
SMALL_RUN_SECONDS = 10.0


def choose_execution(n_items: int, workers: int | None = None, scheduler: str | None = None,
                     cores: int | None = None, work_seconds: float | None = None) -> Execution:
    """Where `n_items` items (those still to do) run.

    `--scheduler` and an explicit `--workers N` are obeyed as given (0 = serial). Left to
    us (`workers=None`), the run is serial when a cluster could not run two items side by
    side, that is with at most one item to do or one core: a LocalCluster made a one-clip
    `dfpipe extract` 1.5x slower (1.3-2.7 s more, bench/small_run.py; issue 14 saw 8-12 s
    on a loaded machine), and the serial path already keeps every core busy on one item
    (decoding and encoding threads beside torch).
    It is serial too when the stage can tell the run is small (`work_seconds`, its rough
    estimate of the serial time, under SMALL_RUN_SECONDS: a dozen photos or extracted
    frames); None means it cannot tell (videos of unknown length).
    Otherwise one worker per core, but no more workers than items (each one loads the
    models before its first item)."""
    if scheduler is not None:
        return Execution("scheduler", 0, scheduler)
    if n_items == 0:
        return Execution("none", 0, "nothing to do")
    if workers is not None:
        if workers == 0:
            return Execution("serial", 0, "--workers 0")
        return Execution("local", workers, f"--workers {workers}")
    cores = cores or default_workers()
    if n_items == 1:
        return Execution("serial", 0, "1 item to do")
    if cores == 1:
        return Execution("serial", 0, "1 core")
    if work_seconds is not None and work_seconds < SMALL_RUN_SECONDS:
        return Execution("serial", 0, f"{n_items} small items, about {max(1, round(work_seconds))} s of work")
    n = min(cores, n_items)
    return Execution("local", n, f"{n_items} items to do, {cores} cores")


def set_worker_threads(n: int = 1) -> None:
    """One process per core: keep torch / OpenCV from oversubscribing the cores (and keep
    freed frame buffers in the process, see runtime/allocator.py)."""
    import cv2
    import torch

    from dfpipe.runtime.allocator import keep_freed_memory

    keep_freed_memory()

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    cv2.setNumThreads(n)
    os.environ["DFPIPE_DECODE_THREADS"] = str(n)


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A distributed Client: connect to `scheduler`, or start a LocalCluster with one
    single-threaded process per worker. Yields None for the serial path (workers == 0)."""
    if scheduler is None and workers == 0:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with quiet_dask_logs():
            client = connect(scheduler)
            try:
                yield client
            finally:
                with contextlib.suppress(Exception):  # a lost scheduler: the run's own error says so
                    client.close(timeout=5)
        return
    import dask

    from dfpipe.runtime.allocator import worker_environ

    n = workers or default_workers()
    # worker processes inherit the environment: one OpenMP/MKL thread each
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # the nanny sets its own variables when it spawns a worker (MALLOC_TRIM_THRESHOLD_=65536
    # among them): ours replace those, see runtime/allocator.py
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **worker_environ()}
    try:
        with quiet_dask_logs(logging.WARNING), dask.config.set(local_cluster_settings(spawn_env)), LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # the scheduler serves health and metrics over HTTP even without a dashboard,
            # on port 8787 unless told: a second run at the same time warned about the port
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            memory_limit=0,
            silence_logs=logging.ERROR,
        ) as cluster, Client(cluster) as client:
            yield client
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def quiet_dask_logs(level: int = logging.CRITICAL) -> Iterator[None]:
    """distributed logs into the CLI's output: the LocalCluster's start and stop at INFO
    (silence_logs quiets only the workers), a lost scheduler's reconnect attempts at ERROR
    (the run's ClusterError says it once, with what to do). Kept under --verbose."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    # distributed gives some of its loggers their own level (distributed.client: warning),
    # so the parent's level alone does not quiet them
    names = ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]
    loggers = [logging.getLogger(n) for n in names]
    old_levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.level))
    try:
        yield
    finally:
        for lg, old in zip(loggers, old_levels):
            lg.setLevel(old)


def connect(scheduler: str) -> Any:
    """A Client of the existing cluster at `scheduler`, or ClusterError(code 2) saying how
    to get one, within CONNECT_TIMEOUT."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}: {exc}); start one with "
            "`dask scheduler` and its workers with `dask worker ADDRESS` (docs/architecture.md, 'On a cluster'), "
            "or leave out --scheduler to run on this machine", code=2) from exc


def lost_cluster(client: Any, exc: BaseException, done: int | None = None, total: int = 0) -> ClusterError | None:
    """What a failed future means for the run: a ClusterError when the cluster, not the
    item, failed (the scheduler gone, or a worker killed too often on one item); None for
    the item's own exception, which is a bug and is raised as it is."""
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError

    where = getattr(getattr(client, "scheduler", None), "address", None) or "the scheduler"
    resume = ("re-run the same command once the cluster is back" if done is None else
              f"{done} of {total} items finished and are kept: re-run the same command to resume")
    if isinstance(exc, KilledWorker):
        return ClusterError(f"Dask workers died while running one item, more than the cluster allows "
                            f"(KilledWorker: {exc}); out of memory? {resume}", code=1)
    if isinstance(exc, (FutureCancelledError, OSError)) or type(exc).__name__ in ("CancelledError", "CommClosedError"):
        return ClusterError(f"lost the connection to the Dask scheduler at {where} ({type(exc).__name__}); {resume}",
                            code=1)
    return None


def local_cluster_settings(spawn_env: dict[str, str]) -> dict[str, Any]:
    """Dask settings for the LocalCluster we start: its housekeeping is sized for
    interactive clusters of short tasks, ours runs one CPU-bound video per task and core.

    On 2 cores, an idle 2-worker cluster used 2.9 s of CPU every 20 s with the defaults
    and 0.34 s with these (bench/extract.py part i): CPU the workers lose to the scheduler,
    the nannies and their own event loops once every core is busy.
    """
    return {
        "distributed.nanny.pre-spawn-environ": spawn_env,
        # the statistical profiler samples each worker's stack every 10 ms, for a
        # dashboard we do not start
        "distributed.worker.profile.enabled": False,
        # every server (scheduler, nannies, workers) wakes every 20 ms to time its event loop;
        # once a second still catches a loop blocked for the 3 s that trigger the warning
        "distributed.admin.tick.interval": "1s",
        "distributed.admin.system-monitor.interval": "2s",
        # a worker gets its next video when it is free, not one queued behind the one it
        # runs: with minutes-long tasks the round trip is nothing, and the last videos go
        # to whichever worker finishes first
        "distributed.scheduler.worker-saturation": 1.0,
    }


def run_tasks(
    tasks: Sequence[Task],
    client: Any | None,
    description: str = "working",
    progress: bool = True,
    on_result: Callable[[str, Any], None] | None = None,
    steps: str | None = None,
) -> dict[str, Any]:
    """Run tasks (respecting `after`), return {key: result}. A task that raises is the
    function's bug: per-item functions turn bad input into error rows themselves.

    `steps` names the sub-steps the items report (`progress.step`, e.g. "frames"): a second
    row of the bar counts them as they happen, on the serial path and on Dask (worker
    events, at most twice a second per item)."""
    results: dict[str, Any] = {}
    with progress_bar(progress) as bar:
        tid = bar.add_task(description, total=len(tasks))
        row = StepsRow(bar, steps) if steps else None
        if client is None:
            for task in _dependency_order(tasks):
                with item_steps(row.change if row else None) as counted:
                    results[task.key] = task.fn(*task.args)
                if row:
                    row.settle(counted)
                if on_result:
                    on_result(task.key, results[task.key])
                bar.advance(tid)
            return results
        from distributed import as_completed

        topic = f"dfpipe-steps-{uuid.uuid4().hex}" if row else None  # this run's own: a shared cluster runs others
        live = LiveSteps(row) if row else None
        if topic:
            client.subscribe_topic(topic, live.on_event)
        try:
            futures: dict[str, Any] = {}
            for task in _dependency_order(tasks):
                deps = [futures[k] for k in task.after if k in futures]
                futures[task.key] = client.submit(
                    _call_after, task.fn, task.args, deps, topic, task.key, key=f"{task.fn.__name__}-{task.key}",
                    pure=False,
                )
            by_future = {f.key: k for k, f in futures.items()}
            for fut in as_completed(list(futures.values())):
                key = by_future[fut.key]
                try:
                    results[key], n_steps = fut.result()
                except BaseException as exc:
                    lost = lost_cluster(client, exc, len(results), len(tasks))
                    if lost is None:
                        raise
                    raise lost from exc
                if live:
                    live.finish(key, n_steps)
                if on_result:
                    on_result(key, results[key])
                bar.advance(tid)
        finally:
            if topic:
                with contextlib.suppress(Exception):  # the scheduler may be gone (ClusterError above)
                    client.unsubscribe_topic(topic)
    return results


def run_on_each_worker(client: Any | None, fn: Callable[..., Any], *args: Any) -> None:
    """Call `fn(*args)` once in every worker process (in this process when `client` is
    None), as an ordinary task: for loading a model before the first work item, so a bad
    weights file fails the run at once (its exception is raised here) and the first
    items do not each wait for the load. Workers that join later load on first use."""
    if client is None:
        fn(*args)
        return
    workers = list(client.ncores())  # every worker (scheduler_info lists only a few in some versions)
    if not workers:
        raise ClusterError(f"the Dask scheduler at {client.scheduler.address} has no workers: start them with "
                           f"`dask worker {client.scheduler.address}`", code=2)
    futures = [client.submit(fn, *args, workers=[w], allow_other_workers=False, pure=False) for w in workers]
    try:
        client.gather(futures)
    except BaseException as exc:
        lost = lost_cluster(client, exc)
        if lost is None:
            raise
        raise lost from exc


def _call_after(fn: Callable[..., Any], args: tuple, _deps: list, topic: str | None = None,
                key: str = "") -> tuple[Any, int]:
    """Dask resolves `_deps` (upstream futures) before calling: that is the ordering.
    Steps go to the client's bar as events on `topic` while the item runs; the result comes
    back with the steps the item reported, to settle the bar."""
    with item_steps(StepEvents(topic, key) if topic else None) as counted:
        result = fn(*args)
    return result, counted.done


def _dependency_order(tasks: Sequence[Task]) -> list[Task]:
    keys = {t.key for t in tasks}
    done: set[str] = set()
    ordered: list[Task] = []
    pending = list(tasks)
    while pending:
        ready = [t for t in pending if all(a in done or a not in keys for a in t.after)]
        if not ready:
            raise ValueError("circular task dependencies")
        for t in ready:
            ordered.append(t)
            done.add(t.key)
        pending = [t for t in pending if t.key not in done]
    return ordered
