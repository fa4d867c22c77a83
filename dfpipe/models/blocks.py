"""Pieces shared by the M2TR and MAT detectors: an EfficientNet trunk cut at any stage,
feature-size arithmetic, config handling and the binary losses both use."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Conv2dSame

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

C = TypeVar("C")


def build_config(cls: type[C], tiny: bool = False, **overrides: Any) -> C:
    """Make a config dataclass from its defaults (or its `tiny()` preset) plus overrides;
    an unknown key is a clear error rather than a silently ignored flag."""
    base = cls.tiny() if tiny else cls()  # type: ignore[attr-defined]
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; known: {sorted(names)}")
    for key, value in overrides.items():
        if isinstance(getattr(base, key), tuple) and isinstance(value, list):
            value = tuple(value)
        setattr(base, key, value)
    return base


def _conv_out(size: int, conv: nn.Conv2d, dim: int) -> int:
    stride, kernel, dil = conv.stride[dim], conv.kernel_size[dim], conv.dilation[dim]
    if isinstance(conv, Conv2dSame) or conv.padding == "same":
        return math.ceil(size / stride)
    pad = conv.padding[dim]
    return (size + 2 * pad - dil * (kernel - 1) - 1) // stride + 1


def feature_size(size: tuple[int, int], *modules: nn.Module) -> tuple[int, int]:
    """Spatial size after `modules`, from conv arithmetic (no forward pass, so it also
    works on the meta device). Every conv off the main path (squeeze-excite) is 1x1 stride 1
    in EfficientNets, so walking all convs in order is exact."""
    h, w = size
    for mod in modules:
        for conv in mod.modules():
            if isinstance(conv, nn.Conv2d):
                h, w = _conv_out(h, conv, 0), _conv_out(w, conv, 1)
    return h, w


def out_channels(module: nn.Module) -> int:
    """Channels leaving an EfficientNet stage: its last conv is the block's projection."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


class EfficientNetTrunk(nn.Module):
    """A timm EfficientNet split into stem, stages (L1..Ln) and head so detectors can tap
    and cut it at any stage; its modules are timm's, regrouped (`TIMM_PREFIXES`), so a
    timm checkpoint of `name` loads into it (`dfpipe.train.backbone`)."""

    #: timm's state-dict prefixes -> the trunk's (the same modules under other parents)
    TIMM_PREFIXES = (("conv_stem.", "stem.0."), ("bn1.", "stem.1."), ("blocks.", "stages."),
                     ("conv_head.", "head.0."), ("bn2.", "head.1."))

    def __init__(self, name: str, pretrained: bool = False) -> None:
        super().__init__()
        self.name = name
        net = timm.create_model(name, pretrained=pretrained, features_only=False, num_classes=0)
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        self.stages = net.blocks
        self.head = nn.Sequential(net.conv_head, net.bn2)
        self.num_features = net.num_features

    def run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Stages `start`..`stop-1` (0-based; stage i is the paper's L(i+1))."""
        for stage in self.stages[start:stop]:
            x = stage(x)
        return x

    def stage_channels(self, index: int) -> int:
        return out_channels(self.stages[index])

    def stage_size(self, input_size: tuple[int, int], index: int) -> tuple[int, int]:
        """Spatial size after stage `index` (inclusive) for a given input size."""
        return feature_size(input_size, self.stem, *self.stages[: index + 1])


def binary_focal_loss(logit: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
                      alpha: float | None = None) -> torch.Tensor:
    """Focal loss on one fake logit: down-weights easy samples (official M2TR training)."""
    ce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    p_t = torch.exp(-ce)
    loss = (1 - p_t) ** gamma * ce
    if alpha is not None:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.mean()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over DDP ranks when torch.distributed is running, identity otherwise."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        t = t.clone()
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t
