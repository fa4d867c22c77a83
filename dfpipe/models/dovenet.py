"""DoveNet (Cong et al., CVPR 2020): an attention U-Net that harmonizes a pasted face with
its frame, and the two discriminators it is trained against.

- `DoveNetGenerator`: 4-channel input (composite RGB in [-1, 1] + foreground mask in
  [0, 1]), `num_downs` stride-2 4x4 convs (LeakyReLU 0.2), transposed-conv up path,
  dropout in the innermost 512-channel blocks, a sigmoid 1x1-conv attention gate on the
  concatenated skip of the three blocks below the outermost, tanh output.
- `GlobalDiscriminator`: judges the whole image (RGB + mask, so it knows where to look).
- `DomainDiscriminator`: partial convolutions with spectral norm run once over the
  foreground and once over the background; an MLP of 1x1 convs scores the product of the
  two feature maps, i.e. whether foreground and background look like one capture.

The `DoveNet` module holds all three so one state dict checkpoints a run; inference only
needs `generator`, which `dovenet_from_checkpoint` rebuilds from a `train-harmonizer` run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

from dfpipe.models.registry import count_parameters, register_model
from dfpipe.runtime.checkpoint import CheckpointError, load_checkpoint

#: the registry's and the checkpoints' name of this model
MODEL_NAME = "dovenet"

# --------------------------------------------------------------------------- generator


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"norm must be 'batch' or 'instance', got {kind!r}")


class UnetBlock(nn.Module):
    """One U-Net level: down conv -> `inner` -> up conv, with the skip concatenated.

    The concatenation [x, up(inner(down(x)))] optionally passes an attention gate
    (x * sigmoid(conv1x1(x))) so the decoder can weigh which skip features carry the
    foreground/background mismatch.
    """

    def __init__(
        self,
        outer: int,
        inner: int,
        in_ch: int | None = None,
        sub: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        dropout: float = 0.0,
        attention: bool = False,
        out_ch: int | None = None,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        in_ch = outer if in_ch is None else in_ch
        bias = norm == "instance"  # a bias before BatchNorm is redundant
        down_conv = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=bias)
        if outermost:
            # outermost: the tanh is applied by the generator (after the optional residual)
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, out_ch or outer, 4, 2, 1)]
            layers = [down_conv, sub, *up]
        elif innermost:
            down = [nn.LeakyReLU(0.2, True), down_conv]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
            layers = [*down, *up]
        else:
            down = [nn.LeakyReLU(0.2, True), down_conv, _norm(norm, inner)]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
            if dropout > 0:
                up.append(nn.Dropout(dropout))
            layers = [*down, sub, *up]
        self.model = nn.Sequential(*layers)
        self.gate = nn.Conv2d(outer * 2, outer * 2, 1) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        y = torch.cat([x, self.model(x)], dim=1)
        if self.gate is not None:
            y = y * torch.sigmoid(self.gate(y))
        return y


class DoveNetGenerator(nn.Module):
    """The attention U-Net: input (B, 4, S, S) with S divisible by 2**num_downs.

    With `residual`, the last layer's pre-activation is added to atanh(composite) and
    starts at zero, so an untrained generator returns the composite and training only
    learns the colour correction (much faster on CPU); without it (the paper), the
    network must learn to reproduce the face first.
    """

    def __init__(self, in_ch: int = 4, out_ch: int = 3, ngf: int = 64, num_downs: int = 8,
                 norm: str = "batch", dropout: float = 0.5, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        if num_downs < 5:
            raise ValueError("num_downs must be >= 5 (three attention levels + outermost + innermost)")
        top = ngf * 8
        block = UnetBlock(top, top, innermost=True, norm=norm)
        for _ in range(num_downs - 5):  # the 512-channel middle: dropout as in pix2pix
            block = UnetBlock(top, top, sub=block, norm=norm, dropout=dropout)
        # the three levels below the outermost carry the attention gates
        block = UnetBlock(ngf * 4, top, sub=block, norm=norm, attention=True)
        block = UnetBlock(ngf * 2, ngf * 4, sub=block, norm=norm, attention=True)
        block = UnetBlock(ngf, ngf * 2, sub=block, norm=norm, attention=True)
        self.model = UnetBlock(ngf, ngf, in_ch=in_ch, sub=block, outermost=True, norm=norm, out_ch=out_ch)
        if residual:
            last = self.model.model[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """composite in [-1, 1] (B, 3, S, S), mask in [0, 1] (B, 1, S, S) -> image in [-1, 1]."""
        pre = self.model(torch.cat([composite, mask], dim=1))
        if self.residual:
            pre = pre + torch.atanh(composite.clamp(-0.995, 0.995))
        return torch.tanh(pre)


# --------------------------------------------------------------------------- discriminators


class PartialConv2d(nn.Module):
    """Partial convolution (Liu et al. 2018) with a spectral-normalised kernel: only pixels
    where `mask` is 1 contribute, renormalised by how much of the window they cover, so the
    foreground and background features are computed from their own pixels alone."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> None:
        super().__init__()
        self.conv = spectral_norm(nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=True))
        self.register_buffer("ones", torch.ones(1, 1, kernel, kernel), persistent=False)
        self.stride, self.padding, self.window = stride, padding, float(kernel * kernel)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            covered = F.conv2d(mask, self.ones.to(mask.dtype), stride=self.stride, padding=self.padding)
            new_mask = (covered > 0).to(x.dtype)
            ratio = self.window / covered.clamp(min=1e-6) * new_mask
        out = self.conv(x * mask)
        bias = self.conv.bias.view(1, -1, 1, 1)
        return ((out - bias) * ratio.to(out.dtype) + bias) * new_mask.to(out.dtype), new_mask


