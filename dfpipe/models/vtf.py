"""VTF: video-level temporal fusion of per-frame detector features.

The journal version of M2TR (Wang et al., "M2TR: Multi-modal Multi-scale Transformers for
Deepfake Detection", extended in IEEE TPAMI) reports video-level results two ways: "M2TR
mean" averages the frame outputs of a video, "M2TR vtf" feeds the frame features of a clip to
a VTF block, a temporal transformer whose class token gives the video decision. This module
is that block as a small head over a *frozen* frame detector's pooled features (M2TR's or
MAT's `out["feature"]`).

What is ours, not the paper's: the sizes (`dim` 256, `depth` 2, `heads` 4, MLP ratio 2,
dropout 0.1, up to 64 positions), a per-dimension standardisation of the incoming frame
features with statistics of the training features (buffers saved with the head: a frozen
detector's pooled features share a large per-dimension offset, and the real/fake signal lies
in small deviations from it), pre-norm layers, and the optional `positions` argument that
lets training place short clips anywhere in the position table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class VTFConfig:
    """Sizes of the temporal head; `dim_in` is the frame model's `num_features`."""

    dim_in: int
    dim: int = 256
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    drop: float = 0.1
    max_frames: int = 64


class VTF(nn.Module):
    """Frame features (B, T, D) -> one fake logit per sequence, read from a CLS token."""

    def __init__(self, cfg: VTFConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ValueError(f"VTF dim {cfg.dim} does not split into {cfg.heads} heads")
        if cfg.max_frames < 1:
            raise ValueError(f"VTF max_frames must be at least 1, got {cfg.max_frames}")
        self.cfg = cfg
        self.register_buffer("feat_mean", torch.zeros(cfg.dim_in))
        self.register_buffer("feat_scale", torch.ones(cfg.dim_in))
        self.proj = nn.Linear(cfg.dim_in, cfg.dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos = nn.Parameter(torch.zeros(1, cfg.max_frames, cfg.dim))  # frame order in the clip
        self.drop = nn.Dropout(cfg.drop)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.dim, cfg.heads, dim_feedforward=int(cfg.dim * cfg.mlp_ratio),
                                       dropout=cfg.drop, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, 1)
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)

    @torch.no_grad()
    def set_feature_stats(self, feats: torch.Tensor) -> None:
        """Standardise inputs with the mean and spread of `feats` (N x D, the training
        frames); a dimension that barely varies gets 1% of the median spread, so it cannot
        blow up on unseen data."""
        feats = feats.float().reshape(-1, feats.shape[-1])
        std = feats.std(dim=0, unbiased=False) if len(feats) > 1 else torch.ones_like(feats[0])
        floor = 0.01 * std.median().clamp(min=1e-12)
        self.feat_mean.copy_(feats.mean(dim=0))
        self.feat_scale.copy_(torch.maximum(std, floor))

    def forward(self, feats: torch.Tensor, pad_mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """`feats` (B, T, D), `pad_mask` (B, T) True where a frame is padding, `positions`
        (B, T) indices into the position table (default 0..T-1) -> logits (B,)."""
        b, t, _ = feats.shape
        if t > self.cfg.max_frames:
            raise ValueError(f"VTF takes at most {self.cfg.max_frames} frames, got {t}")
        if positions is None:
            pos = self.pos[:, :t]
        else:
            pos = self.pos[0, positions]
        x = self.proj((feats - self.feat_mean) / self.feat_scale) + pos
        if pad_mask is not None:  # padded frames carry nothing (and no NaN from garbage)
            x = x.masked_fill(pad_mask[..., None], 0.0)
        x = self.drop(torch.cat([self.cls.expand(b, -1, -1), x], dim=1))
        mask = None
        if pad_mask is not None:  # the CLS token is never padding, so no row is all masked
            mask = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=pad_mask.device), pad_mask.bool()], dim=1)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=mask)
        return self.head(self.norm(x[:, 0])).squeeze(1)
