"""`dfpipe info`: what a dataset directory holds, read from index columns only."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfpipe.manifests.parts import list_parts, read_table
from dfpipe.manifests.schema import FACE_FLAGS, FACES_SCHEMA, VIDEOS_SCHEMA

#: `dfpipe info`'s pose bins: edges of |yaw| in degrees (frontal, turned, profile)
YAW_BINS = (15.0, 30.0, 45.0, 60.0)
from dfpipe.runtime.runinfo import read_run


@dataclass
class DatasetInfo:
    root: Path
    n_videos: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, int] = field(default_factory=dict)
    by_method: dict[str, int] = field(default_factory=dict)
    by_split: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)  # video / image (one frame each)
    errors: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    n_faces: int = 0
    n_masks: int = 0
    faces_per_video: dict[str, float] = field(default_factory=dict)  # min / median / mean / max
    n_no_face: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # faces extract left out, by reason
    n_shots: int = 0  # camera shots over the ok videos
    n_cut_videos: int = 0  # ok videos with more than one shot
    n_mesh: int = 0  # faces with a face mesh
    by_yaw: dict[str, int] = field(default_factory=dict)  # faces by |yaw| bin ("0-15", ..., "60+")
    flagged: dict[str, int] = field(default_factory=dict)  # faces per quality flag (FACE_FLAGS)
    n_flagged: int = 0  # faces with at least one flag
    stages: list[str] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)  # table -> part files
    videos: list[dict] = field(default_factory=list)  # with info(videos=True): video_rows


def info(dataset: str | Path, videos: bool = False) -> DatasetInfo:
    """What dataset directory `dataset` holds (`dfpipe info`); with `videos`, a row per
    video too (`DatasetInfo.videos`, see `video_rows`)."""
    root = Path(dataset)
    d = DatasetInfo(root)
    if videos:
        d.videos = video_rows(root)
    d.stages = sorted(read_run(root).get("stages", {}))
    for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        n = len(list_parts(root, sub.name))
        if n:
            d.tables[sub.name] = n
    videos = read_table(root, "videos", VIDEOS_SCHEMA).to_pylist()
    d.n_videos = len(videos)
    d.by_status = dict(Counter(v["status"] for v in videos))
    d.by_label = dict(Counter(v["label"] or "unknown" for v in videos))
    d.by_method = dict(Counter(v["method"] or "-" for v in videos))
    d.by_split = dict(Counter(v["split"] or "-" for v in videos))
    d.by_kind = dict(Counter(v["kind"] or "-" for v in videos))
    d.errors = dict(Counter(v["error_code"] for v in videos if v["status"] == "error"))
    d.failed = [(v["path"], v["error_code"], v["error"] or "") for v in videos if v["status"] == "error"]
    dropped: Counter = Counter()
    for v in videos:
        meta = json.loads(v["meta"] or "{}")
        dropped.update(meta.get("dropped", {}))
        if v["status"] == "ok":
            d.n_shots += meta.get("shots", 1)
            d.n_cut_videos += meta.get("shots", 1) > 1
    d.dropped = dict(dropped)
    faces = read_table(root, "faces", FACES_SCHEMA, columns=["video_id", "mask_source", "mesh_score", "yaw", *FACE_FLAGS])
    d.n_faces = faces.num_rows
    d.n_masks = faces.num_rows - faces["mask_source"].null_count if faces.num_rows else 0
    _count_geometry(d, faces)
    ok = [v for v in videos if v["status"] == "ok"]
    counts = Counter(faces["video_id"].to_pylist()) if faces.num_rows else Counter()
    per = np.array([counts.get(v["video_id"], 0) for v in ok], dtype=float)
    d.n_no_face = int((per == 0).sum())
    if len(per):
        d.faces_per_video = {"min": per.min(), "median": float(np.median(per)), "mean": per.mean(), "max": per.max()}
    return d


def yaw_bin(yaw: float) -> str:
    """The `dfpipe info` bin of a yaw angle: "0-15", "15-30", ..., "60+" (by |yaw|)."""
    edges = (0.0, *YAW_BINS)
    for lo, hi in zip(edges, edges[1:]):
        if abs(yaw) < hi:
            return f"{lo:.0f}-{hi:.0f}"
    return f"{edges[-1]:.0f}+"


def _count_geometry(d: DatasetInfo, faces) -> None:
    """Faces with a mesh, by |yaw| bin, and per quality flag."""
    d.n_mesh = faces.num_rows - faces["mesh_score"].null_count if faces.num_rows else 0
    yaws = [y for y in faces["yaw"].to_pylist() if y is not None] if faces.num_rows else []
    order = [yaw_bin(hi - 1) for hi in YAW_BINS] + [yaw_bin(YAW_BINS[-1])]
    counts = Counter(yaw_bin(y) for y in yaws)
    d.by_yaw = {b: counts[b] for b in order if counts[b]}
    if not faces.num_rows:
        return
    flags = np.stack([np.asarray(faces[f].fill_null(False).to_pylist(), dtype=bool) for f in FACE_FLAGS])
    d.flagged = {f: int(n) for f, n in zip(FACE_FLAGS, flags.sum(axis=1))}
    d.n_flagged = int(flags.any(axis=0).sum())


def video_rows(dataset: str | Path) -> list[dict]:
    """One row per video of `dataset` (`dfpipe info --videos`), in path order: its file
    name and id, label, method, compression, split, status (the error code when it
    failed), frames and faces."""
    root = Path(dataset)
    videos = read_table(root, "videos", VIDEOS_SCHEMA).to_pylist()
    faces = read_table(root, "faces", FACES_SCHEMA, columns=["video_id"])
    counts = Counter(faces["video_id"].to_pylist()) if faces.num_rows else Counter()
    return [{
        "video": Path(v["path"] or "").name or v["video_id"],
        "id": v["video_id"],
        "label": v["label"] or "unknown",
        "method": v["method"] or "-",
        "quality": v["compression"] or "-",
        "split": v["split"] or "-",
        "status": v["status"] if v["status"] == "ok" else f"{v['status']}: {v['error_code']}",
        "frames": v["n_frames"],
        "faces": counts.get(v["video_id"], 0),
    } for v in sorted(videos, key=lambda v: (v["path"] or "", v["video_id"]))]

