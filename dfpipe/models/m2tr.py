"""M2TR (Wang et al.): multi-scale transformer + frequency branch + cross-modality fusion on
EfficientNet-B4's stride-4 features, with a mask decoder. Exact design: specs/detectors.md.

Mask supervision: `mask=None` counts as all-zeros for real faces and as *unknown* for fakes
(those fakes add nothing to L_seg). A given mask with NaN in a sample also marks that sample
unknown, so a batch may mix fakes with and without masks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dfpipe.models.blocks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EfficientNetTrunk,
    all_reduce_sum,
    binary_focal_loss,
    build_config,
)
from dfpipe.models.registry import register_model


@dataclass
class M2TRConfig:
    """Paper defaults; `freq="fft-filter"`, `attn_scale="official"`, `loss="focal"` give the
    released code's variants. `attn_scale` may also be a float: the divisor s itself."""

    input_size: int = 320
    depth: int = 4
    heads: int = 4
    freq: str = "dct-bands"  # "dct-bands" (paper) | "fft-filter" (official)
    attn_scale: str | float = "paper"  # "paper" sqrt(HW C) | "official" sqrt(C) | s
    loss: str = "ce+seg+con"  # "ce+seg+con" | "focal"
    l_seg: float = 1.0
    l_con: float = 0.1
    con_margin: float = 0.5  # fakes are pushed below this cosine to the real centre
    con_momentum: float = 0.9  # running real centre: c <- m c + (1 - m) mean(real)
    focal_gamma: float = 2.0
    backbone: str = "efficientnet_b4"  # or "tf_efficientnet_b4"
    cut_stage: int = 2  # f_s = stem + stages[:cut_stage] (stride 4)
    drop: float = 0.5

    @classmethod
    def tiny(cls) -> "M2TRConfig":
        return cls(input_size=64, depth=1, backbone="test_efficientnet")


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, act: nn.Module | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         act if act is not None else nn.LeakyReLU(0.2, inplace=True))


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n x n): X = D x D^T, x = D^T X D."""
    i = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


def fusion_scale(cfg: M2TRConfig, tokens: int, channels: int) -> float:
    """The softmax divisor s of the cross-modality fusion."""
    if cfg.attn_scale == "paper":
        return math.sqrt(tokens * channels)
    if cfg.attn_scale == "official":
        return math.sqrt(channels)
    try:
        return float(cfg.attn_scale)
    except (TypeError, ValueError):
        raise ValueError(f"attn_scale must be 'paper', 'official' or a number, not {cfg.attn_scale!r}") from None


class MultiScaleAttention(nn.Module):
    """MT block: head i attends between r_i x r_i patches (one token per patch); patch sizes
    halve per head starting from the whole map, so they follow the feature size."""

    def __init__(self, channels: int, heads: int, size: tuple[int, int]) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        h, w = size
        self.patches = [(h >> i, w >> i) for i in range(heads)]
        if any(ph << i != h or pw << i != w for i, (ph, pw) in enumerate(self.patches)):
            raise ValueError(f"feature map {h}x{w} must be divisible by 2^{heads - 1} for {heads} heads; "
                             "pick an input size that is a multiple of 4 * 2^(heads-1) or fewer heads")
        self.heads = heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = conv_bn_act(channels, channels)
        self.ffn = nn.Sequential(conv_bn_act(channels, channels), conv_bn_act(channels, channels))

    @staticmethod
    def _tokens(t: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
        b, c, h, w = t.shape  # -> (B, patches, c*ph*pw)
        t = t.view(b, c, h // ph, ph, w // pw, pw).permute(0, 2, 4, 1, 3, 5)
        return t.reshape(b, (h // ph) * (w // pw), c * ph * pw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=1)
        outs = []
        for (ph, pw), qh, kh, vh in zip(self.patches, q.chunk(self.heads, 1), k.chunk(self.heads, 1),
                                        v.chunk(self.heads, 1)):
            qt, kt, vt = (self._tokens(t, ph, pw)[:, None] for t in (qh, kh, vh))
            o = F.scaled_dot_product_attention(qt, kt, vt)[:, 0]  # scale 1/sqrt(r*r*C/h)
            ch = c // self.heads
            o = o.view(b, h // ph, w // pw, ch, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, ch, h, w)
            outs.append(o)
        x = x + self.out(torch.cat(outs, dim=1))
        return x + self.ffn(x)


class DCTBands(nn.Module):
    """Splits an image into low/mid/high DCT bands (by i+j) back in the image plane.

    Low and mid bands live in the top-left corner of the spectrum, so only the first
    rows of the DCT matrices are needed; high = x - low - mid (the bands partition the
    spectrum). This keeps the branch a few small matrix products."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        h, w = size
        n = (h + w) / 2
        self.cuts = (n / 16, n / 8)
        kh, kw = min(h, math.ceil(self.cuts[1])), min(w, math.ceil(self.cuts[1]))
        self.register_buffer("dh", dct_matrix(h)[:kh].contiguous(), persistent=False)
        self.register_buffer("dw", dct_matrix(w)[:kw].contiguous(), persistent=False)
        s = torch.arange(kh)[:, None] + torch.arange(kw)[None, :]
        self.register_buffer("low", (s < self.cuts[0]).float(), persistent=False)
        self.register_buffer("mid", ((s >= self.cuts[0]) & (s < self.cuts[1])).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.dh @ x @ self.dw.T  # the corner of the orthonormal DCT-II
        low = self.dh.T @ (spec * self.low) @ self.dw
        mid = self.dh.T @ (spec * self.mid) @ self.dw
        return torch.cat([low, mid, x - low - mid], dim=1)


class GlobalFilter(nn.Module):
    """Official M2TR frequency step: rfft2 of the features times a learnable complex filter."""

    def __init__(self, channels: int, size: tuple[int, int]) -> None:
        super().__init__()
        h, w = size
        self.weight = nn.Parameter(torch.randn(channels, h, w // 2 + 1, 2) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        spec = torch.fft.rfft2(x.float(), norm="ortho") * torch.view_as_complex(self.weight)
        return torch.fft.irfft2(spec, s=(h, w), norm="ortho").to(x.dtype)


class CrossModalityFusion(nn.Module):
    """f_cmf = Conv3x3(f_s + f_mt + softmax(Q(f_s) K(f_fq)^T / s) V(f_fq)); the full
    (HW x HW) attention runs through SDPA so its memory stays linear in HW."""

    def __init__(self, channels: int, scale: float, plain: bool = False) -> None:
        super().__init__()
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Conv2d(channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 3, padding=1)
        self.scale = scale
        self.plain = plain  # benchmark switch: materialise the softmax matrix

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.plain:
            return torch.softmax(q @ k.transpose(-2, -1) / self.scale, dim=-1) @ v
        # 4-D (B, 1, N, C): PyTorch's fused CPU kernel only takes batched-heads input; 3-D
        # falls back to the math path, which materialises the N x N matrix
        return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0 / self.scale)[:, 0]

    def forward(self, fs: torch.Tensor, fmt: torch.Tensor, ffq: torch.Tensor) -> torch.Tensor:
        b, c, h, w = fs.shape
        # (B, HW, C), contiguous: a strided last dim also sends SDPA to the math path
        q = self.q(fs).flatten(2).transpose(1, 2).contiguous()
        k, v = (t.flatten(2).transpose(1, 2).contiguous() for t in self.kv(ffq).chunk(2, dim=1))
        fuse = self.attend(q, k, v).transpose(1, 2).reshape(b, c, h, w)
        return self.out(fs + fmt + fuse)


class M2TRBlock(nn.Module):
    """One MT + frequency + CMF block."""

    def __init__(self, cfg: M2TRConfig, channels: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.mt = MultiScaleAttention(channels, cfg.heads, size)
        if cfg.freq == "fft-filter":
            self.freq: nn.Module = GlobalFilter(channels, size)
        else:  # per-block refinement of the DCT-band features
            self.freq = conv_bn_act(channels, channels, act=nn.ReLU(inplace=True))
        self.fft = cfg.freq == "fft-filter"
        self.cmf = CrossModalityFusion(channels, fusion_scale(cfg, size[0] * size[1], channels))

    def forward(self, fs: torch.Tensor, ffq: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        ffq = self.freq(fs) if self.fft else self.freq(ffq)
        return self.cmf(fs, self.mt(fs), ffq), ffq


class M2TR(nn.Module):
    def __init__(self, cfg: M2TRConfig, pretrained: bool = False) -> None:
        super().__init__()
        if cfg.freq not in ("dct-bands", "fft-filter"):
            raise ValueError(f"freq must be 'dct-bands' or 'fft-filter', not {cfg.freq!r}")
        if cfg.loss not in ("ce+seg+con", "focal"):
            raise ValueError(f"loss must be 'ce+seg+con' or 'focal', not {cfg.loss!r}")
        self.cfg = cfg
        self.default_cfg = {"name": "m2tr", "input_size": (3, cfg.input_size, cfg.input_size),
                            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "config": asdict(cfg)}
        self.trunk = EfficientNetTrunk(cfg.backbone, pretrained)
        size = (cfg.input_size, cfg.input_size)
        ch = self.trunk.stage_channels(cfg.cut_stage - 1)
        fsize = self.trunk.stage_size(size, cfg.cut_stage - 1)
        self.feature_size = fsize
        if cfg.freq == "dct-bands":
            self.bands = DCTBands(size)
            self.freq_stem = nn.Sequential(conv_bn_act(9, 16, stride=2, act=nn.ReLU(inplace=True)),
                                           conv_bn_act(16, ch, stride=2, act=nn.ReLU(inplace=True)))
        self.blocks = nn.ModuleList(M2TRBlock(cfg, ch, fsize) for _ in range(cfg.depth))
        self.decoder = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                     conv_bn_act(ch, 16, act=nn.ReLU(inplace=True)),
                                     nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                     nn.Conv2d(16, 1, 3, padding=1))
        self.dropout = nn.Dropout(cfg.drop)
        self.fc = nn.Linear(self.trunk.num_features, 1)
        self.num_features = self.trunk.num_features  # width of out["feature"], what fc reads
        self.register_buffer("real_center", torch.zeros(self.trunk.num_features))
        self.register_buffer("center_ready", torch.zeros((), dtype=torch.bool))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """f_cmf: the fused stride-4 map after `depth` blocks."""
        fs = self.trunk.run(self.trunk.stem(x), 0, self.cfg.cut_stage)
        ffq = None
        if self.cfg.freq == "dct-bands":
            ffq = self.freq_stem(self.bands(x))
            if ffq.shape[-2:] != fs.shape[-2:]:
                ffq = F.interpolate(ffq, size=fs.shape[-2:], mode="bilinear", align_corners=False)
        for block in self.blocks:
            fs, ffq = block(fs, ffq)
        return fs

    def forward_head(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Remaining EfficientNet stages -> (fake logit, pooled feature)."""
        f = self.trunk.head(self.trunk.run(f, self.cfg.cut_stage, len(self.trunk.stages)))
        pooled = f.mean(dim=(2, 3))
        return self.fc(self.dropout(pooled)).squeeze(1), pooled

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> dict:
        f = self.forward_features(x)
        logit, pooled = self.forward_head(f)
        mask_logits = self.decoder(f)
        if mask_logits.shape[-2:] != x.shape[-2:]:
            mask_logits = F.interpolate(mask_logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        out = {"logit": logit, "mask_logits": mask_logits, "feature": pooled}
        if target is not None and self.training:
            out.update(self.loss(logit, pooled, mask_logits, target.float(), mask))
        return out

    # ---- losses ---------------------------------------------------------------------

    def loss(self, logit: torch.Tensor, pooled: torch.Tensor, mask_logits: torch.Tensor,
             target: torch.Tensor, mask: torch.Tensor | None) -> dict:
        if self.cfg.loss == "focal":
            focal = binary_focal_loss(logit, target, self.cfg.focal_gamma)
            # the unsupervised decoder stays in the graph (zero gradient), so DDP needs no
            # find_unused_parameters
            total = focal + 0.0 * mask_logits.sum()
            return {"loss": total, "losses": {"focal": focal.detach()}}
        ce = F.binary_cross_entropy_with_logits(logit, target)
        seg = self.seg_loss(mask_logits, target, mask)
        con = self.contrastive_loss(pooled, target)
        total = ce + self.cfg.l_seg * seg + self.cfg.l_con * con
        return {"loss": total, "losses": {"ce": ce.detach(), "seg": seg.detach(), "con": con.detach()}}

    @staticmethod
    def seg_loss(mask_logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Pixel BCE against the manipulation mask; reals without a mask use zeros, fakes
        without one (None or NaN) are left out. Written without data-dependent branches or
        boolean indexing, so `torch.compile` keeps the whole step in one graph."""
        b = mask_logits.shape[0]
        if mask is None:
            mask = torch.zeros_like(mask_logits)
            known = target < 0.5
        else:
            mask = mask.to(mask_logits.dtype)
            if mask.dim() == 3:
                mask = mask.unsqueeze(1)
            if mask.shape[-2:] != mask_logits.shape[-2:]:
                mask = F.interpolate(mask, size=mask_logits.shape[-2:], mode="bilinear", align_corners=False)
            known = ~torch.isnan(mask.view(b, -1)).any(dim=1)
            mask = torch.nan_to_num(mask, nan=0.0).clamp(0, 1)
        per_sample = F.binary_cross_entropy_with_logits(mask_logits, mask, reduction="none").flatten(1).mean(1)
        weight = known.to(per_sample.dtype)
        # every sample has the same pixel count: this is the pixel mean over known samples
        return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)

    def contrastive_loss(self, pooled: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cosine centre loss: reals pulled to a running real centre, fakes pushed below
        `con_margin` cosine. The centre is a buffer (all-reduced under DDP)."""
        real = target < 0.5
        with torch.no_grad():
            stats = all_reduce_sum(torch.cat([(pooled * real[:, None]).sum(0),
                                              real.sum().to(pooled.dtype)[None]]))
            seen = stats[-1] > 0
            mean = stats[:-1] / stats[-1].clamp(min=1.0)
            m = self.cfg.con_momentum
            moved = torch.where(self.center_ready, m * self.real_center + (1 - m) * mean, mean)
            self.real_center.copy_(torch.where(seen, moved, self.real_center))
            self.center_ready.copy_(self.center_ready | seen)
        cos = F.cosine_similarity(pooled, self.real_center[None].to(pooled.dtype), dim=1)
        loss = torch.where(real, 1 - cos, F.relu(cos - self.cfg.con_margin)).mean()
        # no real centre yet (no real face seen): nothing to pull towards
        return torch.where(self.center_ready, loss, pooled.sum() * 0.0)


@register_model("m2tr")
def m2tr(pretrained: bool = False, tiny: bool = False, **cfg) -> M2TR:
    """M2TR; `tiny=True` (or the name `m2tr_tiny`) gives the 64-px, depth-1 test config."""
    return M2TR(build_config(M2TRConfig, tiny=tiny, **cfg), pretrained=pretrained)


@register_model("m2tr_tiny")
def m2tr_tiny(pretrained: bool = False, **cfg) -> M2TR:
    return m2tr(pretrained=pretrained, tiny=True, **cfg)
