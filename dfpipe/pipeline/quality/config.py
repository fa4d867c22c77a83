"""`QualityConfig`: which metrics `score-quality` computes, and how."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dfpipe.pipeline.quality.ewarp import DIS_PRESETS

METRICS = ("mask_ssim", "lpips", "ewarp")  # lpips also gives vgg_mse; mask_ssim also ssim


@dataclass(frozen=True)
class QualityConfig:
    """The metrics to compute (`lpips` also gives `vgg_mse`; `mask_ssim` also `ssim`), on face
    crops or whole frames, and the Ewarp flow preset; device and batch size change only speed."""

    metrics: tuple[str, ...] = METRICS
    full_frame: bool = False
    flow_preset: str = "fast"
    weights: str | None = None  # VGG-16 ImageNet file (default: the weights cache)
    device: str = "cpu"
    batch_size: int = 8

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"metrics must be a non-empty subset of {', '.join(METRICS)}; got {', '.join(self.metrics) or 'none'}")
        if self.flow_preset not in DIS_PRESETS:
            raise ValueError(f"flow preset must be one of {', '.join(DIS_PRESETS)}, got {self.flow_preset!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def output_params(self) -> dict[str, Any]:
        """What decides the numbers (the weights file is recorded by its hash instead)."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "batch_size", "weights")}
