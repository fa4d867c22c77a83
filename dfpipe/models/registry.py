"""A small model registry in the manner of timm: `@register_model` + `create_model`."""

from __future__ import annotations

import importlib
from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}

# modules that register models when imported; imported lazily by create_model
_MODEL_MODULES = ("dfpipe.models.m2tr", "dfpipe.models.mat", "dfpipe.models.dovenet", "dfpipe.models.retinaface")


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = fn
        return fn

    return deco


def _load_all() -> None:
    for mod in _MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a real missing dependency inside the module
                raise


def list_models() -> list[str]:
    _load_all()
    return sorted(_MODELS)


def create_model(name: str, pretrained: bool = False, **cfg) -> nn.Module:
    """Build a registered model; `None` values in cfg are dropped so unset CLI flags
    never override a model's defaults."""
    _load_all()
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}")
    cfg = {k: v for k, v in cfg.items() if v is not None}
    return _MODELS[name](pretrained=pretrained, **cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
