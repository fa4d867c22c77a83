"""MAT, the multi-attentional detector (Zhao et al., CVPR 2021), on EfficientNet-B4.
Exact design: specs/detectors.md.

Training forward (`target` given, training mode) does the whole step the paper describes:
attention maps of the clean batch (no grad, `loss="paper"`) pick the AGDA regions, and the
classifier trains on the augmented batch with CE + RIL. `loss="official"` is the released
code's step: CE + 0.5 RIL on the clean batch, CE on the AGDA batch, 0.1 * match loss between
the two batches' attention maps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from dfpipe.models.blocks import IMAGENET_MEAN, IMAGENET_STD, EfficientNetTrunk, all_reduce_sum, build_config
from dfpipe.models.registry import register_model


@dataclass
class MATConfig:
    """Paper defaults; `margins="official"`, `agda_scale=0.5`, `attention_border=2`,
    `loss="official"` give the released code's variants."""

    input_size: int = 380
    num_maps: int = 4  # M
    attention_stage: int = 5  # SL_a = L5
    texture_stage: int = 2  # SL_t = L2
    attention_border: int = 0  # official zeroes a 2-pixel border
    margins: str = "paper"  # "paper": m_in (0.05 real, 0.1 fake), m_out 0.2 | "official": 0.2 / 0.8, 0.8
    alpha: float = 0.05  # centre update rate a, times 0.9 after each epoch
    alpha_decay: float = 0.9
    agda: str = "soft"  # "soft" | "hard" | "none"
    agda_threshold: tuple[float, float] = (0.4, 0.6)
    agda_zoom: tuple[float, float] = (3.0, 5.0)
    agda_scale: float = 0.3  # official 0.5
    agda_sigma: float = 7.0
    agda_kernel: int = 11
    agda_noise: float = 0.1
    loss: str = "paper"  # "paper": l1 CE + l2 RIL | "official"
    l_ce: float = 1.0
    l_ril: float = 1.0
    mid_dims: int = 256
    drop: float = 0.5  # dropout on the global feature G
    backbone: str = "efficientnet_b4"

    @classmethod
    def tiny(cls) -> "MATConfig":
        # test_efficientnet has 5 stages: L2 (24 ch, stride 4), L4 (48 ch, stride 16)
        return cls(input_size=64, attention_stage=4, mid_dims=32, agda_kernel=5, agda_sigma=2.0,
                   backbone="test_efficientnet")

    def margin_values(self) -> tuple[tuple[float, float], float]:
        if self.margins == "paper":
            return (0.05, 0.1), 0.2
        if self.margins == "official":
            return (0.2, 0.8), 0.8
        raise ValueError(f"margins must be 'paper' or 'official', not {self.margins!r}")


class AttentionMaps(nn.Module):
    """M non-negative attention maps from SL_a: conv3x3-BN-ReLU, conv1x1-BN, elu + 1."""

    def __init__(self, channels: int, maps: int, border: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True), nn.Conv2d(channels, maps, 1, bias=False),
                                  nn.BatchNorm2d(maps))
        self.border = border

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.elu(self.body(x)) + 1
        if self.border:
            keep = torch.zeros_like(a[:1, :1])
            keep[..., self.border:-self.border, self.border:-self.border] = 1
            a = a * keep
        return a


