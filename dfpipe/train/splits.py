"""Train / val / test splits by video, never by frame.

Explicit splits win (the faces' `split`, then the video's `split` from `videos/`). Faces
without one get the split of their *group*: a real video together with every fake made
from it (linked through `source_video_id` / `target_video_id`), so a face identity never
sits on both sides. Groups are ordered by a seeded hash of their key, which makes the
assignment deterministic and stable when unrelated videos are added.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

import numpy as np
import pandas as pd

from dfpipe.manifests.schema import SPLITS

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def video_groups(video_ids: list[str], videos: pd.DataFrame | None) -> dict[str, str]:
    """video_id -> group key (the smallest id of its connected source/target component)."""
    parent: dict[str, str] = {v: v for v in video_ids}

    def find(v: str) -> str:
        parent.setdefault(v, v)
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    if videos is not None and len(videos):
        for col in ("source_video_id", "target_video_id"):
            if col in videos:
                for vid, other in zip(videos["video_id"], videos[col]):
                    if isinstance(other, str) and other:
                        union(vid, other)
    return {v: find(v) for v in video_ids}


def _hash_order(keys: list[str], seed: int) -> list[str]:
    return sorted(keys, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())


def _allocate(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Group counts per split; val and test get at least one group when there are three."""
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    if n >= 3:
        n_val, n_test = max(n_val, 1 if fractions[1] > 0 else 0), max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = max(n - n_val - n_test, 0)
    return n_train, n_val, n - n_train - n_val


def assign_splits(
    faces: pd.DataFrame,
    videos: pd.DataFrame | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> pd.Series:
    """The split of every face row (`faces` needs `video_id`, may have `split`).

    A face's own split is kept as given, even when one video's faces are split by time
    (a deliberate choice of whoever wrote it; logged as a warning since it is usually a
    leak). Splits this function makes are always whole groups of videos.
    """
    explicit = faces["split"] if "split" in faces else pd.Series([None] * len(faces), index=faces.index)
    given = {s for s in explicit if isinstance(s, str)}
    per_video: dict[str, str] = {}
    if videos is not None and "split" in videos:
        per_video.update({v: s for v, s in zip(videos["video_id"], videos["split"]) if isinstance(s, str)})
        given |= set(per_video.values())
    bad = given - set(SPLITS)
    if bad:
        raise ValueError(f"unknown split name(s) {sorted(bad)}; expected {SPLITS}")
    face_votes: dict[str, Counter] = {}
    for vid, s in zip(faces["video_id"], explicit):
        if isinstance(s, str):
            face_votes.setdefault(vid, Counter())[s] += 1
    for vid, votes in face_votes.items():
        if len(votes) > 1:
            log.warning("video %s has faces in several splits %s (kept as given)", vid, dict(votes))
        per_video.setdefault(vid, votes.most_common(1)[0][0])

    ids = sorted(set(faces["video_id"]))
    groups = video_groups(ids, videos)
    members: dict[str, list[str]] = {}
    for vid, g in groups.items():
        members.setdefault(g, []).append(vid)

    # a group with explicit members follows their majority; the others are hashed
    decided: dict[str, str] = {}
    free: list[str] = []
    for g, vids in members.items():
        known = [per_video[v] for v in vids if v in per_video]
        if known:
            decided[g] = Counter(known).most_common(1)[0][0]
        else:
            free.append(g)
    ordered = _hash_order(free, seed)
    n_train, n_val, _ = _allocate(len(ordered), fractions)
    for i, g in enumerate(ordered):
        decided[g] = "train" if i < n_train else "val" if i < n_train + n_val else "test"

    split_of = {v: per_video.get(v, decided[groups[v]]) for v in ids}
    made = np.array([split_of[v] for v in faces["video_id"]], dtype=object)
    return pd.Series(np.where(explicit.map(lambda s: isinstance(s, str)), explicit, made), index=faces.index, dtype=object)
