"""Perceptual distance: LPIPS (VGG-16) and the plain VGG-16 relu2_2 feature MSE.

Our own feature extractor over torchvision's `vgg16` (ImageNet weights through the
weights cache, never a hub download) and the learned linear layers the PyPI `lpips`
package ships in `weights/v0.1/vgg.pth`. One backbone pass gives both figures: LPIPS's
input scaling is exactly ImageNet mean/std normalisation written for inputs in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from dfpipe.runtime.weights import WeightsError, WeightsFile, register_weights, resolve_weights, sha256_of

VGG16_WEIGHTS = "vgg16_imagenet"
#: torchvision names its files by the first 8 hex digits of their sha256.
VGG16_SHA256_PREFIX = "397923af"
register_weights(
    VGG16_WEIGHTS,
    WeightsFile(
        name="vgg16-397923af.pth",
        sha256=None,
        urls=("https://download.pytorch.org/models/vgg16-397923af.pth",),
        note="torchvision VGG-16 ImageNet backbone (LPIPS, VGG feature MSE)",
    ),
)

#: Cut points in torchvision's `vgg16().features`: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
VGG_CHANNELS = (64, 128, 256, 512, 512)
#: LPIPS v0.1 input scaling, for images in [-1, 1] (= ImageNet mean/std on [0, 1]).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def lpips_linear_path() -> Path:
    """The linear layers bundled with the `lpips` package."""
    try:
        import lpips
    except ImportError as exc:  # a declared dependency; say what is missing rather than a traceback
        raise WeightsError("LPIPS needs the PyPI package `lpips` (pip install lpips)") from exc
    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    if not path.is_file():
        raise WeightsError(f"the lpips package has no {path}; reinstall it (pip install --force-reinstall lpips)")
    return path


def load_vgg16_state(weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """ImageNet VGG-16 `features.*` tensors from the weights cache (or an explicit file)."""
    path = resolve_weights(VGG16_WEIGHTS, weights)
    if weights is None and not sha256_of(path).startswith(VGG16_SHA256_PREFIX):
        raise WeightsError(f"{path} is not torchvision's vgg16-397923af.pth (sha256 prefix differs)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if k.startswith("features.")}


class VGGFeatures(nn.Module):
    """VGG-16 conv trunk returning the five LPIPS taps (relu1_2 ... relu5_3)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        # torchvision's own VGG-16 conv layers (same module indices as `vgg16().features`),
        # without building the 120M-parameter classifier we would throw away
        self.features = make_layers(cfgs["D"])[: VGG_SLICES[-1][1]]
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for start, stop in VGG_SLICES:
            for layer in self.features[start:stop]:
                x = layer(x)
            taps.append(x)
        return taps


def _unit(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit-normalise along channels, as LPIPS does."""
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class PerceptualMetric(nn.Module):
    """LPIPS-VGG and VGG relu2_2 MSE between batches of RGB uint8 images."""

    def __init__(self, backbone_state: dict[str, torch.Tensor], linear_state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.backbone = VGGFeatures()
        self.backbone.load_state_dict(backbone_state, strict=True)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in VGG_CHANNELS)
        for k, lin in enumerate(self.lins):
            lin.weight.data.copy_(linear_state[f"lin{k}.model.1.weight"])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_cache(cls, weights: str | Path | None = None, device: str = "cpu") -> "PerceptualMetric":
        """ImageNet backbone from the weights cache, linear layers from `lpips`."""
        linear = torch.load(lpips_linear_path(), map_location="cpu", weights_only=True)
        return cls(load_vgg16_state(weights), linear).to(device)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`a`, `b`: B x 3 x H x W in [-1, 1]. Returns (lpips, vgg relu2_2 MSE), each (B,)."""
        fa = self.backbone((a - self.shift) / self.scale)
        fb = self.backbone((b - self.shift) / self.scale)
        dist = torch.zeros(a.shape[0], device=a.device)
        for lin, xa, xb in zip(self.lins, fa, fb):
            dist = dist + lin((_unit(xa) - _unit(xb)) ** 2).mean(dim=(1, 2, 3))
        mse = (fa[1] - fb[1]).pow(2).mean(dim=(1, 2, 3))
        return dist, mse

    @torch.no_grad()
    def distances(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of RGB uint8 images (same size within a pair and batch) -> (lpips, mse)."""
        device = self.shift.device
        ta = to_tensor(a).to(device)
        tb = to_tensor(b).to(device)
        dist, mse = self(ta, tb)
        return dist.cpu().numpy().astype(np.float64), mse.cpu().numpy().astype(np.float64)


def to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """RGB uint8 H x W x 3 images -> B x 3 x H x W float in [-1, 1]."""
    arr = np.stack([np.asarray(im) for im in images]).astype(np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2) / 127.5 - 1.0
