"""Fake probabilities of a model over a face stream or over decoded crops.

Shared by validation inside training, `evaluate` and `predict`, so all three score faces
exactly the same way (eval mode, no augmentation, sigmoid of the fake logit).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn

from dfpipe.train.data import FaceStream, ImageSpec, make_loader, resize_to, to_tensor


def autocast(device: torch.device, enabled: bool):
    """Mixed precision on CUDA only; CPU runs stay in float32 (and deterministic)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


@torch.no_grad()
def score_stream(
    model: nn.Module, stream: FaceStream, batch: int, device: torch.device, workers: int = 0, amp: bool = False,
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, fake probabilities) of every face this rank's share of `stream` holds."""
    was_training = model.training
    model.eval()
    rows, probs = [], []
    stream.set_epoch(0)
    for b in make_loader(stream, batch, workers, pin_memory=device.type == "cuda"):
        with autocast(device, amp):
            logit = model(b["image"].to(device, non_blocking=True))["logit"]
        probs.append(torch.sigmoid(logit.float()).cpu().numpy())
        rows.append(b["row"].numpy())
        if progress is not None:
            progress(len(b["row"]))
    model.train(was_training)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(rows), np.concatenate(probs).astype(np.float64)


@torch.no_grad()
def score_stream_features(
    model: nn.Module, stream: FaceStream, batch: int, device: torch.device, workers: int = 0, amp: bool = False,
    progress=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`score_stream` that also keeps each face's pooled feature (`out["feature"]`, the
    vector the classifier reads): (row ids, fake probabilities, float32 features N x D).
    Temporal heads (dfpipe.train.fusion) train on these."""
    was_training = model.training
    model.eval()
    rows, probs, feats = [], [], []
    stream.set_epoch(0)
    for b in make_loader(stream, batch, workers, pin_memory=device.type == "cuda"):
        with autocast(device, amp):
            out = model(b["image"].to(device, non_blocking=True))
        probs.append(torch.sigmoid(out["logit"].float()).cpu().numpy())
        feats.append(out["feature"].float().cpu().numpy())
        rows.append(b["row"].numpy())
        if progress is not None:
            progress(len(b["row"]))
    model.train(was_training)
    if not rows:
        width = int(getattr(model, "num_features", 0))
        return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros((0, width), np.float32)
    return np.concatenate(rows), np.concatenate(probs).astype(np.float64), np.concatenate(feats).astype(np.float32)


@torch.no_grad()
def score_images_features(model: nn.Module, images: Iterable[np.ndarray], spec: ImageSpec, device: torch.device,
                          batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(fake probability, pooled feature) of each RGB uint8 crop (any size; resized like
    training data): probabilities float64 N, features float32 N x D (the vector the
    classifier reads), for a temporal head (dfpipe.train.fusion) over a video's tracks."""
    model.eval()
    probs, feats, chunk = [], [], []

    def flush() -> None:
        x = torch.stack([to_tensor(resize_to(im, spec.height, spec.width), spec) for im in chunk]).to(device)
        out = model(x)
        probs.append(torch.sigmoid(out["logit"].float()).cpu().numpy())
        feats.append(out["feature"].float().cpu().numpy())
        chunk.clear()

    for im in images:
        chunk.append(im)
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    if not probs:
        return np.zeros(0, np.float64), np.zeros((0, int(getattr(model, "num_features", 0))), np.float32)
    return np.concatenate(probs).astype(np.float64), np.concatenate(feats).astype(np.float32)
