"""Checkpoints that load with `torch.load(weights_only=True)`.

Everything in a checkpoint is tensors or plain Python values (dicts, lists, numbers,
strings): the model's name and constructor options, the training options, optimizer,
scheduler and scaler states, and the RNG states of Python, NumPy and torch, so a resumed
run continues exactly where the saved one stopped. Files are written to a temporary
name and renamed, so a killed run never leaves a half-written `last.pt`.
"""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from dfpipe.models.registry import create_model

FORMAT = "dfpipe.train/1"


class CheckpointError(ValueError):
    """A file is not a dfpipe training checkpoint."""


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        torch.save({"format": FORMAT, **payload}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
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


def model_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model a checkpoint was trained as (never downloads weights) in eval mode."""
    model = create_model(ckpt["model_name"], pretrained=False, **ckpt["model_kwargs"])
    model.load_state_dict(ckpt["model"], strict=True)
    return model.to(device).eval()
