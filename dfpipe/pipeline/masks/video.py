"""Masks for one fake video: fill `mask` / `mask_source` of its `faces/` part.

Order of preference per face: the dataset's own mask video (`meta.mask_path`, FF++), the
difference with the real pair's crop of the same frame and track (extract gave the fake its
source's matrices, so the crops line up; bounded by the face region below), and the face
region itself: the face mesh's outline (`mesh`), or for a row without a mesh (`--mesh
none`, older parts without the column) the hull of a mean face fitted to the 5 landmarks
(`landmarks`). The faces part is rewritten atomically; a part whose faces all have masks
already is left as it is.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dfpipe.manifests.codec import decode_image, encode_mask
from dfpipe.manifests.parts import part_path, write_part_atomic
from dfpipe.manifests.schema import FACES_SCHEMA
from dfpipe.pipeline.masks.pairmask import PairMaskConfig, face_region_mask, mesh_pair_mask, pair_mask, shipped_mask
from dfpipe.runtime.stage import ItemError


@dataclass
class MaskedVideo:
    """What masking one fake did: faces by mask source, and a note on a fallback taken."""

    sources: Counter
    note: str | None = None


def _has_masks(path: Path) -> bool:
    table = pq.read_table(path, columns=["mask_source"])
    return table.num_rows == 0 or table.column("mask_source").null_count == 0


def _shipped_frames(root: Path, meta: dict, indices: set[int]) -> dict[int, np.ndarray] | None:
    """Frames of the dataset's mask video at `indices` (None without one)."""
    rel = meta.get("mask_path")
    if not rel:
        return None
    from dfpipe.pipeline.video.decode import iter_frames

    frames = {}
    last = max(indices) if indices else -1
    for frame in iter_frames(root / rel):
        if frame.index in indices:
            frames[frame.index] = frame.image
        if frame.index >= last:
            break
    return frames


def mask_video(root: str | Path, video: dict[str, Any], config: PairMaskConfig) -> MaskedVideo:
    """Fill the masks of one fake's faces part (see the module docstring). Raises ItemError
    when the fake has no faces part to mask."""
    root = Path(root)
    vid = video["video_id"]
    path = part_path(root, "faces", vid)
    if not path.is_file():
        raise ItemError("bad_input", f"{vid} has status ok but no faces part ({path}): extract it again")
    table = pq.read_table(path, schema=FACES_SCHEMA)
    if _has_masks(path):  # masked before (an earlier run killed before its marker, or shipped)
        return MaskedVideo(Counter(table.column("mask_source").to_pylist()))
    rows = table.to_pylist()
    meta = json.loads(video.get("meta") or "{}")

    shipped, note = None, None
    if config.use_shipped and meta.get("mask_path"):
        try:
            shipped = _shipped_frames(root, meta, {r["frame_index"] for r in rows})
        except Exception as exc:  # a broken mask video must not stop the run: fall back, say so
            note = f"mask video {meta['mask_path']} unreadable ({exc}); using pair/landmarks"

    source_crops: dict[tuple[int, int], dict] = {}
    src = video.get("source_video_id")
    src_path = part_path(root, "faces", src) if src else None
    if shipped is None and src_path is not None and src_path.is_file():
        src_table = pq.read_table(src_path, columns=["frame_index", "track_id", "matrix", "size", "image"])
        source_crops = {(r["frame_index"], r["track_id"]): r for r in src_table.to_pylist()}

    sources: Counter = Counter()
    for row in rows:
        size = int(row["size"])
        key = (row["frame_index"], row["track_id"])
        partner = source_crops.get(key)
        if shipped is not None and row["frame_index"] in shipped:
            mask, how = shipped_mask(shipped[row["frame_index"]], row["matrix"], size), "shipped"
        elif partner is not None and np.allclose(partner["matrix"], row["matrix"], atol=1e-6) and partner["size"] == size:
            real, fake = decode_image(partner["image"]), decode_image(row["image"])
            found = face_region_mask(row.get("mesh"), row["landmarks"], row["matrix"], size, "full")
            if found is not None and found[1] == "mesh":
                mask = mesh_pair_mask(real, fake, found[0], config)
            else:
                mask = pair_mask(real, fake, config, None if found is None else found[0])
            how = "pair"
        else:  # no source, or the fake fell back to its own detections: geometry differs
            found = face_region_mask(row.get("mesh"), row["landmarks"], row["matrix"], size, config.landmark_region)
            if found is None:
                raise ItemError("bad_input", f"{vid} face {row.get('face_id')} has neither a mesh nor landmarks")
            mask, how = found
        row["mask"] = encode_mask(mask)
        row["mask_source"] = how
        sources[how] += 1
    write_part_atomic(pa.Table.from_pylist(rows, schema=FACES_SCHEMA), path)
    return MaskedVideo(sources, note)
