"""Put a generated face into its frame: out = m * fg + (1 - m) * bg after an optional
gradient-domain or learned step.

- `none`: naive stitching, a hard cut at m > 0.5 (SR-DF's baseline).
- `alpha`: the soft mask as is.
- `poisson` / `poisson-mixed`: OpenCV seamlessClone (NORMAL / MIXED gradients) on the
  mask's box, then the soft mask on top, so pixels outside the mask stay the frame's own.
- `dovenet`: the alpha composite harmonized by a DoveNet checkpoint
  (`dfpipe.pipeline.synth.harmonize.Harmonizer`), pasted back through the mask.

All images RGB uint8 of one size; masks uint8 (255 = fg) or float in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BLENDS = ("none", "alpha", "poisson", "poisson-mixed", "dovenet")
_POISSON_FLAGS = {"poisson": cv2.NORMAL_CLONE, "poisson-mixed": cv2.MIXED_CLONE}
_PAD = 8  # reflected border around the clone box: seamlessClone misbehaves when the mask touches the canvas edge
_ON = 0.02  # soft-mask values below this are treated as outside the pasted region


def soft_mask(mask: np.ndarray) -> np.ndarray:
    """float32 H x W in [0, 1] from a uint8 (0..255), bool or float mask."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.dtype == np.uint8:
        return m.astype(np.float32) / 255.0
    return np.clip(m.astype(np.float32), 0.0, 1.0)


def alpha_blend(fg: np.ndarray, bg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = soft_mask(mask)[..., None]
    out = m * fg.astype(np.float32) + (1.0 - m) * bg.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def mask_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice] | None:
    """(rows, cols) slices of the region where the mask is on, grown by `margin` and clipped."""
    m = np.asarray(mask)
    m = m[..., 0] if m.ndim == 3 else m
    on = m > (_ON * 255 if m.dtype == np.uint8 else _ON)
    x, y, bw, bh = cv2.boundingRect(on.view(np.uint8))  # of the nonzero pixels, in C
    if bw == 0 or bh == 0:
        return None
    h, w = m.shape[:2]
    return (slice(max(0, y - margin), min(h, y + bh + margin)),
            slice(max(0, x - margin), min(w, x + bw + margin)))


def poisson_blend(fg: np.ndarray, bg: np.ndarray, mask: np.ndarray, mixed: bool = False) -> np.ndarray:
    """seamlessClone of fg into bg where the mask is on, correct at frame borders.

    The clone runs on the mask's box (plus a reflected border, so the mask never touches the
    canvas edge) with the centre OpenCV expects for that box: the box's top-left plus half its
    size, so the pasted face is not shifted by a pixel."""
    m = soft_mask(mask)
    box = mask_box(m, margin=2)
    if box is None:
        return bg.copy()
    rows, cols = box
    pad = ((_PAD, _PAD), (_PAD, _PAD), (0, 0))
    fg_roi = np.pad(fg[rows, cols], pad, mode="reflect")
    bg_roi = np.pad(bg[rows, cols], pad, mode="reflect")
    binary = np.pad((m[rows, cols] > _ON).astype(np.uint8) * 255, pad[:2], mode="constant")
    ys, xs = np.nonzero(binary)
    centre = (int(xs.min() + (xs.max() - xs.min() + 1) // 2), int(ys.min() + (ys.max() - ys.min() + 1) // 2))
    flag = cv2.MIXED_CLONE if mixed else cv2.NORMAL_CLONE
    cloned = cv2.seamlessClone(
        np.ascontiguousarray(fg_roi[..., ::-1]), np.ascontiguousarray(bg_roi[..., ::-1]), binary, centre, flag
    )[_PAD:-_PAD, _PAD:-_PAD, ::-1]
    fg_full = bg.copy()
    fg_full[rows, cols] = cloned
    return alpha_blend(fg_full, bg, m)


def load_harmonizer(checkpoint: str | Path | None, device: str = "cpu"):
    """The DoveNet harmonizer for `--blend dovenet`; a clear error without a checkpoint."""
    if checkpoint is None:
        raise ValueError("--blend dovenet needs a DoveNet checkpoint: pass --harmonizer CKPT "
                         "(train one with `dfpipe train-harmonizer DS`)")
    if not Path(checkpoint).is_file():
        raise ValueError(f"harmonizer checkpoint {checkpoint} does not exist")
    try:
        from dfpipe.pipeline.synth.harmonize import Harmonizer
    except ImportError as exc:  # the harmonizer stage is a separate module; say what is missing
        raise ValueError(f"--blend dovenet is unavailable: {exc}") from exc
    return Harmonizer.from_checkpoint(checkpoint, device)


def harmonize_blend(fg: np.ndarray, bg: np.ndarray, mask: np.ndarray, harmonizer) -> np.ndarray:
    """The alpha composite harmonized by DoveNet, which cuts its own window (face plus
    context) and returns pixels outside the mask unchanged."""
    m = soft_mask(mask)
    return harmonizer.harmonize([alpha_blend(fg, bg, m)], [m])[0]


def blend(fg: np.ndarray, bg: np.ndarray, mask: np.ndarray, mode: str = "alpha", harmonizer=None) -> np.ndarray:
    """fg pasted into bg through mask with blend `mode` (see BLENDS)."""
    if fg.shape != bg.shape or fg.shape[:2] != np.asarray(mask).shape[:2]:
        raise ValueError(f"fg {fg.shape}, bg {bg.shape} and mask {np.asarray(mask).shape} must share a size")
    if mode == "none":  # hard edge, but keep the mask's blend ratio (its peak)
        m = soft_mask(mask)
        peak = float(m.max())
        return alpha_blend(fg, bg, np.where(m > 0.5 * peak, peak, 0.0).astype(np.float32))
    if mode == "alpha":
        return alpha_blend(fg, bg, mask)
    if mode in _POISSON_FLAGS:
        return poisson_blend(fg, bg, mask, mixed=mode == "poisson-mixed")
    if mode == "dovenet":
        if harmonizer is None:
            raise ValueError("--blend dovenet needs a harmonizer (load_harmonizer(checkpoint))")
        return harmonize_blend(fg, bg, mask, harmonizer)
    raise ValueError(f"blend must be one of {BLENDS}, got {mode!r}")
