"""`QualityConfig`: which metrics `score-quality` computes, and how."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dfpipe.pipeline.quality.ewarp import DIS_PRESETS

#: lpips also gives vgg_mse; mask_ssim also ssim; identity gives id_to_source, id_to_target and
#: (per video) id_retrieval; pose gives pose_error, expression expression_error, seam seam.
METRICS = ("mask_ssim", "lpips", "ewarp", "identity", "pose", "expression", "seam")
#: Metrics that need an optional install or a weights file that may be absent offline (dlib
#: for identity, the VGG-16 ImageNet file for lpips): in the default list they are skipped with
#: a note when it is missing; named in `metrics` they are required.
OPTIONAL = ("identity", "lpips")


@dataclass(frozen=True)
class QualityConfig:
    """The metrics to compute (`lpips` also gives `vgg_mse`; `mask_ssim` also `ssim`), on face
    crops or whole frames, and the Ewarp flow preset; device and batch size change only speed.
    identity, pose, expression and seam are per face: on crops only (null with full_frame)."""

    metrics: tuple[str, ...] = METRICS
    full_frame: bool = False
    flow_preset: str = "fast"
    weights: str | None = None  # VGG-16 ImageNet file (default: the weights cache)
    device: str = "cpu"
    batch_size: int = 8

    def __post_init__(self) -> None:
        # `mask-ssim` and `Mask_SSIM` name `mask_ssim`, in the order given, once each (frozen: set once here)
        object.__setattr__(self, "metrics", tuple(dict.fromkeys(m.strip().lower().replace("-", "_") for m in self.metrics)))
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"metrics must be a non-empty subset of {', '.join(METRICS)}; got {', '.join(self.metrics) or 'none'}")
        if self.flow_preset not in DIS_PRESETS:
            raise ValueError(f"flow preset must be one of {', '.join(DIS_PRESETS)}, got {self.flow_preset!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def optional(self) -> tuple[str, ...]:
        """The metrics a run may leave out when what they need is missing: those of `OPTIONAL`,
        when the metrics are the default list (a user who names them wants them)."""
        return OPTIONAL if tuple(self.metrics) == METRICS else ()

    def output_params(self) -> dict[str, Any]:
        """What decides the numbers (the weights file is recorded by its hash instead)."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "batch_size", "weights")}
