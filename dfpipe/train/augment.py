"""Training augmentations of M2TR's recipe: flip, colour jitter, blur, noise, JPEG.

Every call takes its own `numpy.random.Generator`, seeded per sample by the dataset, so
an epoch is reproducible and a resumed run sees the same images as an uninterrupted one
whatever the number of loader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5  # probabilities of each transform
    jitter: float = 0.5
    blur: float = 0.2
    noise: float = 0.2
    jpeg: float = 0.3
    jitter_strength: float = 0.2  # brightness / contrast / saturation factor range 1 +- this
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_std: tuple[float, float] = (2.0, 8.0)  # in 0..255 units
    jpeg_quality: tuple[int, int] = (40, 95)


#: Named recipes for `--augment`: the M2TR recipe; geometry and colour only (keeps the
#: blur and compression traces some manipulations leave); nothing.
PRESETS = {
    "full": AugmentConfig(),
    "light": AugmentConfig(blur=0.0, noise=0.0, jpeg=0.0),
    "none": AugmentConfig(flip=0.0, jitter=0.0, blur=0.0, noise=0.0, jpeg=0.0),
}


def preset(name: str) -> AugmentConfig:
    if name not in PRESETS:
        raise ValueError(f"--augment must be one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name]


def colour_jitter(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast and saturation scaled by factors in [1 - s, 1 + s]."""
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    x = img.astype(np.float32) * b
    x = (x - x.mean()) * c + x.mean()
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - grey[..., None]) * s + grey[..., None]
    return np.clip(x, 0, 255).astype(np.uint8)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not JPEG-encode the crop")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def augment(
    img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Augment an RGB uint8 crop and its float mask together (only the flip moves pixels,
    so only the flip touches the mask)."""
    draws = rng.random(5)
    if draws[0] < cfg.flip:
        img, mask = img[:, ::-1], mask[:, ::-1]
    if draws[1] < cfg.jitter:
        img = colour_jitter(img, rng, cfg.jitter_strength)
    if draws[2] < cfg.blur:
        img = cv2.GaussianBlur(np.ascontiguousarray(img), (0, 0), float(rng.uniform(*cfg.blur_sigma)))
    if draws[3] < cfg.noise:
        noise = rng.normal(0.0, rng.uniform(*cfg.noise_std), size=img.shape)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if draws[4] < cfg.jpeg:
        img = jpeg_roundtrip(np.ascontiguousarray(img), int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return np.ascontiguousarray(img), np.ascontiguousarray(mask)
