"""`ExtractConfig`: everything that decides what `extract` writes (plus a few speed knobs)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from dfpipe.manifests.codec import IMAGE_FORMATS
from dfpipe.pipeline.faces.align import CROPS
from dfpipe.pipeline.video.decode import Sampling

KEEP_MODES = ("all", "largest", "main")
#: `--mesh`: the face landmark model run on every kept face, or none (5 points only)
MESH_MODELS = ("facemesh", "none")


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that decides what `extract` writes (plus a few pure speed knobs)."""

    every: int | None = None
    count: int | None = None
    fps: float | None = None
    size: int = 320
    crop: str = "auto"  # auto = mesh with --mesh facemesh (steadier along tracks, bench/extract.py m), else align
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
    mesh: str = "facemesh"  # 468-point Face Mesh and head pose per face; "none" = 5 points only
    flag_mesh_score: float = 0.5  # flag_low_mesh_score under this Face Mesh presence score
    flag_pose: float = 60.0  # flag_extreme_pose when |yaw| or |pitch| exceeds this (degrees)
    flag_tiny: int = 64  # flag_tiny when the box's shorter side is under this (pixels)
    flag_blur: float = 40.0  # flag_blurry when sharpness (Laplacian variance at 128 px) is under this
    image_format: str = "png"
    jpeg_quality: int = 95
    batch_size: int = 8
    backend: str = "pyav"
    max_pixels: int | None = 67_108_864  # 8192 x 8192

    #: knobs that change speed but not results; left out of the run.json comparison
    SPEED_ONLY = ("device", "batch_size", "weights")

    def __post_init__(self) -> None:
        self.sampling()  # validates every / count / fps
        if self.crop not in ("auto", *CROPS):
            raise ValueError(f"--crop must be one of auto, {', '.join(CROPS)}, got {self.crop!r}")
        if self.crop == "auto":  # resolved here, so run.json and the crop column say what was used
            object.__setattr__(self, "crop", "align" if self.mesh == "none" else "mesh")
        from dfpipe.models import DETECTOR_MODELS  # not pipeline.detect: the client needs no torch

        if self.detector not in DETECTOR_MODELS:
            raise ValueError(f"--detector must be one of {', '.join(DETECTOR_MODELS)}, got {self.detector!r}")
        if self.mesh not in MESH_MODELS:
            raise ValueError(f"--mesh must be one of {', '.join(MESH_MODELS)}, got {self.mesh!r}")
        if self.crop == "mesh" and self.mesh == "none":
            raise ValueError("--crop mesh needs the face mesh: drop --mesh none or use --crop align")
        if not 0 <= self.flag_mesh_score <= 1:
            raise ValueError(f"--flag-mesh-score must be in 0..1, got {self.flag_mesh_score}")
        if not 0 < self.flag_pose <= 180:
            raise ValueError(f"--flag-pose must be in (0, 180] degrees, got {self.flag_pose}")
        if self.flag_tiny < 0 or self.flag_blur < 0:
            raise ValueError("--flag-tiny and --flag-blur must be >= 0")
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
