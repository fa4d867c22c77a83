"""`ExtractConfig`: everything that decides what `extract` writes (plus a few speed knobs)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from dfpipe.manifests.codec import IMAGE_FORMATS
from dfpipe.pipeline.faces.align import CROPS
from dfpipe.pipeline.video.decode import Sampling

KEEP_MODES = ("all", "largest", "main")


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that decides what `extract` writes (plus a few pure speed knobs)."""

    every: int | None = None
    count: int | None = None
    fps: float | None = None
    size: int = 320
    crop: str = "align"
    margin: float = 0.4
    detector: str = "mobilenet0.25"
    weights: str | None = None
    device: str = "cpu"
    max_side: int | None = 640
    score_threshold: float = 0.8
    nms_threshold: float = 0.4
    min_face: int = 40
    keep: str = "all"
    max_tracks: int | None = None
    min_track_len: int = 1
    smooth: int = 0
    cut_threshold: float = 0.6  # colour-histogram distance that starts a new shot (faces/shots.py); 0 = off
    image_format: str = "png"
    jpeg_quality: int = 95
    batch_size: int = 8
    backend: str = "pyav"
    max_pixels: int | None = 67_108_864  # 8192 x 8192

    #: knobs that change speed but not results; left out of the run.json comparison
    SPEED_ONLY = ("device", "batch_size", "weights")

    def __post_init__(self) -> None:
        self.sampling()  # validates every / count / fps
        if self.crop not in CROPS:
            raise ValueError(f"--crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        from dfpipe.models import DETECTOR_MODELS  # not pipeline.detect: the client needs no torch

        if self.detector not in DETECTOR_MODELS:
            raise ValueError(f"--detector must be one of {', '.join(DETECTOR_MODELS)}, got {self.detector!r}")
        if self.keep not in KEEP_MODES:
            raise ValueError(f"--keep must be one of {', '.join(KEEP_MODES)}, got {self.keep!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"--image-format must be one of {', '.join(IMAGE_FORMATS)}, got {self.image_format!r}")
        if not 16 <= self.size <= 4096:
            raise ValueError(f"--size must be between 16 and 4096 pixels, got {self.size}")
        for name in ("min_face", "smooth"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.cut_threshold <= 1:
            raise ValueError(f"--cut-threshold must be in 0..1 (0 = no cut detection), got {self.cut_threshold}")
        if self.min_track_len < 1:
            raise ValueError(f"--min-track-len must be >= 1, got {self.min_track_len}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}")

    def sampling(self) -> Sampling:
        return Sampling(every=self.every, count=self.count, fps=self.fps)

    def output_params(self) -> dict[str, Any]:
        """The parameters a resumed run must share with the first one."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.SPEED_ONLY}