class TextureEnhance(nn.Module):
    """T = f - up(avgpool(f)) keeps the shallow layer's high frequencies; a dense block of
    three 3x3 convs enhances it into F. Also returns D, the pooled map RIL uses."""

    def __init__(self, channels: int, layers: int = 3) -> None:
        super().__init__()
        self.entry = nn.Conv2d(channels, channels, 1)
        self.dense = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(channels * (i + 1)), nn.ReLU(inplace=True),
                          nn.Conv2d(channels * (i + 1), channels, 3, padding=1))
            for i in range(layers))
        self.fuse = nn.Sequential(nn.BatchNorm2d(channels * (layers + 1)), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels * (layers + 1), channels, 1), nn.BatchNorm2d(channels))

    def forward(self, f: torch.Tensor, pool_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        d = F.adaptive_avg_pool2d(f, pool_size)
        t = f - F.interpolate(d, size=f.shape[-2:], mode="nearest")
        feats = [self.entry(t)]
        for layer in self.dense:
            feats.append(layer(torch.cat(feats, dim=1)))
        return self.fuse(torch.cat(feats, dim=1)), d


def bap(features: torch.Tensor, attention: torch.Tensor, norm: str = "l2") -> torch.Tensor:
    """Bilinear attention pooling -> (B, M, C). `l2`: each v_k divided by its L2 norm
    (normalized average pooling); `sum`: divided by the attention's total weight."""
    if attention.shape[-2:] != features.shape[-2:]:
        attention = F.interpolate(attention, size=features.shape[-2:], mode="bilinear", align_corners=False)
    pooled = torch.einsum("bmhw,bchw->bmc", attention, features)
    if norm == "l2":
        return F.normalize(pooled, dim=-1)
    return pooled / (attention.sum(dim=(2, 3))[..., None] + 1e-8)


class RegionalIndependenceLoss(nn.Module):
    """RIL: V_k near its centre c_k (margin by class), centres apart by m_out. Centres and
    the rate a are buffers; the loss uses c + a mean_real(V - c), which carries V's gradient
    to the inter-class term, and that value (averaged over DDP ranks) becomes the new c."""

    def __init__(self, maps: int, channels: int, cfg: MATConfig) -> None:
        super().__init__()
        (m_real, m_fake), self.m_out = cfg.margin_values()
        self.official = cfg.margins == "official"
        self.register_buffer("centers", torch.zeros(maps, channels))
        self.register_buffer("alpha", torch.tensor(float(cfg.alpha)))
        self.register_buffer("margins", torch.tensor([m_real, m_fake]))
        self.decay = cfg.alpha_decay

    def update_centers(self, v: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """New centres from this batch's real samples (differentiable in v); stores the
        all-reduced value when training."""
        c = self.centers
        n_real = real.sum().to(v.dtype)
        local_sum = (v[real] - c).sum(0)
        new = c + self.alpha * local_sum / n_real.clamp(min=1)
        if self.training:
            with torch.no_grad():
                stats = all_reduce_sum(torch.cat([local_sum.detach().flatten(), n_real[None]]))
                if stats[-1] > 0:
                    self.centers.add_(self.alpha * stats[:-1].view_as(c) / stats[-1])
        return new

    def forward(self, v: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        real = target < 0.5
        c = self.update_centers(v, real)
        margin = self.margins[(~real).long()]
        if self.official:  # Frobenius distance; reals within 0.2, fakes pushed beyond 0.8
            dist = torch.linalg.vector_norm(v - c, dim=(1, 2))
            intra = torch.where(real, F.relu(dist - margin), F.relu(margin - dist)).mean()
        else:  # squared distance per map, larger margin for fakes
            dist = ((v - c) ** 2).sum(-1)
            intra = F.relu(dist - margin[:, None]).sum(1).mean()
        j, k = torch.triu_indices(c.shape[0], c.shape[0], offset=1, device=c.device)
        gap = torch.linalg.vector_norm(c[j] - c[k], dim=-1)
        if self.official:
            inter = F.relu(self.m_out - gap).sum() / (c.shape[0] * self.alpha)
        else:
            inter = F.relu(self.m_out - gap**2).sum()
        return intra + inter

    def decay_rate(self) -> None:
        self.alpha.mul_(self.decay)


class AGDA(nn.Module):
    """Attention-guided data augmentation: degrade the image where one attention map
    (picked with probability ~ sqrt(sum A_k + 1)) is strong."""

    def __init__(self, cfg: MATConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def soft_mask(self, a: torch.Tensor) -> torch.Tensor:
        """(sigmoid((a - t) z) - sigmoid(-t z)) / (1 - sigmoid(-t z)) per sample, for
        a in [0, 1]: 0 at a = 0, increasing in a, below 1 (about 0.8-0.95 at a = 1)."""
        b = a.shape[0]
        lo, hi = self.cfg.agda_threshold
        t = torch.empty(b, 1, 1, 1, device=a.device).uniform_(lo, hi)
        lo, hi = self.cfg.agda_zoom
        z = torch.empty(b, 1, 1, 1, device=a.device).uniform_(lo, hi)
        bottom = torch.sigmoid(-t * z)
        m = ((torch.sigmoid((a - t) * z) - bottom) / (1 - bottom)).clamp(0, 1)
        return torch.where(a > 0, m, torch.zeros_like(m))  # exact 0 despite rounding

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        """Downscale, blur, add noise, upscale."""
        cfg = self.cfg
        small = F.interpolate(x, scale_factor=cfg.agda_scale, mode="bilinear", align_corners=False,
                              recompute_scale_factor=False)
        k = min(cfg.agda_kernel, (min(small.shape[-2:]) - 1) | 1)  # odd, no larger than the image
        small = gaussian_blur(small, [k, k], [cfg.agda_sigma, cfg.agda_sigma])
        small = small + cfg.agda_noise * torch.randn_like(small)
        return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def pick(self, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One map per sample, normalized by its max -> (B,1,h,w) in [0,1], index (B,)."""
        weight = torch.sqrt(attention.sum(dim=(2, 3)) + 1)
        index = torch.multinomial(weight, 1).squeeze(1)
        a = attention[torch.arange(attention.shape[0], device=attention.device), index][:, None]
        return a / (a.amax(dim=(2, 3), keepdim=True) + 1e-8), index

    def mask(self, a: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.cfg.agda == "hard":
            return (F.interpolate(a, size=size, mode="nearest") >= 0.5).to(a.dtype)
        a = F.interpolate(a, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        return self.soft_mask(a)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, index = self.pick(attention.float())
        m = self.mask(a, x.shape[-2:]).to(x.dtype)
        return x * (1 - m) + self.degrade(x) * m, index


class MAT(nn.Module):
    def __init__(self, cfg: MATConfig, pretrained: bool = False) -> None:
        super().__init__()
        if cfg.loss not in ("paper", "official"):
            raise ValueError(f"loss must be 'paper' or 'official', not {cfg.loss!r}")
        if cfg.agda not in ("soft", "hard", "none"):
            raise ValueError(f"agda must be 'soft', 'hard' or 'none', not {cfg.agda!r}")
        cfg.margin_values()
        self.cfg = cfg
        self.default_cfg = {"name": "mat", "input_size": (3, cfg.input_size, cfg.input_size),
                            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "config": asdict(cfg)}
        self.trunk = EfficientNetTrunk(cfg.backbone, pretrained)
        n_stages = len(self.trunk.stages)
        if not 1 <= cfg.texture_stage < cfg.attention_stage <= n_stages:
            raise ValueError(f"need 1 <= texture_stage < attention_stage <= {n_stages} for {cfg.backbone}")
        size = (cfg.input_size, cfg.input_size)
        self.attention_size = self.trunk.stage_size(size, cfg.attention_stage - 1)
        tex_ch = self.trunk.stage_channels(cfg.texture_stage - 1)
        self.attentions = AttentionMaps(self.trunk.stage_channels(cfg.attention_stage - 1), cfg.num_maps,
                                        cfg.attention_border)
        self.texture = TextureEnhance(tex_ch)
        self.ril = RegionalIndependenceLoss(cfg.num_maps, tex_ch, cfg)
        self.agda = AGDA(cfg)
        self.project_local = nn.Linear(cfg.num_maps * tex_ch, cfg.mid_dims)
        self.project_global = nn.Linear(self.trunk.num_features, cfg.mid_dims)
        self.dropout = nn.Dropout(cfg.drop)
        self.classifier = nn.Sequential(nn.Linear(2 * cfg.mid_dims, cfg.mid_dims), nn.Hardswish(),
                                        nn.Linear(cfg.mid_dims, 1))
        self.num_features = 2 * cfg.mid_dims  # width of out["feature"], what the classifier reads

    def attention_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Only the layers up to SL_a: what AGDA needs before the real step."""
        f = self.trunk.run(self.trunk.stem(x), 0, self.cfg.attention_stage)
        return self.attentions(f)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        trunk, cfg = self.trunk, self.cfg
        f = trunk.stem(x)
        shallow = trunk.run(f, 0, cfg.texture_stage)
        deep = trunk.run(shallow, cfg.texture_stage, cfg.attention_stage)
        attention = self.attentions(deep)
        final = trunk.head(trunk.run(deep, cfg.attention_stage, len(trunk.stages)))
        textural, pooled = self.texture(shallow, attention.shape[-2:])
        return {"attention": attention, "textural": textural, "pooled": pooled, "final": final}

    def head_features(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """The per-image feature the classifier reads (B x num_features): projected local
        and global features side by side."""
        attention = feats["attention"]
        p = bap(feats["textural"], attention).flatten(1)  # textural feature matrix P
        g = bap(feats["final"], attention.sum(1, keepdim=True), norm="sum").squeeze(1)  # global G
        local = F.hardswish(self.project_local(p))
        glob = F.hardswish(self.project_global(self.dropout(g)))
        return torch.cat([local, glob], dim=1)

    def classify(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(fake logit, pooled feature) of the trunk's features."""
        feature = self.head_features(feats)
        return self.classifier(feature).squeeze(1), feature

    def forward_head(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classify(feats)[0]

    def semantic_features(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """V = BAP(standardised D): the per-region features RIL regularises."""
        d = feats["pooled"]
        d = (d - d.mean(dim=(2, 3), keepdim=True)) / (d.std(dim=(2, 3), keepdim=True) + 1e-8)
        return bap(d, feats["attention"])

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> dict:
        """`mask` is accepted for the shared contract and unused (MAT has no mask head)."""
        if target is None or not self.training:
            feats = self.forward_features(x)
            logit, feature = self.classify(feats)
            return {"logit": logit, "attention": feats["attention"], "feature": feature}
        target = target.float()
        if self.cfg.loss == "official":
            return self._official_step(x, target)
        if self.cfg.agda != "none":
            with torch.no_grad():
                x, _ = self.agda(x, self.attention_maps(x))
        feats = self.forward_features(x)
        logit, feature = self.classify(feats)
        ce = F.binary_cross_entropy_with_logits(logit, target)
        ril = self.ril(self.semantic_features(feats), target)
        loss = self.cfg.l_ce * ce + self.cfg.l_ril * ril
        return {"logit": logit, "attention": feats["attention"], "feature": feature, "loss": loss,
                "losses": {"ce": ce.detach(), "ril": ril.detach()}}

    def _official_step(self, x: torch.Tensor, target: torch.Tensor) -> dict:
        feats = self.forward_features(x)
        logit, feature = self.classify(feats)
        ce = F.binary_cross_entropy_with_logits(logit, target)
        ril = self.ril(self.semantic_features(feats), target)
        loss = ce + 0.5 * ril
        losses = {"ce": ce.detach(), "ril": ril.detach()}
        if self.cfg.agda != "none":
            x_aug, index = self.agda(x, feats["attention"].detach())
            feats_aug = self.forward_features(x_aug)
            ce_aug = F.binary_cross_entropy_with_logits(self.forward_head(feats_aug), target)
            others = 1 - F.one_hot(index, self.cfg.num_maps).to(x.dtype)  # the maps AGDA did not use
            gap = torch.linalg.vector_norm(feats_aug["attention"] - feats["attention"], dim=(2, 3))
            match = (gap * others).mean()
            loss = loss + ce_aug + 0.1 * match
            losses.update(ce_agda=ce_aug.detach(), match=match.detach())
        return {"logit": logit, "attention": feats["attention"], "feature": feature, "loss": loss, "losses": losses}

    def on_epoch_end(self) -> None:
        """a <- 0.9 a: the centres settle as training goes on."""
        self.ril.decay_rate()


@register_model("mat")
def mat(pretrained: bool = False, tiny: bool = False, **cfg) -> MAT:
    """MAT; `tiny=True` (or the name `mat_tiny`) gives the 64-px test config."""
    return MAT(build_config(MATConfig, tiny=tiny, **cfg), pretrained=pretrained)


@register_model("mat_tiny")
def mat_tiny(pretrained: bool = False, **cfg) -> MAT:
    return mat(pretrained=pretrained, tiny=True, **cfg)
