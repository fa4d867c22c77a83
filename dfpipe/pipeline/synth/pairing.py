"""Which real faces become fakes: tracks of the real dataset, and source/target pairs.

A pair takes its target (the video and track whose frames are changed) and its source (the
identity pasted in) from different real videos, drawn reproducibly from the seed; a CSV
file can fix the pairs instead.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA


@dataclass(frozen=True)
class TrackRef:
    video_id: str
    track_id: int


@dataclass(frozen=True)
class Pair:
    target: TrackRef
    source: TrackRef | None = None  # None for self-blend and external


def real_videos(root: str | Path) -> dict[str, dict]:
    """videos rows of the dataset usable as targets/sources: extracted, not fake."""
    rows = read_table(root, "videos", VIDEOS_SCHEMA).to_pylist()
    return {r["video_id"]: r for r in rows if r["status"] == "ok" and r.get("label") != "fake"}


def track_sizes(root: str | Path, video_ids: set[str]) -> dict[TrackRef, int]:
    """Faces per (video, track), read from the index columns only."""
    table = read_table(root, "faces", FACES_SCHEMA, columns=["video_id", "track_id"])
    sizes: dict[TrackRef, int] = {}
    for vid, tid in zip(table["video_id"].to_pylist(), table["track_id"].to_pylist()):
        if vid in video_ids:
            ref = TrackRef(vid, int(tid))
            sizes[ref] = sizes.get(ref, 0) + 1
    return sizes


def main_tracks(sizes: dict[TrackRef, int]) -> dict[str, TrackRef]:
    """The longest track of each video (ties: the lowest track id)."""
    best: dict[str, TrackRef] = {}
    for ref, n in sorted(sizes.items(), key=lambda kv: (kv[0].video_id, kv[0].track_id)):
        cur = best.get(ref.video_id)
        if cur is None or n > sizes[cur]:
            best[ref.video_id] = ref
    return best


def random_pairs(sizes: dict[TrackRef, int], n: int, seed: int, min_faces: int = 2) -> list[Pair]:
    """Up to `n` distinct (target, source) pairs from different videos, reproducible from `seed`.

    Targets are drawn in a seeded order over all usable tracks, cycling when n exceeds
    them; each gets a random source track of another video."""
    tracks = sorted((r for r, k in sizes.items() if k >= min_faces), key=lambda r: (r.video_id, r.track_id))
    if len({r.video_id for r in tracks}) < 2:
        raise ValueError(
            f"swap needs tracks of at least two real videos with >= {min_faces} faces; the dataset has "
            f"{len({r.video_id for r in tracks})}"
        )
    rng = np.random.default_rng(seed)
    possible = sum(sum(1 for s in tracks if s.video_id != t.video_id) for t in tracks)
    pairs: list[Pair] = []
    seen: set[Pair] = set()
    while len(pairs) < min(n, possible):
        for i in rng.permutation(len(tracks)):
            target = tracks[i]
            sources = [s for s in tracks if s.video_id != target.video_id]
            pair = Pair(target, sources[int(rng.integers(len(sources)))])
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
            if len(pairs) >= min(n, possible):
                break
    return pairs


def read_pairs_csv(path: str | Path, sizes: dict[TrackRef, int]) -> list[tuple[Pair | None, dict, str | None]]:
    """Pairs from a CSV with columns target_video_id, source_video_id and optional
    target_track_id, source_track_id (default: each video's main track).

    Returns (pair or None, the CSV row, an error message or None) for every row, so a bad
    row becomes an error row of the run rather than stopping it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"pairs file {path} does not exist")
    mains = main_tracks(sizes)
    out: list[tuple[Pair | None, dict, str | None]] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"target_video_id", "source_video_id"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"pairs file {path} lacks the column(s) {', '.join(sorted(missing))}")
        for row in reader:
            refs = []
            error = None
            for role in ("target", "source"):
                vid = (row.get(f"{role}_video_id") or "").strip()
                tid = (row.get(f"{role}_track_id") or "").strip()
                if tid:
                    ref = TrackRef(vid, int(tid)) if tid.lstrip("-").isdigit() else None
                    if ref is None or ref not in sizes:
                        error = f"{role} track {vid}/{tid} is not a track of a real video in the dataset"
                elif vid in mains:
                    ref = mains[vid]
                else:
                    ref, error = None, f"{role} video {vid!r} is not an extracted real video of the dataset"
                refs.append(ref)
            if error is None and refs[0].video_id == refs[1].video_id:
                error = "source and target are the same video"
            out.append((None if error else Pair(refs[0], refs[1]), row, error))
    return out
