"""Harmonize pasted faces with a trained DoveNet generator (`--blend dovenet`).

For each image the square around the mask's bounding box (plus a margin of context, which
is all the generator learns the frame's colour from) is resized to the trained size, run
through the generator in batches, resized back and blended in through the mask. Pixels
where the mask is 0 are returned unchanged, bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from dfpipe.models.dovenet import DoveNet, dovenet_from_checkpoint, mask_tensor, to_tensor
from dfpipe.runtime.device import resolve_device


class Harmonizer:
    """A DoveNet generator ready for inference on RGB uint8 images and uint8 masks.

    `context` is the margin around the mask's box on each side, as a fraction of the box:
    0.45 reproduces the training geometry (a full-face hull spans ~52% of an aligned
    crop with the default margin 0.4).
    """

    def __init__(self, model: DoveNet, device: str | torch.device = "cpu", batch_size: int = 16,
                 context: float = 0.45) -> None:
        self.device = resolve_device(device)
        self.generator = model.generator.to(self.device).eval()
        self.size = model.cfg.img_size
        self.batch_size = batch_size
        self.context = context

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs) -> "Harmonizer":
        """Load `best.pt` (or `last.pt`) of `dfpipe train-harmonizer` with weights_only=True."""
        return cls(dovenet_from_checkpoint(path), device, **kwargs)

    def _window(self, mask: np.ndarray) -> tuple[int, int, int] | None:
        """(x0, y0, side) of the square around the mask with `context` margin, or None."""
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            return None
        x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        side = int(np.ceil(max(x2 - x1, y2 - y1) * (1.0 + 2.0 * self.context)))
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), max(side, 8)

    @staticmethod
    def _cut(img: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
        """The square window, zero-padded where it leaves the image."""
        return cv2.copyMakeBorder(
            img[max(y0, 0) : y0 + side, max(x0, 0) : x0 + side],
            max(-y0, 0), max(y0 + side - img.shape[0], 0), max(-x0, 0), max(x0 + side - img.shape[1], 0),
            cv2.BORDER_REFLECT_101 if img.ndim == 3 else cv2.BORDER_CONSTANT,
        ).reshape((side, side) + img.shape[2:])

    def harmonize(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Harmonized copies of `images` (RGB uint8, any sizes); `masks` are uint8 (255 =
        pasted face) or float in [0, 1], same height and width as their image."""
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        outs = [np.array(im, dtype=np.uint8, copy=True) for im in images]
        jobs = []
        for i, (im, m) in enumerate(zip(images, masks)):
            if im.ndim != 3 or im.shape[2] != 3 or m.shape[:2] != im.shape[:2]:
                raise ValueError(f"image {i}: expected H x W x 3 with an H x W mask, got {im.shape} and {m.shape}")
            m8 = m if m.dtype == np.uint8 else np.clip(np.rint(np.asarray(m, np.float32) * 255), 0, 255).astype(np.uint8)
            win = self._window(m8)
            if win is not None:
                jobs.append((i, m8, win))
        for start in range(0, len(jobs), self.batch_size):
            self._run(images, outs, jobs[start : start + self.batch_size])
        return outs

    @torch.no_grad()
    def _run(self, images: Sequence[np.ndarray], outs: list[np.ndarray], jobs: list) -> None:
        comps, masks = [], []
        for i, m8, (x0, y0, side) in jobs:
            interp = cv2.INTER_AREA if side > self.size else cv2.INTER_LINEAR
            comps.append(to_tensor(cv2.resize(self._cut(images[i], x0, y0, side), (self.size, self.size),
                                              interpolation=interp)))
            masks.append(mask_tensor(cv2.resize(self._cut(m8, x0, y0, side), (self.size, self.size),
                                                interpolation=cv2.INTER_LINEAR)))
        comp = torch.stack(comps).to(self.device)
        mask = torch.stack(masks).to(self.device)
        pred = self.generator(comp, mask).float().clamp(-1, 1).add(1).mul(127.5).permute(0, 2, 3, 1).cpu().numpy()
        for (i, m8, (x0, y0, side)), p in zip(jobs, pred):
            h, w = outs[i].shape[:2]
            big = cv2.resize(p, (side, side), interpolation=cv2.INTER_CUBIC if side > self.size else cv2.INTER_AREA)
            # the part of the window inside the image
            ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
            patch = big[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
            alpha = (m8[ay0:ay1, ax0:ax1].astype(np.float32) / 255.0)[..., None]
            region = outs[i][ay0:ay1, ax0:ax1].astype(np.float32)
            blended = np.clip(np.rint(alpha * patch + (1.0 - alpha) * region), 0, 255).astype(np.uint8)
            inside = alpha[..., 0] > 0
            outs[i][ay0:ay1, ax0:ax1][inside] = blended[inside]
