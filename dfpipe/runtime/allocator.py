"""Keep freed memory in the process on glibc, so per-frame buffers stop page-faulting.

Decoding, resizing and the detector allocate and free buffers of a few MiB for every
frame. glibc serves blocks that large with mmap and hands them back with munmap, so each
new frame faults its pages in again: at 720p that was ~0.6 s of kernel time per video,
and two workers faulting at once slowed each other (bench/extract.py, docs/benchmarks.md).
Raising the mmap and trim thresholds keeps those blocks in the heap for reuse; peak
memory stays the same because the same sizes come back every frame.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20  # blocks below this come from the heap (a 4K RGB frame is 25 MiB)
TRIM_THRESHOLD = 256 << 20  # free heap top kept before it is returned to the kernel

_done = False


def keep_freed_memory() -> bool:
    """Apply the thresholds once per process; True when they are in effect. A no-op off
    glibc, with DFPIPE_KEEP_FREED_MEMORY=0, and when the user set MALLOC_MMAP_THRESHOLD_ /
    MALLOC_TRIM_THRESHOLD_ themselves."""
    global _done
    if _done:
        return True
    if (not sys.platform.startswith("linux") or os.environ.get("DFPIPE_KEEP_FREED_MEMORY") == "0"
            or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):  # musl or another libc
        return False
    _done = ok
    return ok
