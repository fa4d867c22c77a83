"""Keep freed memory in the process on glibc, so per-frame buffers stop page-faulting.

Decoding, resizing and the detector allocate and free buffers of a few MiB for every
frame. glibc hands such blocks back to the kernel (munmap, or trimming and deleting
per-thread heaps), so each new frame faults its pages in again. Dask's nanny makes it
worse: it starts workers with MALLOC_TRIM_THRESHOLD_=65536. On an extract worker that was
1.75 million page faults and ~5 s of kernel time per 720p video, about half of the
video's wall time (bench/extract.py part d, docs/benchmarks.md). Raising the mmap and trim
thresholds and keeping one arena lets those blocks be reused; peak memory stays the same
because the same sizes come back every frame. `DFPIPE_KEEP_FREED_MEMORY=0` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 64 << 20  # blocks below this come from the heap (a 4K RGB frame is 25 MiB)
TRIM_THRESHOLD = 256 << 20  # free heap top kept before it is returned to the kernel
ARENA_MAX = 1  # per-thread arenas delete whole heaps when they empty, whatever the thresholds

_done = False


def _enabled() -> bool:
    return sys.platform.startswith("linux") and os.environ.get("DFPIPE_KEEP_FREED_MEMORY") != "0"


def worker_environ() -> dict[str, str]:
    """The same settings as environment variables, for worker processes we start (glibc
    reads them at start-up, before any thread has its own arena)."""
    if not _enabled():
        return {}
    return {"MALLOC_ARENA_MAX": str(ARENA_MAX), "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
            "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def keep_freed_memory() -> bool:
    """Apply the settings to this running process, once; True when they are in effect.

    Overrides MALLOC_* variables from the environment on purpose (see the module
    docstring). Threads that already have an arena keep it: processes we start get
    `worker_environ()` instead."""
    global _done
    if _done:
        return True
    if not _enabled():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = all(libc.mallopt(param, value) == 1 for param, value in
                 ((_M_ARENA_MAX, ARENA_MAX), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
    except (OSError, AttributeError):  # musl or another libc
        return False
    _done = ok
    return ok
