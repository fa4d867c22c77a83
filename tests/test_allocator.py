"""Freed frame buffers are reused instead of page-faulting, in our processes and in Dask
workers (whose nanny would otherwise start them with MALLOC_TRIM_THRESHOLD_=65536)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dfpipe.runtime.allocator import TRIM_THRESHOLD, worker_environ
from dfpipe.runtime.parallel import dask_client

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")

# a frame's worth of buffers, allocated, touched and freed, in a thread other than the main
# one (as a Dask task runs); minor page faults counted over 30 frames
PROBE = """
import json, resource, sys, threading
import numpy as np
from dfpipe.runtime.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "apply" else False
def frames(n):
    for _ in range(n):
        bufs = [np.ones(1 << 20, np.float32) for _ in range(8)]
        del bufs
result = {}
def work():
    frames(2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    frames(30)
    result["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
t = threading.Thread(target=work); t.start(); t.join()
print(json.dumps({"applied": applied, **result}))
"""


def _probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "DFPIPE_KEEP_FREED_MEMORY"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=clean | env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_frame_buffers_are_reused_without_page_faults():
    # 30 frames x 8 buffers x 4 MiB = 30720 pages when every frame faults them in again
    dask_default = _probe("env", MALLOC_TRIM_THRESHOLD_="65536")
    glibc_default = _probe("env")
    assert dask_default["faults"] > 20000 and glibc_default["faults"] > 20000
    started_with_ours = _probe("env", **worker_environ())
    applied_at_runtime = _probe("apply", MALLOC_TRIM_THRESHOLD_="65536")  # overrides Dask's
    assert applied_at_runtime["applied"]
    for tuned in (started_with_ours, applied_at_runtime):
        assert tuned["faults"] < dask_default["faults"] / 10
    opted_out = _probe("apply", DFPIPE_KEEP_FREED_MEMORY="0")
    assert not opted_out["applied"] and opted_out["faults"] > 20000


def test_local_cluster_workers_start_with_our_settings():
    with dask_client(1) as client:
        (value,) = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()
        (arenas,) = client.run(os.environ.get, "MALLOC_ARENA_MAX").values()
    assert value == str(TRIM_THRESHOLD) and arenas == "1"
