"""Train / val / test by identity across a whole benchmark, written into its videos rows.

A person's real videos, and every fake made from or onto them, must sit in one split, or a
detector is tested on faces it trained on. Videos are linked when they share a person (the
tracks of real videos are described with dlib's face descriptor and clustered, as pairing
does: `synth/identities.py`), and fakes follow their source and target videos; every
connected group then goes to one split (`train/splits.py`, stratified and seeded). Each
video's `split` and its people (`identity`, `identities` in meta) are written into its
`videos/` row, so `dfpipe train` and `dfpipe evaluate` on the benchmark read the same
assignment as given splits. Splits the data already names (FF++'s official lists) are kept,
and their group follows them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dfpipe.manifests.parts import part_path, read_table, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.pipeline.synth.pairing import TrackRef
from dfpipe.train.splits import DEFAULT_FRACTIONS, assign_splits, video_groups

#: a real track needs this many faces to be described (a stray detection names nobody)
MIN_TRACK_FACES = 2


@dataclass
class SplitSummary:
    videos: dict[str, int] = field(default_factory=dict)  # split -> videos
    identities: dict[str, int] = field(default_factory=dict)  # split -> people
    groups: int = 0
    described: bool = True  # False: no face descriptor, linked by lineage only
    notes: list[str] = field(default_factory=list)


def meta_of(value: object) -> dict:
    """A videos row's `meta` JSON as a dict ({} when absent or not an object)."""
    if isinstance(value, str) and value:
        try:
            parsed = json.loads(value)
            return parsed if isinstance(parsed, dict) else {}
        except json.JSONDecodeError:
            return {}
    return {}


def people_of(meta: object) -> list[str]:
    """The people this step named in a real video's meta (`identities`, main track first)."""
    found = meta_of(meta).get("identities")
    return [p for p in found if isinstance(p, str)] if isinstance(found, list) else []


def track_identities(dataset: str | Path, videos: pd.DataFrame, describer=None) -> dict[str, list[str]]:
    """video_id -> the people (`person-<k>`) its real tracks show, main track first; empty
    when the face descriptor cannot be built (ImportError / WeightsError propagate)."""
    from dfpipe.pipeline.synth.identities import identities

    reals = set(videos.loc[(videos["label"] == "real") & (videos["status"] == "ok"), "video_id"])
    table = read_table(dataset, "faces", FACES_SCHEMA, columns=["video_id", "track_id"]).to_pandas()
    sizes = table[table["video_id"].isin(reals)].groupby(["video_id", "track_id"]).size()
    refs = [TrackRef(v, int(t)) for (v, t), n in sizes.items() if n >= MIN_TRACK_FACES]
    if not refs:
        return {}
    found = identities(dataset, refs, describer)
    people: dict[str, list[tuple[int, str]]] = {}
    for ref, k in found.identity.items():
        people.setdefault(ref.video_id, []).append((-int(sizes[(ref.video_id, ref.track_id)]), f"person-{k:03d}"))
    return {v: list(dict.fromkeys(name for _, name in sorted(items))) for v, items in people.items()}


def identity_splits(dataset: str | Path, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
                    describer=None) -> SplitSummary:
    """Assign every extracted video of `dataset` a split by identity group and write it
    (with its people) into its `videos/` row; see the module docstring."""
    from dfpipe.runtime.weights import WeightsError

    root = Path(dataset)
    summary = SplitSummary()
    rows = read_table(root, "videos", VIDEOS_SCHEMA).to_pylist()
    videos = pd.DataFrame(rows, columns=[f.name for f in VIDEOS_SCHEMA])
    try:
        people = track_identities(root, videos, describer)
    except (ImportError, WeightsError) as exc:
        people = {}
        summary.described = False
        summary.notes.append(f"no face descriptor ({exc}); videos are grouped by lineage and named identities only")
    named = {r["video_id"]: meta_of(r["meta"]).get("identity") for r in rows}
    # one row per (video, person): video_groups joins every video that shares a person
    links = []
    for r in rows:
        vid = r["video_id"]
        persons = people.get(vid) or [named[vid]]
        for person in persons:
            links.append({"video_id": vid, "identity": person, "source_video_id": r["source_video_id"],
                          "target_video_id": r["target_video_id"]})
    link_frame = pd.DataFrame(links, columns=["video_id", "identity", "source_video_id", "target_video_id"])
    used = videos[(videos["status"] == "ok") & (videos["n_faces"].fillna(0) > 0)]
    per_video = pd.DataFrame({"video_id": used["video_id"], "label": used["label"], "split": used["split"]})
    if per_video.empty:
        summary.notes.append("no extracted video has faces: nothing to split")
        return summary
    given = {v: s for v, s in zip(used["video_id"], used["split"]) if isinstance(s, str)}
    split_of = dict(zip(per_video["video_id"], assign_splits(per_video.drop(columns="split"),
                                                             _with_given(link_frame, given), seed, fractions)))
    groups = video_groups(list(split_of), link_frame)
    summary.groups = len(set(groups.values()))
    for r in rows:
        vid = r["video_id"]
        meta = meta_of(r["meta"])
        new_meta = dict(meta)
        if people.get(vid):
            new_meta["identity"] = people[vid][0]
            new_meta["identities"] = people[vid]
        new_split = split_of.get(vid, r["split"])
        if new_split == r["split"] and new_meta == meta:
            continue
        r["split"] = new_split
        r["meta"] = json.dumps(new_meta, sort_keys=True) if new_meta else r["meta"]
        write_part_atomic(rows_to_table([r], VIDEOS_SCHEMA), part_path(root, "videos", vid))
    summary.videos = dict(sorted(Counter(split_of.values()).items()))
    persons_in: dict[str, set[str]] = {}
    for vid, split in split_of.items():
        for person in people.get(vid, []):
            persons_in.setdefault(split, set()).add(person)
    summary.identities = {s: len(p) for s, p in sorted(persons_in.items())}
    return summary


def _with_given(links: pd.DataFrame, given: dict[str, str]) -> pd.DataFrame:
    """The link rows with each video's given split, as assign_splits reads them."""
    out = links.copy()
    out["split"] = out["video_id"].map(given)
    return out


def identity_leaks(dataset: str | Path) -> list[str]:
    """What breaks the rule in `dataset`'s videos rows: a person in two splits, or a fake in
    another split than its source or target. Empty when the splits hold."""
    rows = [r for r in read_table(dataset, "videos", VIDEOS_SCHEMA).to_pylist() if r["status"] == "ok"]
    split_of = {r["video_id"]: r["split"] for r in rows}
    where: dict[str, set[str]] = {}
    problems = []
    for r in rows:
        for person in people_of(r["meta"]) if r["label"] == "real" else []:
            where.setdefault(person, set()).add(r["split"])
        for col in ("source_video_id", "target_video_id"):
            other = r[col]
            if isinstance(other, str) and other in split_of and split_of[other] != r["split"]:
                problems.append(f"{r['video_id']} ({r['split']}) is made from {other} ({split_of[other]})")
    problems += [f"{person} is in {sorted(s, key=str)}" for person, s in sorted(where.items()) if len(s) > 1]
    return problems


__all__ = ["SplitSummary", "identity_leaks", "identity_splits", "meta_of", "people_of", "track_identities"]
