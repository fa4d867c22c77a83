"""One fake frame: generator output -> mask -> colour transfer -> blend.

A `Composer` belongs to one fake (one target track): its mask shape is drawn and deformed
once in the canonical face square and mapped onto every frame by the landmarks (or, for a
generator with `mask_from_generator`, taken from the generator, which draws it from the
face mesh), and its colour transfer is fitted on the first frame and reused, so neither
flickers.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from dfpipe.pipeline.masks.facemask import canonical_mask, canonical_to_frame, deform_mask
from dfpipe.pipeline.synth.blend import blend, mask_box
from dfpipe.pipeline.synth.colour import ColourTransfer

#: generator(frame, frame_index, landmarks) -> (fg image, uint8 mask of where fg is defined)
Generator = Callable[[np.ndarray, int, np.ndarray], tuple[np.ndarray, np.ndarray]]
_ROI_MARGIN = 24


class Composer:
    def __init__(
        self,
        generator: Generator,
        rng: np.random.Generator,
        blend_mode: str = "alpha",
        colour: str = "none",
        region: str = "full",
        mask_warp: str = "elastic",
        deform: bool = True,
        harmonizer=None,
        colour_seed: int = 0,
        blend_ratio: float | None = None,
    ) -> None:
        self.generator = generator
        self.blend_mode = blend_mode
        self.colour_mode = colour
        self.harmonizer = harmonizer
        self.colour_seed = colour_seed
        base = canonical_mask(region)
        if deform:  # blend_ratio None: drawn from SBI's ratios
            self.canonical = deform_mask(base, rng, mask_warp, blend_ratio=blend_ratio)
        else:
            self.canonical = base.astype(np.float32) / 255.0 * (1.0 if blend_ratio is None else blend_ratio)
        self.colour: ColourTransfer | None = None

    def __call__(self, frame: np.ndarray, frame_index: int, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fake frame, float32 mask in [0, 1] actually used)."""
        fg, valid = self.generator(frame, frame_index, landmarks)
        # DoveNet learns the frame's colour from context around the face: give it the frame
        margin = max(frame.shape) if self.blend_mode == "dovenet" else _ROI_MARGIN
        if getattr(self.generator, "mask_from_generator", False):
            # drawn from the face's own geometry (mesh swap): found in the uint8 mask and
            # turned to [0, 1] in its box only (the whole frame's conversion cost a millisecond)
            box = mask_box(valid, margin=margin)
            mask = np.zeros(frame.shape[:2], np.float32)
            if box is not None:
                mask[box] = valid[box] * np.float32(1.0 / 255.0)
        else:
            mask = canonical_to_frame(self.canonical, landmarks, frame.shape) * (valid > 0)
            box = mask_box(mask, margin=margin)
        if box is None:
            return frame.copy(), np.zeros(frame.shape[:2], np.float32)
        fg_roi, bg_roi, m_roi = fg[box], frame[box], mask[box]
        if self.colour_mode != "none":
            if self.colour is None:
                hard = (m_roi > 0.5 * m_roi.max()).astype(np.uint8) * 255
                self.colour = ColourTransfer.fit(fg_roi, bg_roi, hard, self.colour_mode, seed=self.colour_seed)
            fg_roi = self.colour.apply(fg_roi)
        out = frame.copy()
        out[box] = blend(fg_roi, bg_roi, m_roi, self.blend_mode, self.harmonizer)
        return out, mask.astype(np.float32, copy=False)
