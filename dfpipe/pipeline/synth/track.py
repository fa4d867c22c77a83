"""A target track frame by frame: landmarks for every frame, crops where extract sampled.

Extract may sample every Nth frame; a fake video changes every frame, so landmarks (and
crop matrices) are interpolated linearly between sampled frames of the track. Gaps longer
than twice the sampling step are not bridged: the face is left real there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d


@dataclass
class TrackPlan:
    """`landmarks[i]` (5 x 2) and `matrices[i]` (2 x 3, frame -> crop) for each changed
    frame i; `rows[i]` the target's faces row at the frames extract sampled (their crops
    are re-cut from the fake)."""

    landmarks: dict[int, np.ndarray]
    matrices: dict[int, np.ndarray]
    rows: dict[int, dict]
    boxes: dict[int, np.ndarray] | None = None  # x1 y1 x2 y2 per changed frame (the mesh region)

    @property
    def end(self) -> int:
        """One past the last changed frame: the fake video's length."""
        return max(self.landmarks) + 1

    @property
    def has_mesh(self) -> bool:
        """Whether the track's faces carry a face mesh (the mesh swap needs one)."""
        return any(r.get("mesh") is not None for r in self.rows.values())

    @property
    def meshes(self) -> list[np.ndarray]:
        """The track's face meshes (468 x 3, frame pixels) at its sampled frames."""
        return [np.asarray(r["mesh"], np.float64).reshape(-1, 3) for r in self.rows.values() if r.get("mesh") is not None]

    @property
    def first(self) -> int:
        return min(self.landmarks)


def _smooth_runs(per_frame: dict[int, np.ndarray], sigma: float) -> dict[int, np.ndarray]:
    """Gaussian smoothing over time of the landmark part, within runs of consecutive frames:
    detector jitter of a pixel would make a pasted face shake (and raise its Ewarp)."""
    if sigma <= 0:
        return per_frame
    out = dict(per_frame)
    frames = sorted(per_frame)
    runs: list[list[int]] = [[frames[0]]]
    for f in frames[1:]:
        if f == runs[-1][-1] + 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    for run in runs:
        if len(run) < 2:
            continue
        block = np.stack([per_frame[f] for f in run])
        block[:, :10] = gaussian_filter1d(block[:, :10], sigma, axis=0, mode="nearest")
        out.update({f: block[i] for i, f in enumerate(run)})
    return out


def plan_track(rows: list[dict], per_video: int | None = None, smooth: float = 0.0, n_frames: int | None = None) -> TrackPlan:
    """Build the plan from the faces rows of one track (any order); `smooth` is the sigma,
    in frames, of a temporal Gaussian on the landmarks (0 = off). With `n_frames` (the
    video's length) the track is also held for one sampling step before its first and
    after its last sampled frame: the face is there between samples, and a fake whose
    face turns back to the real one for the last few frames would flicker."""
    rows = sorted(rows, key=lambda r: r["frame_index"])
    if not rows:
        raise ValueError("the target track has no faces")
    frames = np.array([r["frame_index"] for r in rows], dtype=np.int64)
    # landmarks, crop matrix and box of a frame as one 20-vector, interpolated together
    values = np.array(
        [np.concatenate([np.asarray(r["landmarks"], np.float64).reshape(10), np.asarray(r["matrix"], np.float64).reshape(6),
                         np.array([r.get(k, np.nan) for k in ("x1", "y1", "x2", "y2")], np.float64)])
         for r in rows]
    )
    steps = np.diff(frames)
    max_gap = 2 * int(np.median(steps)) if len(steps) else 1
    per_frame: dict[int, np.ndarray] = {int(frames[0]): values[0]}
    for k in range(1, len(frames)):
        a, b = int(frames[k - 1]), int(frames[k])
        if b - a <= max_gap:
            for f in range(a + 1, b):
                t = (f - a) / (b - a)
                per_frame[f] = (1 - t) * values[k - 1] + t * values[k]
        per_frame[b] = values[k]
    if n_frames is not None and len(steps):
        hold = int(np.median(steps)) - 1
        for f in range(max(0, int(frames[0]) - hold), int(frames[0])):
            per_frame[f] = values[0]
        for f in range(int(frames[-1]) + 1, min(n_frames, int(frames[-1]) + hold + 1)):
            per_frame[f] = values[-1]
    per_frame = _smooth_runs(per_frame, smooth)
    keep = sorted(per_frame)[:per_video] if per_video is not None else sorted(per_frame)
    return TrackPlan(
        landmarks={f: per_frame[f][:10].reshape(5, 2) for f in keep},
        matrices={f: per_frame[f][10:16].reshape(2, 3) for f in keep},
        boxes={f: per_frame[f][16:20] for f in keep},
        rows={int(r["frame_index"]): r for r in rows if int(r["frame_index"]) in set(keep)},
    )
