"""Where a detector's backbone trunk starts from.

- `--pretrained`: timm's ImageNet weights of the trunk's EfficientNet. Online timm fetches
  them (into the Hugging Face cache); offline (`DFPIPE_OFFLINE=1` or `HF_HUB_OFFLINE=1`) they
  are read from that cache, or from timm's older torch-hub cache, and never downloaded. Not
  there: a `TrainError` saying where it looked and how to fill the cache.
- `--backbone-weights FILE`: a local checkpoint of the same timm network (`.pth`/`.pt`,
  read with `torch.load(weights_only=True)`: a raw state dict or one under `state_dict` /
  `model`, EMA weights first as timm's `load_state_dict` picks them; or `.safetensors`).
  `--backbone-sha256 HEX` pins it. Its classifier is ignored; a file of which fewer than
  `MIN_MATCH` of the trunk's tensors match by name and shape is refused with what differs.
  The file's sha256 is recorded as `backbone_sha256` in config.json and every checkpoint.
- neither: random weights, the offline default. Such from-scratch runs check the plumbing;
  their numbers are not results.

A resumed run builds its model without any of this: every weight is in last.pt.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn

from dfpipe.models.blocks import EfficientNetTrunk
from dfpipe.models.registry import create_model
from dfpipe.runtime.weights import sha256_of
from dfpipe.train.trainer import TrainConfig, TrainError, offline

#: the share of the trunk's tensors (running BN statistics included, step counters not) a
#: --backbone-weights file must supply with the right name and shape
MIN_MATCH = 0.9
_SHOW = 4  # keys named per kind of difference


def _trunk(model: nn.Module) -> EfficientNetTrunk:
    trunk = getattr(model, "trunk", None)
    if not isinstance(trunk, EfficientNetTrunk):
        raise TrainError(f"{type(model).__name__} has no EfficientNet trunk to load backbone weights into")
    return trunk


def _to_trunk_name(key: str) -> str:
    for timm_prefix, ours in EfficientNetTrunk.TIMM_PREFIXES:
        if key.startswith(timm_prefix):
            return ours + key[len(timm_prefix):]
    return key


def _to_timm_name(key: str) -> str:
    for timm_prefix, ours in EfficientNetTrunk.TIMM_PREFIXES:
        if key.startswith(ours):
            return timm_prefix + key[len(ours):]
    return key


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, by timm's own reader (see the module docstring)."""
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path), use_ema=True, device="cpu", weights_only=True)
    except Exception as exc:  # a pickle weights_only refuses, a truncated file, not a checkpoint at all
        raise TrainError(f"--backbone-weights {path}: not a readable checkpoint ({type(exc).__name__}: {exc}). "
                         "Give a state dict saved with torch.save (.pth, .pt) or a .safetensors file") from None
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise TrainError(f"--backbone-weights {path}: holds no tensors (expected a state dict, raw or under "
                         "'state_dict' or 'model')")
    return tensors


@dataclass
class Match:
    """How a state dict fits a trunk: what loads, and what does not."""

    loaded: dict[str, torch.Tensor]  # trunk names
    total: int  # trunk tensors that count
    missing: list[str] = field(default_factory=list)  # timm names the trunk wants and the file lacks
    mismatched: list[str] = field(default_factory=list)  # "name (file shape vs trunk shape)"
    unexpected: list[str] = field(default_factory=list)  # file keys the trunk has no place for
    counted: int = 0  # loaded tensors that count towards `total`

    def ok(self) -> bool:
        return self.total > 0 and self.counted >= MIN_MATCH * self.total

    def describe(self) -> str:
        parts = [f"{self.counted} of {self.total} trunk tensors match by name and shape"]
        for what, keys in (("missing", self.missing), ("shape differs", self.mismatched),
                           ("unexpected", self.unexpected)):
            if keys:
                more = f", ... ({len(keys)} in all)" if len(keys) > _SHOW else ""
                parts.append(f"{what}: {', '.join(keys[:_SHOW])}{more}")
        return "; ".join(parts)


def match(trunk: nn.Module, state: dict[str, torch.Tensor]) -> Match:
    """Fit `state` (timm's names, the trunk's own, or a dfpipe detector's `trunk.*`) to
    `trunk`; the classifier and BatchNorm step counters count neither way."""
    if any(k.startswith("trunk.") for k in state):  # a dfpipe detector checkpoint's "model"
        got = {k.removeprefix("trunk."): v for k, v in state.items() if k.startswith("trunk.")}
    else:
        got = {_to_trunk_name(k): v for k, v in state.items()}
    want = trunk.state_dict()
    counts = [k for k in want if not k.endswith("num_batches_tracked")]
    loaded = {k: v for k, v in got.items() if k in want and tuple(v.shape) == tuple(want[k].shape)}
    return Match(
        loaded=loaded,
        total=len(counts),
        counted=sum(k in loaded for k in counts),
        missing=[_to_timm_name(k) for k in counts if k not in got],
        mismatched=[f"{_to_timm_name(k)} ({tuple(got[k].shape)} vs {tuple(want[k].shape)})"
                    for k in counts if k in got and k not in loaded],
        unexpected=[_to_timm_name(k) for k in got if k not in want
                    and not k.endswith("num_batches_tracked") and not k.startswith("classifier.")],
    )


def load_backbone(trunk: nn.Module, path: str | Path, what: str = "--backbone-weights") -> Match:
    """Load the file's matching tensors into `trunk` (a meta-device trunk is only checked);
    refuse a file that fits poorly."""
    m = match(trunk, read_state_dict(path))
    name = getattr(trunk, "name", "the backbone")
    if not m.ok():
        raise TrainError(f"{what} {path} is not a checkpoint of {name} (need {MIN_MATCH:.0%} of the trunk's "
                         f"tensors): {m.describe()}")
    if next(iter(trunk.state_dict().values())).device.type != "meta":
        trunk.load_state_dict(m.loaded, strict=False)
    return m


