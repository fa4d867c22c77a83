"""The one answer to "which torch device?" for detection, harmonization, training and
evaluation, so `--device` means the same in every command."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device this machine cannot give (CUDA without CUDA) or a name dfpipe does not run on."""


def resolve_device(device: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """`None` / "auto": CUDA when torch sees it, else the CPU; "cpu", "cuda" and "cuda:N" as
    named. `local_rank` (a DDP process's GPU) indexes an unindexed CUDA device; without it
    "cuda" stays torch's current device. Asking for CUDA, or a GPU index, the machine
    lacks is an error, not a quiet fallback to the CPU."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise DeviceError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise DeviceError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(device)!r} was asked for but torch sees no CUDA device; "
                              "use --device cpu or auto")
        if resolved.index is None and local_rank is not None:
            resolved = torch.device("cuda", local_rank)
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise DeviceError(f"device {str(resolved)!r} was asked for but this machine has {count} CUDA device(s)")
    return resolved
