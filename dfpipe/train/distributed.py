"""DDP plumbing: torchrun's env:// variables, or spawning N local processes.

Under `torchrun` the variables RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT
are set and each process calls `init()`. `spawn()` does what torchrun does for one
machine, so `dfpipe train --gpus N` works without it. The backend is NCCL on CUDA and gloo
on CPU (which is how the tests run DDP on a laptop).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from dfpipe.runtime.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init(device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun / spawn; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", init_method="env://",
                                rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, in rank order (a list of one outside DDP)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(local_rank: int, nprocs: int, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nprocs))
    fn(**kwargs)


def spawn(fn: Callable[..., Any], nprocs: int, **kwargs: Any) -> None:
    """Run `fn(**kwargs)` in `nprocs` local processes joined as one process group."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(_free_port())
    torch.multiprocessing.spawn(_entry, args=(nprocs, fn, kwargs), nprocs=nprocs, join=True)
