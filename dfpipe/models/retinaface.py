"""RetinaFace (Deng et al. 2019) with the module tree of the public Pytorch_Retinaface code.

The tree is written here so the published state dicts (`mobilenet0.25_Final.pth`,
`Resnet50_Final.pth`) load with `strict=True`; priors, decoding and input
normalisation follow the project spec (`specs/faces.md`). One class serves both backbones through
`RetinaFaceConfig`. The model works in *network-input* pixels; resizing frames and mapping
results back to the caller's image is the job of `dfpipe.pipeline.faces.detect`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dfpipe.models.registry import register_model
from dfpipe.runtime.weights import WeightsError, resolve_weights

# --------------------------------------------------------------------------- building blocks


def conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0, relu: bool = True) -> nn.Sequential:
    """3x3 conv + BN (+ LeakyReLU); keys `.0` conv, `.1` BN as in the published weights."""
    layers: list[nn.Module] = [nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup)]
    if relu:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


def conv_bn1x1(inp: int, oup: int, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise-separable block: keys `.0` dw conv, `.1` BN, `.3` pw conv, `.4` BN."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetV1x025(nn.Module):
    """MobileNetV1 at width 0.25; returns the stride 8, 16 and 32 maps (64/128/256 ch)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2, leaky=0.1),
            conv_dw(8, 16, 1),
            conv_dw(16, 32, 2),
            conv_dw(32, 32, 1),
            conv_dw(32, 64, 2),
            conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        return [c3, c4, self.stage3(c4)]


class ResNet50Body(nn.Module):
    """torchvision ResNet-50 without avgpool/fc; returns layers 2-4 (512/1024/2048 ch).

    Attribute names equal torchvision's, so keys read `body.layer2.0.conv1.weight` etc.,
    as in the published ResNet-50 RetinaFace weights."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision  # only here: importing it costs ~3 s (torch._dynamo), see nms()

        net = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


class FPN(nn.Module):
    """Top-down feature pyramid: 1x1 laterals, nearest upsample-add, 3x3 merge."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int, leaky: float) -> None:
        super().__init__()
        self.output1 = conv_bn1x1(in_channels[0], out_channels, leaky)
        self.output2 = conv_bn1x1(in_channels[1], out_channels, leaky)
        self.output3 = conv_bn1x1(in_channels[2], out_channels, leaky)
        self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return [p3, p4, p5]


class SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 and 7x7 receptive fields (as stacked
    3x3 convs) concatenated to out/2 + out/4 + out/4 channels."""

    def __init__(self, in_channels: int, out_channels: int, leaky: float) -> None:
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SSH out_channels must be a multiple of 4, got {out_channels}")
        q = out_channels // 4
        self.conv3X3 = conv_bn(in_channels, 2 * q, relu=False)
        self.conv5X5_1 = conv_bn(in_channels, q, leaky=leaky)
        self.conv5X5_2 = conv_bn(q, q, relu=False)
        self.conv7X7_2 = conv_bn(q, q, leaky=leaky)
        self.conv7x7_3 = conv_bn(q, q, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = self.conv5X5_1(x)
        c7 = self.conv7x7_3(self.conv7X7_2(c5_1))
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), c7], dim=1))


class Head(nn.Module):
    """A 1x1 conv predicting `per_anchor` values for each anchor of each cell, flattened to
    (B, cells * anchors, per_anchor) in the order the priors are generated."""

    def __init__(self, in_channels: int, num_anchors: int, per_anchor: int) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(in_channels, num_anchors * per_anchor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.per_anchor)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RetinaFaceConfig:
    """Everything that differs between the two published RetinaFace variants."""

    name: str
    backbone: str  # "mobilenet0.25" | "resnet50"
    in_channels: tuple[int, int, int]  # backbone channels at strides 8, 16, 32
    out_channels: int  # FPN / SSH width
    weights_key: str  # entry in dfpipe.runtime.weights.REGISTRY
    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variance: tuple[float, float] = (0.1, 0.2)
    mean_bgr: tuple[float, float, float] = (104.0, 117.0, 123.0)

    @property
    def num_anchors(self) -> int:
        return len(self.min_sizes[0])

    @property
    def leaky(self) -> float:
        """Pytorch_Retinaface uses slope 0.1 in the neck only for narrow (<= 64 ch) necks."""
        return 0.1 if self.out_channels <= 64 else 0.0


CONFIGS: dict[str, RetinaFaceConfig] = {
    "mobilenet0.25": RetinaFaceConfig(
        name="mobilenet0.25",
        backbone="mobilenet0.25",
        in_channels=(64, 128, 256),
        out_channels=64,
        weights_key="retinaface_mobilenet0.25",
    ),
    "resnet50": RetinaFaceConfig(
        name="resnet50",
        backbone="resnet50",
        in_channels=(512, 1024, 2048),
        out_channels=256,
        weights_key="retinaface_resnet50",
    ),
}


# --------------------------------------------------------------------------- priors and decoding


@lru_cache(maxsize=32)
def _priors(height: int, width: int, min_sizes, steps, device: str) -> torch.Tensor:
    rows = []
    for sizes, step in zip(min_sizes, steps):
        fh, fw = -(-height // step), -(-width // step)  # ceil: what the stride-2 convs produce
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * step / height, (np.arange(fw) + 0.5) * step / width, indexing="ij")
        for_cell = []
        for s in sizes:  # anchors of a cell are innermost, matching the head's flattening
            for_cell.append(
                np.stack([cx, cy, np.full_like(cx, s / width), np.full_like(cy, s / height)], axis=-1)
            )
        rows.append(np.stack(for_cell, axis=2).reshape(-1, 4))
    return torch.from_numpy(np.concatenate(rows).astype(np.float32)).to(device)


def prior_boxes(cfg: RetinaFaceConfig, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(P, 4) anchors as (cx, cy, w, h), normalised by the input size; cached per size."""
    return _priors(height, width, cfg.min_sizes, cfg.steps, str(device))


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variance: tuple[float, float]) -> torch.Tensor:
    """Regression offsets -> normalised (x1, y1, x2, y2)."""
    centre = priors[:, :2] + loc[:, :2] * variance[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variance[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def decode_landmarks(landm: torch.Tensor, priors: torch.Tensor, variance: tuple[float, float]) -> torch.Tensor:
    """Regression offsets -> normalised (P, 5, 2) points."""
    offsets = landm.reshape(-1, 5, 2)
    return priors[:, None, :2] + offsets * variance[0] * priors[:, None, 2:]


# --------------------------------------------------------------------------- the model


@dataclass
class RawDetections:
    """One image's detections in network-input pixels (tensors on the model's device)."""

    boxes: torch.Tensor  # (N, 4) x1 y1 x2 y2
    scores: torch.Tensor  # (N,)
    landmarks: torch.Tensor  # (N, 5, 2)
    n_weak: int = 0  # faces scoring in [weak_floor, score_threshold]: found, left out


class RetinaFace(nn.Module):
    """RetinaFace: backbone -> FPN -> SSH per level -> class / box / landmark heads."""

    def __init__(self, cfg: RetinaFaceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.backbone == "mobilenet0.25":
            self.body: nn.Module = MobileNetV1x025()
        elif cfg.backbone == "resnet50":
            self.body = ResNet50Body()
        else:
            raise ValueError(f"unknown RetinaFace backbone {cfg.backbone!r}")
        self.fpn = FPN(cfg.in_channels, cfg.out_channels, cfg.leaky)
        self.ssh1 = SSH(cfg.out_channels, cfg.out_channels, cfg.leaky)
        self.ssh2 = SSH(cfg.out_channels, cfg.out_channels, cfg.leaky)
        self.ssh3 = SSH(cfg.out_channels, cfg.out_channels, cfg.leaky)
        levels = len(cfg.steps)
        self.ClassHead = nn.ModuleList(Head(cfg.out_channels, cfg.num_anchors, 2) for _ in range(levels))
        self.BboxHead = nn.ModuleList(Head(cfg.out_channels, cfg.num_anchors, 4) for _ in range(levels))
        self.LandmarkHead = nn.ModuleList(Head(cfg.out_channels, cfg.num_anchors, 10) for _ in range(levels))
        self.default_cfg = {"mean_bgr": cfg.mean_bgr, "input": "BGR float, mean-subtracted, NCHW, any size"}

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.fpn(self.body(x))
        return [self.ssh1(feats[0]), self.ssh2(feats[1]), self.ssh3(feats[2])]

    def forward_head(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        landm = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, logits, landm

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, P, 4) box offsets, (B, P, 2) class logits, (B, P, 10) landmark offsets."""
        return self.forward_head(self.forward_features(x))

    def preprocess(self, images_rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> the network's input (BGR, mean-subtracted, NCHW float)."""
        device = next(self.parameters()).device
        t = torch.as_tensor(images_rgb).to(device)
        t = t.flip(-1).permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.cfg.mean_bgr, device=device).view(1, 3, 1, 1)
        return (t - mean).contiguous()

    @torch.inference_mode()
    def detect(
        self,
        x: torch.Tensor,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.4,
        pre_nms_top_k: int = 5000,
        max_detections: int = 750,
        weak_floor: float | None = None,
    ) -> list[RawDetections]:
        """Detect faces in a preprocessed batch; results in the batch's pixel coordinates,
        sorted by score (highest first).

        With `weak_floor`, also count the faces scoring from there up to the threshold
        (`n_weak`), as greedy NMS over all of them would keep them: a weak box a kept face
        overlaps is no face of its own. The kept faces are the same either way (NMS keeps a
        box only against higher-scoring ones), and the count costs one small NMS."""
        height, width = x.shape[-2:]
        loc, logits, landm = self(x)
        scores = logits.softmax(dim=-1)[..., 1]
        priors = prior_boxes(self.cfg, height, width, x.device)
        scale = torch.tensor([width, height], dtype=torch.float32, device=x.device)
        out = []
        floor = score_threshold if weak_floor is None else min(weak_floor, score_threshold)
        for b in range(x.shape[0]):
            keep = scores[b] > floor
            s = scores[b][keep]
            if s.numel() > pre_nms_top_k:
                s, order = s.topk(pre_nms_top_k)
            else:
                order = torch.argsort(s, descending=True)
                s = s[order]
            idx = keep.nonzero().squeeze(1)[order]
            p = priors[idx]
            boxes = decode_boxes(loc[b][idx], p, self.cfg.variance) * scale.repeat(2)
            points = decode_landmarks(landm[b][idx], p, self.cfg.variance) * scale
            n_strong = int((s > score_threshold).sum())  # s is sorted: the strong boxes come first
            kept = nms(boxes[:n_strong], s[:n_strong], nms_threshold)[:max_detections]
            n_weak = _count_weak(boxes[n_strong:], s[n_strong:], boxes[kept], nms_threshold)
            out.append(RawDetections(boxes[kept].float(), s[kept].float(), points[kept].float(), n_weak))
        return out


def _count_weak(weak: torch.Tensor, scores: torch.Tensor, kept: torch.Tensor, iou_threshold: float) -> int:
    """Faces among the weak boxes: those no kept face overlaps, after NMS among themselves."""
    if weak.numel() == 0:
        return 0
    if kept.numel():
        weak_ok = box_iou(weak, kept).amax(dim=1) <= iou_threshold
        weak, scores = weak[weak_ok], scores[weak_ok]
    return int(len(nms(weak, scores, iou_threshold)))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of N x 4 and M x 4 boxes (x1 y1 x2 y2)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(dim=-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(dim=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, the same rule as `torchvision.ops.nms` (drop a box
    whose IoU with a kept higher-scoring one exceeds the threshold): indices kept, by
    decreasing score. OpenCV's implementation, because importing torchvision pulls in
    torch._dynamo and adds ~3 s to every worker process that detects faces."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    b = boxes.detach().float().cpu().numpy()
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    # OpenCV wants non-negative scores: rank by score instead (same order, any score range)
    order = np.argsort(-scores.detach().float().cpu().numpy(), kind="stable")
    rank = np.empty(len(order), np.float32)
    rank[order] = np.arange(len(order), 0, -1)
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), rank.tolist(), 0.0, float(iou_threshold)), np.int64).reshape(-1)
    keep = keep[np.argsort(-rank[keep], kind="stable")]
    return torch.from_numpy(keep).to(boxes.device)


# --------------------------------------------------------------------------- weights and constructors


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a Pytorch_Retinaface checkpoint safely; drop a DataParallel `module.` prefix."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or pickled code
        raise WeightsError(f"{path} is not a PyTorch weights file: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def build_retinaface(config: str, pretrained: bool = False, weights: str | Path | None = None) -> RetinaFace:
    """A RetinaFace in eval mode; with `pretrained` (or an explicit `weights` path) its
    weights come from the weights cache and must match the module tree exactly."""
    if config not in CONFIGS:
        raise ValueError(f"unknown RetinaFace config {config!r}; known: {', '.join(CONFIGS)}")
    cfg = CONFIGS[config]
    model = RetinaFace(cfg)
    if pretrained or weights is not None:
        path = resolve_weights(cfg.weights_key, weights)
        try:
            model.load_state_dict(load_state_dict_file(path), strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{path} does not fit RetinaFace {config}: {exc}") from exc
    return model.eval()


@register_model("retinaface_mobilenet0.25")
def retinaface_mobilenet025(pretrained: bool = False, weights: str | Path | None = None) -> RetinaFace:
    return build_retinaface("mobilenet0.25", pretrained, weights)


@register_model("retinaface_resnet50")
def retinaface_resnet50(pretrained: bool = False, weights: str | Path | None = None) -> RetinaFace:
    return build_retinaface("resnet50", pretrained, weights)
