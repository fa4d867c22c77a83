"""Self-blended images (SBI, Shiohara & Yamasaki, CVPR 2022): a face blended with a
slightly changed copy of itself, so the only cue left is the blending itself.

The copy is colour-jittered (RGB shift +-20, hue/saturation/value, brightness/contrast
+-0.1, each with p=0.3 as in SBI), then downscaled or sharpened, then shifted (x +-3%,
y +-1.5% of the face) and scaled (0.95..1/0.95) about the face centre. Our reading of
SBI's "HSV +-0.3": saturation and value scaled by 1 +- 0.3 at most, hue turned by at most
+-0.3 x 10 degrees. Parameters are drawn once per fake, so a self-blended video does not
flicker; a new seed or another variant of the track (`--variants`) gives new ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from dfpipe.pipeline.masks.facemask import REFERENCE_FACE, face_scale

_P = 0.3


@dataclass(frozen=True)
class SelfBlendParams:
    rgb_shift: tuple[float, float, float]
    hue: float  # degrees
    saturation: float  # factor
    value: float  # factor
    brightness: float  # added, fraction of 255
    contrast: float  # factor
    degrade: str  # "downscale" or "sharpen"
    degrade_amount: float  # downscale factor (0.25..0.5) or sharpen strength
    shift: tuple[float, float]  # fraction of the face size
    scale: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "SelfBlendParams":
        on = lambda: rng.random() < _P  # noqa: E731 - each SBI colour op fires with p=0.3
        rgb = tuple(rng.uniform(-20, 20, 3)) if on() else (0.0, 0.0, 0.0)
        hsv = on()
        hue = float(rng.uniform(-3, 3)) if hsv else 0.0
        sat = float(rng.uniform(0.7, 1.3)) if hsv else 1.0
        val = float(rng.uniform(0.7, 1.3)) if hsv else 1.0
        bc = on()
        brightness = float(rng.uniform(-0.1, 0.1)) if bc else 0.0
        contrast = float(rng.uniform(0.9, 1.1)) if bc else 1.0
        degrade = "downscale" if rng.random() < 0.5 else "sharpen"
        amount = float(rng.uniform(0.25, 0.5)) if degrade == "downscale" else float(rng.uniform(0.2, 0.5))
        shift = (float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.015, 0.015)))
        scale = float(rng.uniform(0.95, 1 / 0.95))
        return cls(tuple(float(v) for v in rgb), hue, sat, val, brightness, contrast, degrade, amount, shift, scale)

    def as_meta(self) -> dict:
        """The draw for a fake's meta JSON, floats to 4 decimals."""
        out = {}
        for name, value in asdict(self).items():
            if isinstance(value, (tuple, list)):
                out[name] = [round(float(v), 4) for v in value]
            else:
                out[name] = round(value, 4) if isinstance(value, float) else value
        return out


def perturb_colour(image: np.ndarray, p: SelfBlendParams) -> np.ndarray:
    out = image.astype(np.float32) + np.asarray(p.rgb_shift, np.float32)
    if p.hue or p.saturation != 1.0 or p.value != 1.0:
        hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + p.hue / 2.0) % 180.0  # OpenCV hue unit = 2 degrees
        hsv[..., 1] *= p.saturation
        hsv[..., 2] *= p.value
        out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out = (out - 127.5) * p.contrast + 127.5 + 255.0 * p.brightness
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if p.degrade == "downscale":
        h, w = out.shape[:2]
        small = cv2.resize(out, (max(1, int(w * p.degrade_amount)), max(1, int(h * p.degrade_amount))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    blur = cv2.GaussianBlur(out, (0, 0), 1.0)
    return cv2.addWeighted(out, 1.0 + p.degrade_amount, blur, -p.degrade_amount, 0)


class SelfBlendGenerator:
    """The perturbed, shifted and scaled copy of the target face (one parameter draw)."""

    name = "self-blend"

    def __init__(self, rng: np.random.Generator) -> None:
        self.params = SelfBlendParams.draw(rng)

    def __call__(self, frame: np.ndarray, frame_index: int, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
        side = REFERENCE_FACE * face_scale(lm)  # the face's canonical square in frame pixels
        cx, cy = lm.mean(0)
        h, w = frame.shape[:2]
        # work on a box twice the face: the copy never needs pixels further away
        x0, x1 = int(max(0, cx - side)), int(min(w, cx + side))
        y0, y1 = int(max(0, cy - side)), int(min(h, cy + side))
        fg = frame.copy()
        if x1 - x0 < 4 or y1 - y0 < 4:
            return fg, np.zeros((h, w), np.uint8)
        roi = perturb_colour(frame[y0:y1, x0:x1], p)
        ccx, ccy = cx - x0, cy - y0
        m = np.array(
            [[p.scale, 0.0, (1 - p.scale) * ccx + p.shift[0] * side],
             [0.0, p.scale, (1 - p.scale) * ccy + p.shift[1] * side]]
        )
        fg[y0:y1, x0:x1] = cv2.warpAffine(roi, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return fg, np.full((h, w), 255, np.uint8)
