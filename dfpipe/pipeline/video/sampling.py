"""Which frames of a video to keep: `Sampling` says it, `Selector` applies it frame by frame.

Both backends select through the same `Selector`, so they keep the same true indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sampling:
    """Which frames to keep: at most one of `every`, `count`, `fps`; none = every frame.

    - `every=N`: frames 0, N, 2N, ...
    - `count=N`: N frames spread evenly from the first to the last frame (fewer when
      the video is shorter).
    - `fps=R`: about R frames per second of video, by timestamp: for each multiple of
      1/R s, the first frame no more than half a frame before it (so 25 fps at R=5 keeps
      0, 5, 10, ...); a rate at or above the video's keeps every frame.
    """

    every: int | None = None
    count: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("every", "count", "fps") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"choose one frame sampling, not {' and '.join(given)}")
        for name in ("every", "count"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                what = "take every Nth frame, N >= 1" if name == "every" else "take N frames, N >= 1"
                raise ValueError(f"--{name} must be a whole number of frames ({what}), got {value!r}")
        if self.fps is not None:
            number = isinstance(self.fps, (int, float)) and not isinstance(self.fps, bool)
            if not number or not math.isfinite(self.fps) or self.fps <= 0:
                raise ValueError(f"--fps must be a positive number of frames a second, got {self.fps!r}")

    def describe(self) -> str:
        if self.every is not None:
            return f"every {self.every}th frame" if self.every > 1 else "every frame"
        if self.count is not None:
            return f"{self.count} frames spread over the video"
        if self.fps is not None:
            return f"{self.fps:g} frames per second"
        return "every frame"


class Selector:
    """Decides frame by frame whether `Sampling` keeps it, and when nothing is left."""

    def __init__(self, sampling: Sampling, n_frames: int, fps: float) -> None:
        self.sampling = sampling
        self.wanted: list[int] | None = None
        if sampling.count is not None:
            n = max(int(n_frames), 0)
            k = min(sampling.count, n)
            self.wanted = sorted({int(round(x)) for x in np.linspace(0, n - 1, k)}) if k else []
            self._pos = 0
        # Half a source frame of tolerance so 25 fps -> 5 fps keeps 0, 5, 10, ... despite
        # timestamps being rounded to the stream's time base.
        self._eps = 0.5 / fps if fps > 0 else 1e-3
        self._k = 0  # the next multiple of 1/fps still waiting for a frame

    def take(self, index: int, timestamp: float) -> bool:
        s = self.sampling
        if self.wanted is not None:
            if self._pos < len(self.wanted) and index == self.wanted[self._pos]:
                self._pos += 1
                return True
            return False
        if s.every is not None:
            return index % s.every == 0
        if s.fps is not None:
            # k / fps, not a running sum: summed steps drift and flip ties at half a frame
            if timestamp + self._eps >= self._k / s.fps - 1e-9:
                while self._k / s.fps - 1e-9 <= timestamp + self._eps:
                    self._k += 1
                return True
            return False
        return True

    def done(self) -> bool:
        """True once every wanted frame was taken (only `count` knows its end)."""
        return self.wanted is not None and self._pos >= len(self.wanted)

    def indices(self, timestamps: np.ndarray) -> list[int]:
        """All kept indices for a stream whose frame timestamps are known up front."""
        return [i for i, t in enumerate(timestamps) if self.take(i, float(t))]
