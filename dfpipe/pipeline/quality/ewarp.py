"""Ewarp (Lai et al., ECCV 2018): temporal flicker as the warping error between frames.

For frames t, t+1 the flow F(t -> t+1) comes from OpenCV DIS (no learned weights), on the
source real video when there is one (a fake's own flicker would corrupt its flow), else on
the video itself. A pixel counts unless it is occluded (forward-backward inconsistent) or
on a motion boundary, with the thresholds of Lai et al. / Sundaram et al.:

    |w_f + w_b'|^2 > 0.01 (|w_f|^2 + |w_b'|^2) + 0.5          (w_b' = w_b warped by w_f)
    |grad u|^2 + |grad v|^2 > 0.01 |w_f|^2 + 0.002

E(t) = sum_i M(i) ||V_t(i) - warp(V_t+1)(i)||^2 / sum_i M(i), V in [0, 1] RGB, the squared
norm summed over channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class FlowEstimator:
    """Forward and backward DIS flow between two RGB frames."""

    def __init__(self, preset: str = "medium") -> None:
        if preset not in DIS_PRESETS:
            raise ValueError(f"DIS preset must be one of {sorted(DIS_PRESETS)}, got {preset!r}")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) if a.ndim == 3 else a
        gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY) if b.ndim == 3 else b
        forward = self._dis.calc(ga, gb, None)
        backward = self._dis.calc(gb, ga, None)
        return forward, backward


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates, cached per size (remap needs absolute maps)."""
    if (h, w) not in _GRIDS:
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        _GRIDS[(h, w)] = (xs, ys)
    return _GRIDS[(h, w)]


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `image` at x + flow(x) (bilinear): brings frame t+1 onto frame t."""
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _sq_norm(flow: np.ndarray) -> np.ndarray:
    # explicit components: numpy reductions over a length-2 last axis are ~20x slower
    return np.square(flow[..., 0]) + np.square(flow[..., 1])


def _grad_sq(channel: np.ndarray) -> np.ndarray:
    """|grad c|^2 with central differences, one-sided at the border (np.gradient's rule,
    with OpenCV's filters: np.gradient is ~20x slower and dominated the Ewarp time)."""
    c = np.ascontiguousarray(channel, dtype=np.float32)
    gx = cv2.Sobel(c, cv2.CV_32F, 1, 0, ksize=1, scale=0.5)
    gy = cv2.Sobel(c, cv2.CV_32F, 0, 1, ksize=1, scale=0.5)
    gx[:, 0], gx[:, -1] = c[:, 1] - c[:, 0], c[:, -1] - c[:, -2]
    gy[0], gy[-1] = c[1] - c[0], c[-1] - c[-2]
    return gx * gx + gy * gy


def valid_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """M = 1 - occlusion, as bool H x W (see the module docstring)."""
    bwd = warp(backward, forward)
    mag_f = _sq_norm(forward)
    occluded = _sq_norm(forward + bwd) > 0.01 * (mag_f + _sq_norm(bwd)) + 0.5
    boundary = _grad_sq(forward[..., 0]) + _grad_sq(forward[..., 1]) > 0.01 * mag_f + 0.002
    return ~(occluded | boundary)


@dataclass
class WarpError:
    error: float  # NaN when every pixel is occluded
    valid_fraction: float


def warp_error(frame_t: np.ndarray, frame_t1: np.ndarray, forward: np.ndarray, backward: np.ndarray) -> WarpError:
    """Ewarp of one frame pair given the flow (computed on these or on the source frames)."""
    if frame_t.shape != frame_t1.shape or frame_t.shape[:2] != forward.shape[:2]:
        raise ValueError(f"frames {frame_t.shape}, {frame_t1.shape} and flow {forward.shape} differ in size")
    m = valid_mask(forward, backward)
    count = int(np.count_nonzero(m))
    if count == 0:
        return WarpError(float("nan"), 0.0)
    diff = cv2.absdiff(frame_t, warp(frame_t1, forward))[m].astype(np.float32) / 255.0
    return WarpError(float(np.square(diff).sum(dtype=np.float64) / count), count / m.size)


def ewarp_pair(
    frame_t: np.ndarray,
    frame_t1: np.ndarray,
    flow: FlowEstimator,
    source_t: np.ndarray | None = None,
    source_t1: np.ndarray | None = None,
) -> WarpError:
    """Ewarp of frames t, t+1, with the flow taken on the source frames when given."""
    ref_t, ref_t1 = (source_t, source_t1) if source_t is not None else (frame_t, frame_t1)
    if ref_t.shape != frame_t.shape:
        raise ValueError(f"source frame {ref_t.shape} and fake frame {frame_t.shape} differ in size")
    forward, backward = flow(ref_t, ref_t1)
    return warp_error(frame_t, frame_t1, forward, backward)
