"""keep_freed_memory: per-frame buffers stop page-faulting once freed memory stays in the heap."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys
import numpy as np
from dfpipe.runtime.allocator import keep_freed_memory
applied = keep_freed_memory()
def frame_loop(rounds=30):
    for _ in range(rounds):  # a frame's worth of buffers, allocated, touched and freed
        bufs = [np.ones(1 << 20, np.float32) for _ in range(8)]
        del bufs
frame_loop(2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
frame_loop()
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=clean | env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_frame_buffers_are_reused_without_page_faults():
    tuned = _probe()
    default = _probe(DFPIPE_KEEP_FREED_MEMORY="0")  # glibc's own behaviour
    assert tuned["applied"] and not default["applied"]
    # 30 rounds x 8 buffers x 4 MiB = 30720 pages if every round faults them in again
    assert default["faults"] > 20000
    assert tuned["faults"] < default["faults"] / 10