def _widths(ndf: int, layers: int) -> list[int]:
    return [ndf * min(2**i, 8) for i in range(layers)]


class GlobalDiscriminator(nn.Module):
    """Spectral-norm 3x3 stride-2 convs over image + mask, a 1x1 head; returns (B,) scores."""

    def __init__(self, in_ch: int = 4, ndf: int = 64, layers: int = 6) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        prev = in_ch
        for w in _widths(ndf, layers):
            mods += [spectral_norm(nn.Conv2d(prev, w, 3, 2, 1)), nn.LeakyReLU(0.2, True)]
            prev = w
        mods.append(spectral_norm(nn.Conv2d(prev, 1, 1)))
        self.net = nn.Sequential(*mods)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, mask], dim=1)).mean(dim=(1, 2, 3))


class DomainDiscriminator(nn.Module):
    """Domain verification: are the foreground and the background from one domain?"""

    def __init__(self, in_ch: int = 3, ndf: int = 64, layers: int = 6) -> None:
        super().__init__()
        widths = _widths(ndf, layers)
        self.convs = nn.ModuleList(PartialConv2d(a, b) for a, b in zip([in_ch, *widths[:-1]], widths))
        top = widths[-1]
        self.mlp = nn.Sequential(
            spectral_norm(nn.Conv2d(top, top, 1)), nn.LeakyReLU(0.2, True),
            spectral_norm(nn.Conv2d(top, top // 2, 1)), nn.LeakyReLU(0.2, True),
            spectral_norm(nn.Conv2d(top // 2, 1, 1)),
        )

    def features(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = image
        for conv in self.convs:
            x, mask = conv(x, mask)
            x = F.leaky_relu(x, 0.2)
        return x

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        fg = self.features(image, mask)
        bg = self.features(image, 1.0 - mask)
        return self.mlp(fg * bg).mean(dim=(1, 2, 3))


# --------------------------------------------------------------------------- the model


@dataclass
class DoveNetConfig:
    img_size: int = 256
    ngf: int = 64
    num_downs: int = 8
    ndf: int = 64
    d_layers: int = 6
    norm: str = "batch"
    dropout: float = 0.5
    residual: bool = False

    def __post_init__(self) -> None:
        if self.img_size % (2**self.num_downs):
            raise ValueError(f"img_size {self.img_size} must be divisible by 2**num_downs = {2**self.num_downs}")
        if self.img_size < 2**self.d_layers:
            raise ValueError(f"img_size {self.img_size} is too small for {self.d_layers} discriminator layers")


#: Small enough for CPU tests and benchmarks (64x64, ~1.9M generator parameters); residual
#: so that a CPU-budget run spends its steps on colour, not on learning to copy the face.
TINY_CONFIG = dict(img_size=64, ngf=16, num_downs=6, ndf=16, d_layers=5, residual=True)


class DoveNet(nn.Module):
    """Generator + global discriminator + domain-verification discriminator."""

    def __init__(self, cfg: DoveNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.generator = DoveNetGenerator(4, 3, cfg.ngf, cfg.num_downs, cfg.norm, cfg.dropout, cfg.residual)
        self.global_d = GlobalDiscriminator(4, cfg.ndf, cfg.d_layers)
        self.domain_d = DomainDiscriminator(3, cfg.ndf, cfg.d_layers)
        self.default_cfg = {
            "input_size": (4, cfg.img_size, cfg.img_size),
            "input": "composite RGB in [-1, 1] + foreground mask in [0, 1]",
            "output": "RGB in [-1, 1] (tanh)",
        }

    def forward(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The harmonized image: the generator's output inside the mask, the composite
        outside (the background is known, so it is kept exactly)."""
        out = self.generator(composite, mask)
        return out * mask + composite * (1.0 - mask)

    def param_counts(self) -> dict[str, int]:
        return {
            "generator": count_parameters(self.generator),
            "global_d": count_parameters(self.global_d),
            "domain_d": count_parameters(self.domain_d),
        }

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def extra_repr(self) -> str:
        counts = self.param_counts()
        return ", ".join(f"{k}={v / 1e6:.2f}M" for k, v in counts.items()) + f", img_size={self.cfg.img_size}"


def build_dovenet(tiny: bool = False, **overrides) -> DoveNet:
    """The default (paper) config, or the tiny one; keyword overrides win."""
    base = dict(TINY_CONFIG) if tiny else {}
    base.update(overrides)
    return DoveNet(DoveNetConfig(**base))


# --------------------------------------------------------------------------- inputs and checkpoints


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 H x W x 3 -> 3 x H x W in [-1, 1], the generator's composite input."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 127.5 - 1.0


def mask_tensor(mask: np.ndarray) -> torch.Tensor:
    """uint8 H x W mask (255 = foreground) -> 1 x H x W in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(mask)).float().unsqueeze(0) / 255.0


def load_dovenet_checkpoint(path: str | Path) -> dict[str, Any]:
    """A `train-harmonizer` checkpoint (best.pt or last.pt, weights_only); CheckpointError
    for any other file, a detector's checkpoint included."""
    ckpt = load_checkpoint(path)
    if ckpt.get("model_name") != MODEL_NAME:
        raise CheckpointError(f"{path}: a {ckpt.get('model_name')!r} checkpoint, not a DoveNet harmonizer")
    return ckpt


def dovenet_from_checkpoint(path: str | Path) -> DoveNet:
    """The DoveNet of a `train-harmonizer` run with its averaged generator: best.pt holds
    it as `generator`, last.pt (a full training state) as the EMA model `ema`."""
    ckpt = load_dovenet_checkpoint(path)
    model = DoveNet(DoveNetConfig(**ckpt["config"]))
    if "generator" in ckpt:
        model.generator.load_state_dict(ckpt["generator"])
    else:
        ema = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
        model.generator.load_state_dict(ema)
    return model


@register_model(MODEL_NAME)
def dovenet(pretrained: bool = False, tiny: bool = False, **overrides) -> DoveNet:
    if pretrained:
        raise ValueError("no published DoveNet weights for faces; train one with `dfpipe train-harmonizer`")
    return build_dovenet(tiny=tiny, **overrides)
