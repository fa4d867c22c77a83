"""Which real faces become fakes: tracks of the real dataset, and source/target pairs.

Only videos labelled real are used (an unlabelled dataset is refused: a swap of an unknown
video could be a fake of a fake). A pair takes its target (the video and track whose frames
are changed) and its source (the identity pasted in) from different real videos and, when
face descriptors are available (synth/identities.py), different people: `random` draws
them reproducibly from the seed, `similar` gives each target the nearest-looking other
person (as DFDC paired its actors), and a CSV file (`file`) can fix the pairs instead.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACES_SCHEMA, HOW_TO_LABEL, VIDEOS_SCHEMA

if TYPE_CHECKING:
    from dfpipe.pipeline.synth.identities import Identities

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class TrackRef:
    video_id: str
    track_id: int


@dataclass(frozen=True)
class Pair:
    target: TrackRef
    source: TrackRef | None = None  # None for self-blend and external


def real_videos(root: str | Path) -> dict[str, dict]:
    """videos rows of the dataset usable as targets/sources: extracted and labelled real.

    A fake is never a source or target. Raises ValueError, saying how to label videos, when
    extracted videos exist but none is labelled real (all fakes, or "unknown": a folder
    extracted directly)."""
    rows = [r for r in read_table(root, "videos", VIDEOS_SCHEMA).to_pylist() if r["status"] == "ok"]
    real = {r["video_id"]: r for r in rows if r.get("label") == "real"}
    unknown = sum(1 for r in rows if r.get("label") not in ("real", "fake"))
    if not real and rows:
        n_fake = len(rows) - unknown
        raise ValueError(
            f"{root}: no video is labelled real ({n_fake} fake, {unknown} unlabelled): synthesize only uses faces of "
            f"real videos, never a fake's; {HOW_TO_LABEL}"
        )
    if unknown:
        log.warning("%s: %d unlabelled video(s) are not used as sources or targets", root, unknown)
    return real


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


def _usable(sizes: dict[TrackRef, int], min_faces: int) -> list[TrackRef]:
    tracks = sorted((r for r, k in sizes.items() if k >= min_faces), key=lambda r: (r.video_id, r.track_id))
    if len({r.video_id for r in tracks}) < 2:
        raise ValueError(
            f"swap needs tracks of at least two real videos with >= {min_faces} faces; the dataset has "
            f"{len({r.video_id for r in tracks})}"
        )
    return tracks


def _may_pair(target: TrackRef, source: TrackRef, identity: dict[TrackRef, int] | None,
              split_of: dict[str, str | None] | None = None) -> bool:
    """Another video, of the same split when the reals have splits (a swap across splits
    would tie two people of different splits together), and, when identities are known,
    another person."""
    if source.video_id == target.video_id:
        return False
    if split_of and split_of.get(source.video_id) != split_of.get(target.video_id):
        return False
    return identity is None or identity.get(source, -1) != identity.get(target, -2)


def _check_identities(tracks: list[TrackRef], identity: dict[TrackRef, int] | None) -> None:
    if identity is not None and len({identity.get(r) for r in tracks}) < 2:
        raise ValueError(
            f"all {len(tracks)} usable real tracks show one person (face descriptors): a swap needs two identities"
        )


def random_pairs(sizes: dict[TrackRef, int], n: int, seed: int, min_faces: int = 2,
                 identity: dict[TrackRef, int] | None = None, split_of: dict[str, str | None] | None = None) -> list[Pair]:
    """Up to `n` distinct (target, source) pairs from different videos, reproducible from `seed`.

    Targets are drawn in a seeded order over all usable tracks, cycling when n exceeds
    them; each gets a random source track of another video and, given `identity` (track ->
    person, identities.py), of another person; given `split_of` (video -> split), of the
    same split."""
    tracks = _usable(sizes, min_faces)
    _check_identities(tracks, identity)
    rng = np.random.default_rng(seed)
    choices = {t: [s for s in tracks if _may_pair(t, s, identity, split_of)] for t in tracks}
    possible = sum(len(c) for c in choices.values())
    pairs: list[Pair] = []
    seen: set[Pair] = set()
    while len(pairs) < min(n, possible):
        for i in rng.permutation(len(tracks)):
            target = tracks[i]
            sources = choices[target]
            if not sources:
                continue
            pair = Pair(target, sources[int(rng.integers(len(sources)))])
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
            if len(pairs) >= min(n, possible):
                break
    return pairs


def similar_pairs(sizes: dict[TrackRef, int], n: int, seed: int, ids: Identities,
                  min_faces: int = 2, split_of: dict[str, str | None] | None = None) -> list[tuple[Pair, dict]]:
    """Up to `n` pairs of look-alike different people, with a note of each pair's distances.

    Each target's candidates (tracks of other videos and other identities) are ranked by
    the look-alike cost of their identity (descriptor distance from the target to the
    identity's mean descriptor, plus TONE_WEIGHT x the Lab distance of the skin tones), then
    of the track itself; exact ties (to 1e-6) go by a seeded random key. Targets take turns
    in a seeded order, each taking its next candidate: with n up to the number of targets,
    every target gets the nearest other person."""
    from dfpipe.pipeline.synth.identities import look_alike_cost, pair_distance

    tracks = [t for t in _usable(sizes, min_faces) if t in ids.descriptors]
    _check_identities(tracks, ids.identity)
    rng = np.random.default_rng(seed)
    members = ids.members()
    centre = {i: (np.mean([ids.descriptors[r] for r in rs], axis=0), np.mean([ids.tones[r] for r in rs], axis=0))
              for i, rs in members.items()}
    ranked: dict[TrackRef, list[TrackRef]] = {}
    for target in tracks:
        sources = [s for s in tracks if _may_pair(target, s, ids.identity, split_of)]
        ties = rng.random(len(sources))
        keys = [(round(look_alike_cost(ids.descriptors[target], ids.tones[target], *centre[ids.identity[s]]), 6),
                 round(look_alike_cost(ids.descriptors[target], ids.tones[target], ids.descriptors[s], ids.tones[s]), 6),
                 tie) for s, tie in zip(sources, ties)]
        ranked[target] = [s for _, s in sorted(zip(keys, sources), key=lambda ks: ks[0])]
    order = [tracks[i] for i in rng.permutation(len(tracks))]
    out: list[tuple[Pair, dict]] = []
    for rank in range(max((len(r) for r in ranked.values()), default=0)):
        for target in order:
            if len(out) >= n:
                return out
            if rank < len(ranked[target]):
                source = ranked[target][rank]
                desc, tone = pair_distance(ids, target, source)
                out.append((Pair(target, source), {
                    "pairing": "similar", "descriptor_distance": round(desc, 4), "tone_distance": round(tone, 2),
                    "source_rank": rank, "target_identity": ids.identity[target], "source_identity": ids.identity[source],
                }))
    return out


def plan_pairs(ds: str | Path, sizes: dict[TrackRef, int], usable: dict[TrackRef, int], pairing: str,
               n: int, seed: int, min_faces: int = 2,
               pairs_file: str | Path | None = None) -> list[tuple[Pair | None, dict, str | None, list]]:
    """The pairs of a swap / reenact run: (pair or None, note for the job, error or None,
    the parts that key the job) for `pairing` random, similar or file.

    `similar` needs the face descriptor (dlib) and raises ValueError without it; `random`
    then falls back to pairing different videos only, and says so in the note."""
    if pairing == "file":
        return [(pair, {"pairing": "file", "pairs_row": i}, error, ["csv", i, row])
                for i, (pair, row, error) in enumerate(read_pairs_csv(pairs_file, sizes))]
    ids, why = _try_identities(ds, usable)
    split_of = real_splits(ds)
    if pairing == "similar":
        if ids is None:
            raise ValueError(f"--pairing similar needs face descriptors: {why}")
        return [(pair, note, None, [pair.target, pair.source])
                for pair, note in similar_pairs(usable, n, seed, ids, min_faces, split_of)]
    note: dict = {"pairing": "random", "identities": "descriptors" if ids else f"none ({why}): sources only from other videos"}
    if ids is None:
        log.warning("random pairing without face descriptors (%s): one person's several videos may be paired", why)
    out = []
    for pair in random_pairs(usable, n, seed, min_faces, ids.identity if ids else None, split_of):
        extra = {"descriptor_distance": round(_distance(ids, pair), 4)} if ids else {}
        out.append((pair, {**note, **extra}, None, [pair.target, pair.source]))
    return out


def real_splits(ds: str | Path) -> dict[str, str | None] | None:
    """video -> split of the real videos, when any has one (`dfpipe build` splits the reals
    by identity before synthesis); None when the reals are not split yet."""
    rows = read_table(ds, "videos", VIDEOS_SCHEMA, columns=["video_id", "label", "split"]).to_pylist()
    split_of = {r["video_id"]: r["split"] for r in rows if r["label"] == "real"}
    return split_of if any(isinstance(s, str) for s in split_of.values()) else None


def _distance(ids: Identities, pair: Pair) -> float:
    from dfpipe.pipeline.synth.identities import pair_distance

    return pair_distance(ids, pair.target, pair.source)[0]


def _try_identities(ds: str | Path, usable: dict[TrackRef, int]) -> tuple[Identities | None, str | None]:
    """The identities of the usable tracks, or None and why (dlib or its weights missing)."""
    from dfpipe.pipeline.synth.identities import identities
    from dfpipe.runtime.weights import WeightsError

    try:
        return identities(ds, usable), None
    except (ImportError, WeightsError) as exc:
        return None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


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
