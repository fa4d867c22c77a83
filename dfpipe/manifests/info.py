"""`dfpipe info`: what a dataset directory holds, read from index columns only."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfpipe.manifests.parts import list_parts, read_table
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.runtime.runinfo import read_run


@dataclass
class DatasetInfo:
    root: Path
    n_videos: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, int] = field(default_factory=dict)
    by_method: dict[str, int] = field(default_factory=dict)
    by_split: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    n_faces: int = 0
    n_masks: int = 0
    faces_per_video: dict[str, float] = field(default_factory=dict)  # min / median / mean / max
    n_no_face: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # faces extract left out, by reason
    n_shots: int = 0  # camera shots over the ok videos
    n_cut_videos: int = 0  # ok videos with more than one shot
    stages: list[str] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)  # table -> part files


def info(dataset: str | Path) -> DatasetInfo:
    """What dataset directory `dataset` holds (`dfpipe info`)."""
    root = Path(dataset)
    d = DatasetInfo(root)
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
    faces = read_table(root, "faces", FACES_SCHEMA, columns=["video_id", "mask_source"])
    d.n_faces = faces.num_rows
    d.n_masks = faces.num_rows - faces["mask_source"].null_count if faces.num_rows else 0
    ok = [v for v in videos if v["status"] == "ok"]
    counts = Counter(faces["video_id"].to_pylist()) if faces.num_rows else Counter()
    per = np.array([counts.get(v["video_id"], 0) for v in ok], dtype=float)
    d.n_no_face = int((per == 0).sum())
    if len(per):
        d.faces_per_video = {"min": per.min(), "median": float(np.median(per)), "mean": per.mean(), "max": per.max()}
    return d
