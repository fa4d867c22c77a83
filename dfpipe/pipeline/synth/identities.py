"""Who is in each real track: a face descriptor and a skin tone per track, and identities.

A swap of a person onto themselves is no fake, and one person often has several videos
(FF++ and DFDC actors do), so pairing works on identities, not videos. Each track gets the
mean dlib descriptor of a few of its best-scored crops (described on the stored crop, with
the detector's box mapped into crop pixels) and the mean Lab colour of its inner face;
tracks are then clustered (average linkage, cut at dlib's same-person distance) into
identities. Computed in memory at planning: a few descriptors per track are cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import pyarrow.compute as pc

from dfpipe.manifests.codec import decode_image
from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACES_SCHEMA
from dfpipe.pipeline.faces.align import transform_points
from dfpipe.pipeline.synth.pairing import TrackRef

#: crops described per track (its best-scored ones): a mean of a few steadies the descriptor
CROPS_PER_TRACK = 3
#: weight of skin tone in `similar` pairing, per Lab unit (CIE76 delta E): a tone difference
#: of 25 (light vs dark skin) counts as much as 0.1 of descriptor distance
TONE_WEIGHT = 0.004
#: rows of the inner face (share of the detector box height): below the eyes, above the mouth
INNER = (0.48, 0.66)
_COLUMNS = ["video_id", "track_id", "frame_index", "score", "x1", "y1", "x2", "y2", "matrix", "image"]


@dataclass
class Identities:
    """Per track: descriptor (128,), tone (Lab, 3) and identity (cluster id, from 0)."""

    descriptors: dict[TrackRef, np.ndarray]
    tones: dict[TrackRef, np.ndarray]
    identity: dict[TrackRef, int]

    def same(self, a: TrackRef, b: TrackRef) -> bool:
        """Whether two tracks show one person (tracks never described count as different)."""
        return a in self.identity and b in self.identity and self.identity[a] == self.identity[b]

    def members(self) -> dict[int, list[TrackRef]]:
        """identity -> its tracks, sorted."""
        out: dict[int, list[TrackRef]] = {}
        for ref in sorted(self.identity, key=_order):
            out.setdefault(self.identity[ref], []).append(ref)
        return out


def _order(ref: TrackRef) -> tuple[str, int]:
    return ref.video_id, ref.track_id


def crop_box(row: dict) -> np.ndarray:
    """The detector's box of a faces row in its crop's pixels (x1, y1, x2, y2)."""
    corners = np.array([[row["x1"], row["y1"]], [row["x2"], row["y1"]], [row["x1"], row["y2"]], [row["x2"], row["y2"]]])
    pts = transform_points(corners, row["matrix"])
    return np.array([*pts.min(axis=0), *pts.max(axis=0)])


def inner_tone(crop: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Median Lab colour (L 0-100) of the inner face: cheeks and nose, between the eyes
    and the mouth, so hair, background, eye whites, teeth and moustache stay out (the
    median drops nostril shadows)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    h_img, w_img = crop.shape[:2]
    xa, xb = int(np.clip(x1 + 0.2 * w, 0, w_img - 1)), int(np.clip(x2 - 0.2 * w, 1, w_img))
    ya, yb = int(np.clip(y1 + INNER[0] * h, 0, h_img - 1)), int(np.clip(y1 + INNER[1] * h, 1, h_img))
    patch = crop[ya:max(yb, ya + 1), xa:max(xb, xa + 1)]
    lab = cv2.cvtColor(patch.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return np.median(lab.reshape(-1, 3), axis=0)


def best_rows(ds: str | Path, refs: Iterable[TrackRef], per_track: int = CROPS_PER_TRACK) -> dict[TrackRef, list[dict]]:
    """The `per_track` best-scored faces rows (with crops) of each track (ties: earliest frame)."""
    wanted = set(refs)
    videos = sorted({r.video_id for r in wanted})
    if not videos:
        return {}
    table = read_table(ds, "faces", FACES_SCHEMA, columns=_COLUMNS, filter=pc.field("video_id").isin(videos))
    rows: dict[TrackRef, list[dict]] = {}
    for row in table.to_pylist():
        ref = TrackRef(row["video_id"], int(row["track_id"]))
        if ref in wanted:
            rows.setdefault(ref, []).append(row)
    return {ref: sorted(rs, key=lambda r: (-(r["score"] or 0.0), r["frame_index"]))[:per_track] for ref, rs in rows.items()}


def describe_tracks(ds: str | Path, refs: Iterable[TrackRef], describer=None,
                    per_track: int = CROPS_PER_TRACK) -> tuple[dict[TrackRef, np.ndarray], dict[TrackRef, np.ndarray]]:
    """(descriptor, tone) of each track: means over its best crops. Raises ImportError
    (dlib missing) or WeightsError when the descriptor cannot be built."""
    if describer is None:
        from dfpipe.models.face_descriptor import FaceDescriptor

        describer = FaceDescriptor()
    descriptors, tones = {}, {}
    for ref, rows in best_rows(ds, refs, per_track).items():
        vecs, labs = [], []
        for row in rows:
            crop = decode_image(row["image"])
            box = crop_box(row)
            vecs.append(describer.describe(crop, box[None])[0])
            labs.append(inner_tone(crop, box))
        descriptors[ref] = np.mean(vecs, axis=0).astype(np.float32)
        tones[ref] = np.mean(labs, axis=0).astype(np.float32)
    return descriptors, tones


def cluster(descriptors: dict[TrackRef, np.ndarray], threshold: float | None = None) -> dict[TrackRef, int]:
    """Identity per track: average-linkage clusters of descriptor distance cut at
    `threshold` (default dlib's SAME_PERSON), numbered in track order."""
    from dfpipe.models.face_descriptor import SAME_PERSON, descriptor_distance

    refs = sorted(descriptors, key=_order)
    if len(refs) < 2:
        return {r: 0 for r in refs}
    from sklearn.cluster import AgglomerativeClustering

    vecs = np.stack([descriptors[r] for r in refs])
    dist = descriptor_distance(vecs[:, None], vecs[None])
    labels = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average",
        distance_threshold=SAME_PERSON if threshold is None else threshold,
    ).fit_predict(dist)
    renumber: dict[int, int] = {}
    return {r: renumber.setdefault(int(lab), len(renumber)) for r, lab in zip(refs, labels)}


def identities(ds: str | Path, refs: Iterable[TrackRef], describer=None) -> Identities:
    """Descriptors, tones and identities of the tracks `refs` of dataset `ds`."""
    descriptors, tones = describe_tracks(ds, refs, describer)
    return Identities(descriptors, tones, cluster(descriptors))


def look_alike_cost(desc_a: np.ndarray, tone_a: np.ndarray, desc_b: np.ndarray, tone_b: np.ndarray) -> float:
    """How unalike two faces look: descriptor distance plus TONE_WEIGHT x Lab tone distance."""
    from dfpipe.models.face_descriptor import descriptor_distance

    tone = float(np.linalg.norm(np.asarray(tone_a, np.float64) - np.asarray(tone_b, np.float64)))
    return float(descriptor_distance(desc_a, desc_b)) + TONE_WEIGHT * tone


def pair_distance(ids: Identities, a: TrackRef, b: TrackRef) -> tuple[float, float]:
    """(descriptor distance, Lab tone distance) of two described tracks."""
    from dfpipe.models.face_descriptor import descriptor_distance

    return (float(descriptor_distance(ids.descriptors[a], ids.descriptors[b])),
            float(np.linalg.norm(ids.tones[a].astype(np.float64) - ids.tones[b])))
