"""Link per-frame face detections into tracks, online and with bounded memory.

A `Tracker` takes the detections of each sampled frame in order and assigns track ids
(Hungarian assignment on IoU, falling back to centre distance for fast motion). Ids are
given in order of first appearance, left to right within a frame, so they are stable
across runs. Optional smoothing averages boxes, landmarks and face meshes over +-`smooth`
sampled frames of the same track; it needs that many future frames, so frames are released with
that lag (`push` returns the frames that became final). A frame pushed with `cut=True`
starts a new shot: every track ends there, so none links two shots. So does a frame where
every face of the sampled frame before has vanished and every face is new (a face jump:
a cut the colour histogram cannot see).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class TrackedFace:
    track_id: int
    score: float
    box: np.ndarray  # 4, x1 y1 x2 y2
    landmarks: np.ndarray  # 5 x 2
    mesh: np.ndarray | None = None  # 468 x 3 Face Mesh points, when a mesh was computed
    mesh_score: float | None = None


@dataclass
class TrackedFrame:
    position: int  # sampled-frame counter (0, 1, 2, ...)
    payload: object  # the caller's frame object, returned untouched
    shot: int = 0  # shots counted from 0; a cut starts the next
    faces: list[TrackedFace] = field(default_factory=list)


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    last_position: int


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of N x 4 and M x 4 boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _centre_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Centre distance in units of the larger face side (scale-free)."""
    ca = (a[:, None, :2] + a[:, None, 2:]) / 2
    cb = (b[None, :, :2] + b[None, :, 2:]) / 2
    side = np.maximum(
        np.maximum(a[:, None, 2] - a[:, None, 0], a[:, None, 3] - a[:, None, 1]),
        np.maximum(b[None, :, 2] - b[None, :, 0], b[None, :, 3] - b[None, :, 1]),
    )
    return np.linalg.norm(ca - cb, axis=-1) / np.maximum(side, 1e-9)


class Tracker:
    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_centre_distance: float = 0.5,
        max_gap: int = 3,
        smooth: int = 0,
        jump_cuts: bool = True,
    ) -> None:
        self.iou_threshold = iou_threshold
        self.max_centre_distance = max_centre_distance
        self.max_gap = max_gap
        self.smooth = smooth
        self.jump_cuts = jump_cuts  # a jump of every face starts a new shot
        self._active: list[_Track] = []
        self._next_id = 0
        self._position = 0
        self._shot = 0
        self._pending: deque[TrackedFrame] = deque()
        # recent observations per track for smoothing: position -> (box, landmarks, mesh)
        self._history: dict[int, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = {}

    def push(
        self, payload: object, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, cut: bool = False,
        meshes: np.ndarray | None = None, mesh_scores: np.ndarray | None = None,
    ) -> list[TrackedFrame]:
        """Add one sampled frame's detections (`cut`: the frame starts a new shot; `meshes`,
        N x 468 x 3, and `mesh_scores` ride along with the boxes); return frames whose faces
        are now final."""
        pos = self._position
        self._position += 1
        if cut and pos:
            self._shot += 1
            self._active = []  # no track continues across the cut
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
        seen_last = {t.track_id for t in self._active if t.last_position == pos - 1}
        first_new = self._next_id
        ids = self._assign(boxes, pos)
        if self.jump_cuts and seen_last and ids and min(ids) >= first_new:
            # every face of the frame before vanished and every face here is new: the picture
            # jumped (a cut between shots of the same colours, e.g. a zoom on the same studio)
            self._shot += 1
            self._active = [t for t in self._active if t.track_id >= first_new]
        frame = TrackedFrame(pos, payload, self._shot)
        for i, tid in sorted(enumerate(ids), key=lambda t: t[1]):
            mesh = None if meshes is None else np.asarray(meshes[i], dtype=np.float32)
            score = None if mesh_scores is None else float(mesh_scores[i])
            frame.faces.append(TrackedFace(tid, float(scores[i]), boxes[i], landmarks[i], mesh, score))
            if self.smooth:
                self._history.setdefault(tid, {})[pos] = (boxes[i], landmarks[i], mesh)
        self._pending.append(frame)
        return self._release(final=False)

    def flush(self) -> list[TrackedFrame]:
        """End of video: release the frames still waiting for future context."""
        return self._release(final=True)

    def _assign(self, boxes: np.ndarray, pos: int) -> list[int]:
        self._active = [t for t in self._active if pos - t.last_position <= self.max_gap]
        ids = [-1] * len(boxes)
        if self._active and len(boxes):
            prev = np.stack([t.box for t in self._active])
            iou = box_iou(prev, boxes)
            dist = _centre_distance(prev, boxes)
            ok = (iou >= self.iou_threshold) | (dist <= self.max_centre_distance)
            cost = np.where(ok, (1.0 - iou) + dist, 1e6)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if ok[r, c]:
                    track = self._active[r]
                    ids[c] = track.track_id
                    track.box = boxes[c]
                    track.last_position = pos
        # new tracks, numbered left to right for run-to-run stability
        for c in sorted((c for c in range(len(boxes)) if ids[c] < 0), key=lambda c: (boxes[c, 0], boxes[c, 1])):
            ids[c] = self._next_id
            self._active.append(_Track(self._next_id, boxes[c], pos))
            self._next_id += 1
        return ids

    def _release(self, final: bool) -> list[TrackedFrame]:
        out = []
        while self._pending and (final or self._pending[0].position <= self._position - 1 - self.smooth):
            frame = self._pending.popleft()
            if self.smooth:
                self._smooth_frame(frame)
            out.append(frame)
        return out

    def _smooth_frame(self, frame: TrackedFrame) -> None:
        k = self.smooth
        for face in frame.faces:
            hist = self._history.get(face.track_id, {})
            window = [p for p in range(frame.position - k, frame.position + k + 1) if p in hist]
            weights = np.array([np.exp(-0.5 * ((p - frame.position) / max(k / 2, 0.5)) ** 2) for p in window])
            weights /= weights.sum()
            face.box = sum(w * hist[p][0] for w, p in zip(weights, window))
            face.landmarks = sum(w * hist[p][1] for w, p in zip(weights, window))
            if face.mesh is not None and all(hist[p][2] is not None for p in window):
                face.mesh = sum(w * hist[p][2] for w, p in zip(weights, window)).astype(np.float32)
            for p in [p for p in hist if p < frame.position - k]:
                del hist[p]


def select_tracks(track_stats: dict[int, tuple[int, float]], keep: str, max_tracks: int | None, min_track_len: int) -> set[int]:
    """Which tracks to keep, from {track_id: (n_faces, mean_area)}.

    `all` keeps every track (long enough); `largest` the `max_tracks` (default 1) with the
    largest mean face; `main` the one track with the largest n_faces x mean area, i.e. the
    person the video is about.
    """
    eligible = {t: s for t, s in track_stats.items() if s[0] >= min_track_len}
    if keep == "all":
        return set(eligible)
    if keep == "largest":
        ranked = sorted(eligible, key=lambda t: (-eligible[t][1], t))
        return set(ranked[: max_tracks or 1])
    if keep == "main":
        ranked = sorted(eligible, key=lambda t: (-eligible[t][0] * eligible[t][1], t))
        return set(ranked[:1])
    raise ValueError(f"keep must be all, largest or main, got {keep!r}")
