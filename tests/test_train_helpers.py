"""Builders of tiny real-face datasets for the trainer tests (no tests in this module).

Faces come from the shared FF++ c23 real video and its NeuralTextures fake, through
dfpipe's own extract path (`process_video`: RetinaFace, tracking, alignment). The fake
reuses its source's frames and crop matrices, so real and fake crops line up. Frames are
cut into short clips that become separate videos (fake clip k made from real clip k), so
split and sharding tests have several videos and pairs to work with.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from dfpipe.manifests.parts import part_path, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA

_CACHE: dict[tuple, tuple[list[dict], list[dict]]] = {}


def extract_pair(real_video: Path, fake_video: Path, every: int, size: int, work: Path) -> tuple[list[dict], list[dict]]:
    """Face rows (largest face per frame) of the real video and the fake, same frames."""
    from dfpipe.pipeline.faces import ExtractConfig, process_video

    key = (str(real_video), str(fake_video), every, size)
    if key not in _CACHE:
        cfg = ExtractConfig(every=every, size=size, keep="largest", batch_size=8)
        real_row, real = process_video(real_video, cfg, work, row={"video_id": "real004", "label": "real"})
        assert real, "no faces found in the real video"
        # the fake reuses the real's geometry only when the real's videos row is on disk
        write_part_atomic(rows_to_table([real_row], VIDEOS_SCHEMA), part_path(work, "videos", "real004"))
        source = rows_to_table(real, FACES_SCHEMA)
        _, fake = process_video(fake_video, cfg, work, row={"video_id": "nt004", "label": "fake", "source_video_id": "real004"},
                              source_faces=source)
        assert fake, "no faces in the fake video"
        assert [f["matrix"] for f in fake] == [r["matrix"] for r in real], "fake crops do not line up"
        _CACHE[key] = (real, fake)
    return _CACHE[key]


def write_clip_dataset(
    root: Path, real: list[dict], fake: list[dict], clip_frames: int, with_videos: bool = True,
    split_by_frame: tuple[int, int] | None = None, masks: bool = False, face_labels: bool = True,
) -> Path:
    """A dataset directory whose videos are clips of `clip_frames` frames of each video.

    `split_by_frame=(a, b)` writes explicit face splits by time instead (train below a,
    val in [a, b), test from b). `face_labels=False` leaves faces "unknown", as extract does
    without an ingest (the label then comes from videos/). `masks=True` stores a landmark-free manipulation mask
    (the pixel difference of the aligned real and fake crops) with each fake face.
    """
    import cv2
    import numpy as np

    from dfpipe.manifests.codec import decode_image, encode_mask

    real_by_frame = {r["frame_index"]: r for r in real}
    videos: dict[str, dict] = {}
    by_video: dict[str, list[dict]] = {}
    for rows, label, prefix in ((real, "real", "real004"), (fake, "fake", "nt004")):
        for r in rows:
            clip = r["frame_index"] // clip_frames
            vid = f"{prefix}_c{clip}"
            row = dict(r, video_id=vid, face_id=f"{vid}-{r['frame_index']:06d}", split=None,
                       label=label if face_labels else "unknown")
            if split_by_frame is not None:
                a, b = split_by_frame
                row["split"] = "train" if r["frame_index"] < a else "val" if r["frame_index"] < b else "test"
            if masks and label == "fake" and r["frame_index"] in real_by_frame:
                diff = np.abs(decode_image(r["image"]).astype(int) - decode_image(real_by_frame[r["frame_index"]]["image"]).astype(int))
                m = cv2.GaussianBlur((diff.sum(-1) > 30).astype(np.uint8) * 255, (5, 5), 0)
                row.update(mask=encode_mask(m), mask_source="pair")
            by_video.setdefault(vid, []).append(row)
            videos[vid] = {
                "video_id": vid, "path": f"{prefix}.mp4", "label": label, "status": "ok",
                "method": "NeuralTextures" if label == "fake" else None, "compression": "c23",
                "source_video_id": f"real004_c{clip}" if label == "fake" else None,
                "meta": json.dumps({"clip_frames": clip_frames}),
            }
    for vid, rows in by_video.items():
        write_part_atomic(rows_to_table(rows, FACES_SCHEMA), part_path(root, "faces", vid))
        if with_videos:
            write_part_atomic(rows_to_table([videos[vid]], VIDEOS_SCHEMA), part_path(root, "videos", vid))
    return root


def faces_table(root: Path) -> pa.Table:
    from dfpipe.manifests.parts import read_table

    return read_table(root, "faces", FACES_SCHEMA)
