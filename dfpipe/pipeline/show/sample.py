"""Which faces `dfpipe show` puts on the page: a few per video, spread over its frames and
tracks, chosen from the cheap index columns so that only the chosen crops are decoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACE_FLAGS, FACES_SCHEMA, VIDEOS_SCHEMA

#: videos/ columns a gallery row shows
VIDEO_COLUMNS = ["video_id", "path", "label", "dataset", "method", "compression", "split", "status",
                 "error_code", "error", "n_faces"]
#: faces/ columns a card shows (no pixels)
FACE_COLUMNS = ["face_id", "video_id", "frame_index", "track_id", "yaw", "pitch", "mask_source",
                *FACE_FLAGS]


@dataclass
class ShownVideo:
    """One video of the gallery: its videos/ row and the faces chosen from it."""

    row: dict
    faces: list[dict] = field(default_factory=list)
    n_faces: int = 0  # faces the dataset holds for it (the shown ones are a sample)

    @property
    def name(self) -> str:
        return Path(self.row["path"]).name

    def tag(self, key: str) -> str:
        """A videos/ value as the filters show it ('-' when missing)."""
        value = self.row.get(key)
        return "-" if value is None or value == "" else str(value)


def _matches(row: dict, key: str, wanted: list[str]) -> bool:
    """A video passes a filter when no value is given, or its value (or, for videos, its
    id, file name or path) is one of them."""
    if not wanted:
        return True
    if key == "video":
        names = {row["video_id"], Path(row["path"]).name, Path(row["path"]).stem, row["path"]}
        return bool(names & set(wanted))
    return ("-" if row.get(key) is None else str(row[key])) in wanted


def select_videos(dataset: str | Path, videos: list[str], labels: list[str], methods: list[str]) -> list[ShownVideo]:
    """The dataset's videos that pass the filters, sorted by label, method and name."""
    table = read_table(dataset, "videos", VIDEOS_SCHEMA, columns=VIDEO_COLUMNS)
    rows = [r for r in table.to_pylist()
            if _matches(r, "video", videos) and _matches(r, "label", labels) and _matches(r, "method", methods)]
    rows.sort(key=lambda r: (str(r["label"]), str(r["method"] or ""), Path(r["path"]).name, r["video_id"]))
    return [ShownVideo(row=r) for r in rows]


def sample_faces(dataset: str | Path, shown: list[ShownVideo], per_video: int) -> None:
    """Fill each video's `faces` with up to `per_video` faces evenly spaced in (frame,
    track) order, then their crops and masks (decoded only for the chosen ones)."""
    if not shown:
        return
    ids = [v.row["video_id"] for v in shown]
    index = read_table(dataset, "faces", FACES_SCHEMA, columns=FACE_COLUMNS,
                       filter=pc.field("video_id").isin(ids)).to_pandas()
    by_video = {vid: grp.sort_values(["frame_index", "track_id"]) for vid, grp in index.groupby("video_id")}
    chosen: dict[str, dict] = {}
    for v in shown:
        grp = by_video.get(v.row["video_id"])
        if grp is None or grp.empty:
            continue
        v.n_faces = len(grp)
        at = np.unique(np.linspace(0, len(grp) - 1, min(per_video, len(grp))).round().astype(int))
        v.faces = grp.iloc[at].to_dict("records")
        chosen.update({f["face_id"]: f for f in v.faces})
    if not chosen:
        return
    pixels = read_table(dataset, "faces", FACES_SCHEMA, columns=["face_id", "image", "mask"],
                        filter=pc.field("face_id").isin(list(chosen)))
    for face_id, image, mask in zip(*(pixels[c].to_pylist() for c in ("face_id", "image", "mask"))):
        chosen[face_id]["image"], chosen[face_id]["mask"] = image, mask