# --------------------------------------------------------------------------- timm's cache


def _offline_vars() -> str:
    return ", ".join(f"{v}=1" for v in ("DFPIPE_OFFLINE", "HF_HUB_OFFLINE") if os.environ.get(v) == "1")


def _hf_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def cached_pretrained(backbone: str) -> tuple[Path | None, list[str]]:
    """timm's ImageNet weights of `backbone` on this machine, without any network: the
    Hugging Face cache (where timm keeps them), then timm's older torch-hub cache; with
    the places looked in."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    pcfg = get_pretrained_cfg(backbone)
    looked: list[str] = []
    if pcfg is None:
        return None, looked
    if pcfg.hf_hub_id:
        repo, _, revision = pcfg.hf_hub_id.partition("@")
        names = [pcfg.hf_hub_filename] if pcfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo, name, revision=revision or None)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found), looked
        looked.append(f"the Hugging Face cache {_hf_cache()} for {repo} ({', '.join(names)})")
    if pcfg.url:
        old = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(pcfg.url).path)
        if old.is_file():
            return old, looked
        looked.append(f"timm's torch-hub cache {old}")
    return None, looked


def missing_pretrained(backbone: str, looked: list[str], why: str) -> TrainError:
    where = " and ".join(looked) or f"nowhere: timm knows no ImageNet weights for {backbone}"
    return TrainError(
        f"--pretrained: timm's ImageNet weights of {backbone} are not on this machine and {why}. Looked in {where}. "
        f"Fill the cache on a machine with internet (python -c \"import timm; timm.create_model('{backbone}', "
        "pretrained=True)\") and copy its Hugging Face cache here (or point HF_HOME at a copy), or pass "
        f"--backbone-weights FILE (a timm checkpoint of {backbone}, .pth or .safetensors; pin it with "
        "--backbone-sha256 HEX)"
    )


# --------------------------------------------------------------------------- the trainer's hooks


def check_backbone(cfg: TrainConfig, resume: bool) -> list[str]:
    """Before any work: the options agree, the file is there, matches its pin and fits the
    trunk (checked on a meta-device model), or offline --pretrained finds timm's cache.
    Sets `cfg.backbone_sha256` to the file's hash. Returns notes for the summary."""
    if cfg.backbone_sha256 is not None and cfg.backbone_weights is None:
        raise TrainError("--backbone-sha256 pins a --backbone-weights FILE; give the file too")
    if cfg.backbone_weights is not None and cfg.pretrained:
        raise TrainError("--pretrained and --backbone-weights both choose the backbone's weights; give one")
    if resume:  # every weight is in last.pt; restore carries the run's backbone record over
        return ["--resume: the weights come from last.pt; --backbone-weights is not read"] if cfg.backbone_weights else []
    if cfg.backbone_weights is None and not (cfg.pretrained and offline()):
        return []
    with torch.device("meta"):
        trunk = _trunk(create_model(cfg.model_name(), pretrained=False, **cfg.model_kwargs()))
    if cfg.backbone_weights is None:  # offline --pretrained
        path, looked = cached_pretrained(trunk.name)
        if path is None:
            raise missing_pretrained(trunk.name, looked, f"offline ({_offline_vars()}) nothing is downloaded")
        return [f"--pretrained ({_offline_vars()}): timm's ImageNet weights of {trunk.name} from {path}"]
    path = Path(cfg.backbone_weights)
    if not path.is_file():
        raise TrainError(f"--backbone-weights {path}: no such file")
    pin = cfg.backbone_sha256
    if pin is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", pin.strip()):
        raise TrainError(f"--backbone-sha256 must be 64 hex digits, got {pin!r}")
    got = sha256_of(path)
    if pin is not None and got != pin.strip().lower():
        raise TrainError(f"--backbone-weights {path} has sha256 {got}, but --backbone-sha256 pins {pin.strip().lower()}: "
                         "not the pinned file; replace the file or correct the pin")
    cfg.backbone_sha256 = got
    m = load_backbone(trunk, path)
    return [f"backbone {trunk.name} from {path} (sha256 {got}): {m.describe()}"]


def build_model(cfg: TrainConfig, resume: bool = False) -> nn.Module:
    """The run's model (on the CPU), its trunk started as `cfg` says; random when resuming
    (last.pt then replaces every weight)."""
    name, kwargs = cfg.model_name(), cfg.model_kwargs()
    if resume:
        return create_model(name, pretrained=False, **kwargs)
    if cfg.backbone_weights is None and not (cfg.pretrained and offline()):
        try:
            return create_model(name, pretrained=cfg.pretrained, **kwargs)
        except OSError as exc:  # the hub unreachable, nothing cached (huggingface_hub's LocalEntryNotFoundError)
            with torch.device("meta"):
                backbone = _trunk(create_model(name, pretrained=False, **kwargs)).name
            raise missing_pretrained(backbone, cached_pretrained(backbone)[1],
                                     f"could not be downloaded ({type(exc).__name__}: {exc})") from None
    model = create_model(name, pretrained=False, **kwargs)
    trunk = _trunk(model)
    if cfg.backbone_weights is not None:
        load_backbone(trunk, cfg.backbone_weights)
        return model
    path, looked = cached_pretrained(trunk.name)  # offline --pretrained
    if path is None:
        raise missing_pretrained(trunk.name, looked, f"offline ({_offline_vars()}) nothing is downloaded")
    load_backbone(trunk, path, what="--pretrained: timm's cached weights")
    return model
