"""Checkpoint files for every trained dfpipe model, in one format that loads with
`torch.load(weights_only=True)`.

Everything in a checkpoint is tensors or plain Python values (dicts, lists, numbers,
strings): the model's name and constructor options, the training options, optimizer,
scheduler and scaler states, and the RNG states of Python, NumPy and torch, so a resumed
run continues exactly where the saved one stopped. Files are written through
`atomic_write`, so a killed run never leaves a half-written `last.pt`. What a checkpoint
means (which model, which keys) is for `dfpipe.models` to read.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfpipe.runtime.files import atomic_write

#: the tag every dfpipe checkpoint carries (named when only the detector trainer wrote
#: them; kept so that existing runs still load)
FORMAT = "dfpipe.train/1"


class CheckpointError(ValueError):
    """A file is not a dfpipe checkpoint (or not of the model asked for)."""


def plain(value: Any) -> Any:
    """Tuples, dataclass-free dicts and numpy scalars -> JSON-like Python values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain values."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    out = {
        "python": [version, list(state), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    version, py, gauss = state["python"]
    random.setstate((version, tuple(py), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """`payload` tagged with FORMAT, written atomically to `path`."""
    with atomic_write(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A dfpipe checkpoint read with weights_only=True; CheckpointError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a loadable checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dfpipe training checkpoint (expected format {FORMAT})")
    return ckpt
