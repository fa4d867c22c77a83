"""Face detection over frames: `FaceDetector.detect(images) -> list[Detections]`.

The detector takes RGB uint8 frames of any size, shrinks large ones so the long side is
`max_side` (RetinaFace finds video-sized faces as well at 640 px and runs several times
faster), batches frames of equal size through the network, and returns boxes, scores and
five landmarks in the *caller's* pixel coordinates. Boxes are not clipped to the frame:
a face cut by the border keeps its full extent, which square crops and tracking need.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from dfpipe.models import DETECTOR_MODELS
from dfpipe.runtime.device import resolve_device


class DetectError(ValueError):
    """Bad input to the detector (an image it cannot read, or bad settings)."""


#: Detections scoring from here up to the score threshold are faces the threshold left out:
#: counted (`Detections.n_weak`), so a run can say how many it dropped for their score. The
#: kept faces are the same as without the count.
WEAK_SCORE_FLOOR = 0.5


@dataclass
class Detections:
    """Faces found in one image, in that image's pixels, highest score first."""

    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2
    scores: np.ndarray  # (N,) float32
    landmarks: np.ndarray  # (N, 5, 2) float32: left eye, right eye, nose, left mouth, right mouth
    n_weak: int = 0  # faces scoring in [WEAK_SCORE_FLOOR, threshold): found, but left out

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def scaled(self, sx: float, sy: float) -> "Detections":
        """The same detections with x multiplied by `sx` and y by `sy`."""
        factor = np.array([sx, sy], np.float32)
        return Detections(
            (self.boxes.reshape(-1, 2, 2) * factor).reshape(-1, 4).astype(np.float32),
            self.scores.astype(np.float32),
            (self.landmarks * factor).astype(np.float32),
            self.n_weak,
        )


