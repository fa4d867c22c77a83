"""A small model registry in the manner of timm: `@register_model` + `create_model`.

`CATALOGUE` names every model with its kind and the module whose import registers it, so
listing models (the CLI's `--model` help, `train`'s check) imports no torch, and
`create_model` imports only the one module it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


class Entry(NamedTuple):
    kind: str  # detector (deepfake detectors `train` accepts), face_detector, face_landmarks or harmonizer
    module: str


CATALOGUE: dict[str, Entry] = {
    "m2tr": Entry("detector", "dfpipe.models.m2tr"),
    "m2tr_tiny": Entry("detector", "dfpipe.models.m2tr"),
    "mat": Entry("detector", "dfpipe.models.mat"),
    "mat_tiny": Entry("detector", "dfpipe.models.mat"),
    "dovenet": Entry("harmonizer", "dfpipe.models.dovenet"),
    "retinaface_mobilenet0.25": Entry("face_detector", "dfpipe.models.retinaface"),
    "retinaface_resnet50": Entry("face_detector", "dfpipe.models.retinaface"),
    "facemesh": Entry("face_landmarks", "dfpipe.models.facemesh"),
}

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering `fn(pretrained=False, **cfg)` as the builder of catalogued `name`."""
    if name not in CATALOGUE:
        raise KeyError(f"model {name!r} is not in dfpipe.models.registry.CATALOGUE")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = fn
        return fn

    return deco


def list_models(kind: str | None = None) -> list[str]:
    """Sorted model names, all or of one kind; imports nothing."""
    return sorted(name for name, entry in CATALOGUE.items() if kind is None or entry.kind == kind)


def create_model(name: str, pretrained: bool = False, **cfg) -> nn.Module:
    """Build a registered model; `None` values in cfg are dropped so unset CLI flags
    never override a model's defaults."""
    if name not in CATALOGUE:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    importlib.import_module(CATALOGUE[name].module)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    return _MODELS[name](pretrained=pretrained, **cfg)


def model_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model a checkpoint was trained as (never downloads weights) in eval mode."""
    model = create_model(ckpt["model_name"], pretrained=False, **ckpt["model_kwargs"])
    model.load_state_dict(ckpt["model"], strict=True)
    return model.to(device).eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
