"""The threads beside the detector on the serial path: decoding ahead and encoding crops.

FFmpeg and OpenCV release the GIL, so on a machine without Dask workers the next frames
decode, and the last crops encode, while torch runs the detector on the current batch.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def torch_beside_pipeline() -> Iterator[None]:
    """Leave one core to the decode and encode threads while the detector runs.

    With every core in torch's thread pool, those threads pre-empt a torch thread and each
    parallel op waits for it; the small detector gains only ~1.35x from its second thread
    on 2 cores, so giving that core to decoding and PNG encoding is faster overall
    (bench/extract.py part c). The caller's setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(before - 1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def encoded_rows(rows: Iterator[dict[str, Any]], encode: Callable[[Any], bytes], workers: int, ahead: int) -> Iterator[dict[str, Any]]:
    """Encode each row's crop (PNG costs about as much per face as detection per frame).

    With `workers`, encoding runs in a thread (OpenCV releases the GIL) while the next
    frames are detected; rows still come out in order and at most a few batches ahead.
    """
    if not workers:
        for row in rows:
            row["image"] = encode(row["image"])
            yield row
        return
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dfpipe-encode") as pool:
        for row in rows:
            pending.append((row, pool.submit(encode, row["image"])))
            while pending and (pending[0][1].done() or len(pending) > ahead):
                done_row, fut = pending.popleft()
                done_row["image"] = fut.result()
                yield done_row
        while pending:
            done_row, fut = pending.popleft()
            done_row["image"] = fut.result()
            yield done_row


def chain_end(frames: Iterator) -> Iterator:
    """The frames, then a None that tells the batcher to flush."""
    yield from frames
    yield None


def prefetch(items: Iterator, depth: int) -> Iterator:
    """Run `items` in a background thread, at most `depth` ahead.

    FFmpeg decodes without holding the GIL, so the next frames decode while the detector
    works on the current batch; the bounded queue keeps memory flat. Exceptions (a
    truncated file after some frames) reach the consumer in order.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:  # handed to the consumer
            q.put((done, exc))

    thread = threading.Thread(target=produce, name="dfpipe-decode", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
