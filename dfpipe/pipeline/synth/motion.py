"""Make a pasted face move like the face it covers.

A still source face placed by a 5-point similarity moves rigidly, while the real face under
it talks, blinks and turns: against the real video's optical flow the fake then flickers
(high Ewarp). `FlowFollow` wraps a generator: each frame it carries the previous pasted
face along the real video's dense flow (OpenCV DIS, no weights) and mixes in a fraction
`refresh` of the freshly placed face, which keeps the result anchored to the landmarks and
bounds the blur of repeated resampling. Expression and pose then follow the target.
"""

from __future__ import annotations

import cv2
import numpy as np

from dfpipe.pipeline.synth.compose import Generator

_MARGIN = 16


class FlowFollow:
    def __init__(self, generator: Generator, refresh: float = 0.2) -> None:
        if not 0.0 < refresh <= 1.0:
            raise ValueError(f"refresh must be in (0, 1], got {refresh}")
        self.generator = generator
        self.refresh = refresh
        self.name = getattr(generator, "name", "generator")
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._prev: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None  # index, real, fg, valid

    def __call__(self, frame: np.ndarray, frame_index: int, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fg, valid = self.generator(frame, frame_index, landmarks)
        prev = self._prev
        if prev is not None and prev[0] == frame_index - 1 and valid.any():
            fg, valid = self._follow(frame, fg, valid, prev)
        self._prev = (frame_index, frame, fg, valid)
        return fg, valid

    def _follow(self, frame, fg, valid, prev):
        _, prev_real, prev_fg, prev_valid = prev
        ys, xs = np.nonzero(valid)
        h, w = frame.shape[:2]
        y0, y1 = max(0, ys.min() - _MARGIN), min(h, ys.max() + _MARGIN + 1)
        x0, x1 = max(0, xs.min() - _MARGIN), min(w, xs.max() + _MARGIN + 1)
        cur = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        old = cv2.cvtColor(prev_real[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        flow = self._dis.calc(cur, old, None)  # cur(x) ~ old(x + flow(x))
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        map_x, map_y = gx + flow[..., 0], gy + flow[..., 1]
        # cubic: repeated resampling along the flow must not blur the face frame after frame
        carried = cv2.remap(prev_fg, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        carried_valid = cv2.remap(prev_valid, map_x, map_y, cv2.INTER_NEAREST, borderValue=0)
        out, out_valid = fg.copy(), valid.copy()
        roi_valid = (valid[y0:y1, x0:x1] > 0) & (carried_valid > 0)
        mix = (1.0 - self.refresh) * carried.astype(np.float32) + self.refresh * fg[y0:y1, x0:x1].astype(np.float32)
        region = out[y0:y1, x0:x1]
        region[roi_valid] = np.clip(np.rint(mix[roi_valid]), 0, 255).astype(np.uint8)
        out_valid[y0:y1, x0:x1] = np.where(roi_valid, 255, 0).astype(np.uint8)
        return out, out_valid