def as_rgb(image: np.ndarray) -> np.ndarray:
    """RGB uint8 H x W x 3 from RGB, RGBA (alpha dropped) or greyscale uint8 input."""
    if not isinstance(image, np.ndarray):
        raise DetectError(f"expected a numpy image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise DetectError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.ndim != 3 or image.shape[2] != 3:
        raise DetectError(f"expected an H x W x 3 RGB (or RGBA / greyscale) image, got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise DetectError(f"image of shape {image.shape} is too small to search for faces")
    return np.ascontiguousarray(image)


def detection_size(height: int, width: int, max_side: int | None, upscale: bool = False) -> tuple[int, int]:
    """(height, width) the network sees: long side `max_side` when larger (or when `upscale`)."""
    if max_side is None:
        return height, width
    long_side = max(height, width)
    if long_side <= max_side and not upscale:
        return height, width
    scale = max_side / long_side
    return max(1, round(height * scale)), max(1, round(width * scale))


# A backend maps a stacked batch (B, H, W, 3) of same-size RGB frames to Detections in
# that batch's pixels.
Backend = Callable[[np.ndarray], list[Detections]]


class _RetinaFaceBackend:
    def __init__(self, model: str, weights: str | Path | None, device: torch.device,
                 score_threshold: float, nms_threshold: float) -> None:
        from dfpipe.models.retinaface import build_retinaface

        self.net = build_retinaface(model, pretrained=True, weights=weights).to(device)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def __call__(self, batch: np.ndarray) -> list[Detections]:
        with torch.inference_mode():
            raw = self.net.detect(self.net.preprocess(batch), self.score_threshold, self.nms_threshold,
                                  weak_floor=WEAK_SCORE_FLOOR)
        return [
            Detections(r.boxes.cpu().numpy(), r.scores.cpu().numpy(), r.landmarks.cpu().numpy(), r.n_weak) for r in raw
        ]


class _MTCNNBackend:
    """facenet-pytorch's MTCNN, when installed; same Detections, its own internal NMS."""

    def __init__(self, device: torch.device, score_threshold: float) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise DetectError(
                "model='mtcnn' needs the optional package facenet-pytorch (pip install facenet-pytorch); "
                "the default RetinaFace models need nothing extra"
            ) from exc
        self.net = MTCNN(keep_all=True, device=device)
        self.score_threshold = score_threshold

    def __call__(self, batch: np.ndarray) -> list[Detections]:
        boxes, probs, points = self.net.detect(batch, landmarks=True)
        out = []
        for b, p, pts in zip(boxes, probs, points):
            if b is None:
                out.append(Detections.empty())
                continue
            scores = np.asarray(p, np.float32)
            keep = scores >= self.score_threshold
            order = np.argsort(-scores[keep])
            out.append(
                Detections(
                    np.asarray(b, np.float32)[keep][order],
                    scores[keep][order],
                    np.asarray(pts, np.float32)[keep][order].reshape(-1, 5, 2),
                    int(((scores >= WEAK_SCORE_FLOOR) & ~keep).sum()),
                )
            )
        return out


class FaceDetector:
    """Batched face detection on RGB frames (see module docstring)."""

    def __init__(
        self,
        model: str = "mobilenet0.25",
        weights: str | Path | None = None,
        device: str = "cpu",
        max_side: int | None = 640,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.4,
        batch_size: int = 8,
        upscale: bool = False,
    ) -> None:
        if model not in DETECTOR_MODELS:
            raise DetectError(f"unknown detector {model!r}; choose one of {', '.join(DETECTOR_MODELS)}")
        if max_side is not None and max_side < 32:
            raise DetectError(f"max_side must be at least 32 pixels (or None), got {max_side}")
        if not 0.0 <= score_threshold < 1.0:
            raise DetectError(f"score_threshold must be in [0, 1), got {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise DetectError(f"nms_threshold must be in (0, 1], got {nms_threshold}")
        if batch_size < 1:
            raise DetectError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.device = resolve_device(device)
        self.max_side = max_side
        self.upscale = upscale
        self.batch_size = batch_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        if model == "mtcnn":
            self._backend: Backend = _MTCNNBackend(self.device, score_threshold)
        else:
            self._backend = _RetinaFaceBackend(model, weights, self.device, score_threshold, nms_threshold)

    def detection_input(self, image: np.ndarray) -> np.ndarray:
        """The image as the network sees it (RGB, downscaled to `max_side`): made ahead of
        `detect`, e.g. in a decoding thread, and handed to it as `inputs`."""
        frame = as_rgb(image)
        return self._resized(frame, *detection_size(frame.shape[0], frame.shape[1], self.max_side, self.upscale))

    def detect(self, images: Sequence[np.ndarray], inputs: Sequence[np.ndarray] | None = None) -> list[Detections]:
        """One `Detections` per input image, in the same order. `inputs` (optional): each
        image's `detection_input`, already made; boxes still come back in image pixels."""
        frames = [as_rgb(im) for im in images]
        sizes = [detection_size(f.shape[0], f.shape[1], self.max_side, self.upscale) for f in frames]
        if inputs is not None:
            if len(inputs) != len(frames) or any(inp.shape[:2] != size for inp, size in zip(inputs, sizes)):
                raise DetectError("inputs must be the images' detection_input, one per image")
        else:
            inputs = [None] * len(frames)  # type: ignore[list-item]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, size in enumerate(sizes):
            groups[size].append(i)  # equal sizes batch directly; nothing is padded
        results: list[Detections | None] = [None] * len(frames)
        for (h, w), members in groups.items():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                batch = np.stack([inputs[i] if inputs[i] is not None else self._resized(frames[i], h, w) for i in chunk])
                for i, det in zip(chunk, self._backend(batch)):
                    fh, fw = frames[i].shape[:2]
                    results[i] = det if (h, w) == (fh, fw) else det.scaled(fw / w, fh / h)
        return results  # type: ignore[return-value]

    @staticmethod
    def _resized(frame: np.ndarray, h: int, w: int) -> np.ndarray:
        if frame.shape[:2] == (h, w):
            return frame
        interp = cv2.INTER_AREA if h < frame.shape[0] else cv2.INTER_LINEAR
        return cv2.resize(frame, (w, h), interpolation=interp)


@lru_cache(maxsize=4)
def load_detector(
    model: str = "mobilenet0.25",
    weights: str | Path | None = None,
    device: str = "cpu",
    max_side: int | None = 640,
    score_threshold: float = 0.8,
    nms_threshold: float = 0.4,
    batch_size: int = 8,
    upscale: bool = False,
) -> FaceDetector:
    """A `FaceDetector` built once per process and settings, so per-task calls on Dask
    workers reuse the loaded network instead of reading the weights every time."""
    return FaceDetector(model, weights, device, max_side, score_threshold, nms_threshold, batch_size, upscale)
