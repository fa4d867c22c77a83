"""Train / val / test splits by video, never by frame.

Explicit splits win (the faces' `split`, then the video's `split` from `videos/`). Faces
without one get the split of their *group*: a real video together with every fake made
from it (linked through `source_video_id` / `target_video_id`) and every video of the same
named identity (`identity` in a video's meta, as Celeb-DF names them), so a face identity
never sits on both sides. Groups are stratified by what they hold (real only, fake only,
both) and ordered by a seeded hash of their key inside each stratum, which makes the
assignment deterministic, gives val and test both classes where the data allows, and
keeps it stable when unrelated videos are added.

What was resolved is kept in `DS/splits/part-seed<N>.parquet` (`write_kept_splits`, called
by training); evaluation and later runs with the same seed read it back (`read_kept_splits`), and videos added
since join their group's split instead of reshuffling the others.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dfpipe.manifests.parts import part_path, write_rows
from dfpipe.manifests.schema import SPLITS, SPLITS_SCHEMA, SPLITS_TABLE

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def video_groups(video_ids: list[str], videos: pd.DataFrame | None) -> dict[str, str]:
    """video_id -> group key (the smallest id of its connected source/target/identity
    component). `videos` may carry an `identity` column (null where unknown)."""
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
        if "identity" in videos:
            first_of: dict[str, str] = {}
            for vid, ident in zip(videos["video_id"], videos["identity"]):
                if isinstance(ident, str) and ident:
                    union(vid, first_of.setdefault(ident, vid))
    return {v: find(v) for v in video_ids}


def _hash_order(keys: list[str], seed: int) -> list[str]:
    return sorted(keys, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())


def _allocate(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Group counts per split; val gets at least one group when there are two, test too
    when there are three (a model needs a validation set more than a test set)."""
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    if n >= 2:
        n_val = max(n_val, 1 if fractions[1] > 0 else 0)
    if n >= 3:
        n_test = max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = max(n - n_val - n_test, 0)
    return n_train, n_val, n - n_train - n_val


def _stratum(vids: list[str], label_of: dict[str, str]) -> str:
    """What a group holds: 'both', 'real', 'fake' or 'unknown' (stratified separately)."""
    labels = {label_of.get(v) for v in vids} & {"real", "fake"}
    return "both" if len(labels) == 2 else labels.pop() if labels else "unknown"


def assign_splits(
    faces: pd.DataFrame,
    videos: pd.DataFrame | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    fixed: dict[str, str] | None = None,
) -> pd.Series:
    """The split of every face row (`faces` needs `video_id`, may have `split`).

    A face's own split is kept as given, even when one video's faces are split by time
    (a deliberate choice of whoever wrote it; logged as a warning since it is usually a
    leak). Splits this function makes are always whole groups of videos. `fixed` maps
    video ids to splits made before (kept, and followed by the rest of their group).
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
    for vid, s in (fixed or {}).items():
        per_video.setdefault(vid, s)

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
    label_of = _video_labels(faces, videos)
    strata: dict[str, list[str]] = {}
    for g in free:
        strata.setdefault(_stratum(members[g], label_of), []).append(g)
    for name in sorted(strata):
        ordered = _hash_order(strata[name], seed)
        n_train, n_val, _ = _allocate(len(ordered), fractions)
        for i, g in enumerate(ordered):
            decided[g] = "train" if i < n_train else "val" if i < n_train + n_val else "test"

    split_of = {v: per_video.get(v, decided[groups[v]]) for v in ids}
    made = np.array([split_of[v] for v in faces["video_id"]], dtype=object)
    return pd.Series(np.where(explicit.map(lambda s: isinstance(s, str)), explicit, made), index=faces.index, dtype=object)


def _video_labels(faces: pd.DataFrame, videos: pd.DataFrame | None) -> dict[str, str]:
    """video_id -> real / fake where the faces or the videos say so."""
    out: dict[str, str] = {}
    if videos is not None and "label" in videos:
        out.update({v: l for v, l in zip(videos["video_id"], videos["label"]) if l in ("real", "fake")})
    if "label" in faces:
        out.update({v: l for v, l in zip(faces["video_id"], faces["label"]) if l in ("real", "fake")})
    return out


# --------------------------------------------------------------------------- kept splits


def splits_key(seed: int) -> str:
    return f"seed{int(seed)}"


def read_kept_splits(root: str | Path, seed: int) -> dict[str, str]:
    """video_id -> split that an earlier run with `seed` wrote (empty when none)."""
    path = part_path(root, SPLITS_TABLE, splits_key(seed))
    if not path.is_file():
        return {}
    t = pq.read_table(path, columns=["video_id", "split", "origin"]).to_pandas()
    t = t[t["origin"] == "made"]
    return dict(zip(t["video_id"], t["split"]))


def given_split_videos(faces: pd.DataFrame, videos: pd.DataFrame | None) -> set[str]:
    """Videos whose split the data names (on the video row or on any of its faces)."""
    given = {v for v, s in zip(faces["video_id"], faces["split"]) if isinstance(s, str)} if "split" in faces else set()
    if videos is not None and "split" in videos:
        given |= {v for v, s in zip(videos["video_id"], videos["split"]) if isinstance(s, str)}
    return given


def write_kept_splits(root: str | Path, faces: pd.DataFrame, videos: pd.DataFrame | None, seed: int,
                      given: set[str]) -> Path:
    """Record the split of every video with faces (`faces` has `video_id` and the resolved
    `split`), with its group and whether the data gave it (`given`) or dfpipe made it."""
    per_video = faces.groupby("video_id", sort=True)["split"].agg(lambda s: s.value_counts().index[0])
    groups = video_groups(list(per_video.index), videos)
    rows = [{"video_id": v, "split": s, "group_id": groups[v], "origin": "given" if v in given else "made",
             "seed": int(seed)} for v, s in per_video.items()]
    return write_rows(root, SPLITS_TABLE, splits_key(seed), rows, SPLITS_SCHEMA)


def split_counts(faces: pd.DataFrame) -> dict[str, dict[str, int]]:
    """split -> {videos, faces, real, fake}: what `train` reports about the splits it used."""
    out: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        t = faces[faces["split"] == name]
        labels = t["label"] if "label" in t else pd.Series([], dtype=object)
        out[name] = {"videos": int(t["video_id"].nunique()), "faces": int(len(t)),
                     "real": int((labels == "real").sum()), "fake": int((labels == "fake").sum())}
    return out
