"""Extract one video: probe, stream its face rows into a faces part, write its videos row.

One work item is one video. `extract_video_parts` streams frames (bounded memory whatever
the video length), detects faces in batches, links them into tracks, crops each face with
its alignment matrix and appends the rows to a hidden part file, renamed into place when
the video is done; the `videos/` row is written last and marks the video finished. The
stage around it (inputs, resume, Dask, errors, summary) is `faces/stage.py`.

A fake whose source real video is in the same dataset reuses the source's frames, tracks
and matrices (`source_faces`), so real and fake crops line up pixel for pixel.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dfpipe.manifests.ids import relative_path, video_content_id
from dfpipe.manifests.parts import part_path, read_table, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import FACES_INDEX_COLUMNS, FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.pipeline.faces.config import ExtractConfig
from dfpipe.pipeline.faces.inputs import VideoJob
from dfpipe.pipeline.faces.rows import TrackTally, iter_video_faces
from dfpipe.pipeline.video.decode import DecodeError, VideoInfo, probe
from dfpipe.pipeline.video.still import is_image
from dfpipe.runtime.files import atomic_write
from dfpipe.runtime.progress import expect_steps
from dfpipe.runtime.stage import ItemError

log = logging.getLogger(__name__)

#: face rows per Parquet row group while a video streams to its part
_ROWS_PER_GROUP = 32
#: the prior columns (from ingest) a videos row keeps
_PRIOR_COLUMNS = ("label", "dataset", "method", "compression", "source_video_id", "target_video_id", "split", "meta")


def video_row(job: VideoJob, root: Path, info: VideoInfo | None, **values: Any) -> dict[str, Any]:
    """The videos row of `job`: what ingest knew, what probing found, then `values`."""
    row = {k: job.prior.get(k) for k in _PRIOR_COLUMNS}
    row["label"] = row["label"] or "unknown"
    row.update(video_id=job.video_id, path=relative_path(job.path, root), kind="image" if is_image(job.path) else "video")
    if info is not None:
        row.update(info_columns(info))
    row.update(values)
    return row


def info_columns(info: VideoInfo) -> dict[str, Any]:
    return dict(kind=info.kind, width=info.width, height=info.height, rotation=info.rotation, fps=info.fps, n_frames=info.n_frames,
                duration=info.duration, codec=info.codec, has_audio=info.has_audio)


def process_video(
    path: str | Path, config: ExtractConfig, root: str | Path, row: dict | None = None, source_faces: pa.Table | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The pure per-video function (no writes): the videos row and the selected face rows.

    Holds the face rows of the video in memory: for short clips (predict, tests). A known
    input problem (ItemError) gives an error row and no faces, as the stage writes it. The
    extract stage streams the same rows to disk with `extract_video_parts`.
    """
    job = VideoJob(Path(path), (row or {}).get("video_id") or video_content_id(path), dict(row or {}))
    faces: list[dict[str, Any]] = []
    try:
        video = _run_video(job, config, Path(root), source_faces, faces.append)
    except ItemError as exc:
        return error_row(job, Path(root), exc), []
    tally = TrackTally()
    for face in faces:
        tally.add(face)
    keep = tally.selected(config)
    faces = [f for f in faces if f["track_id"] in keep]
    _count_tracks(video, tally, keep)
    return video, faces


def error_row(job: VideoJob, root: Path, exc: ItemError) -> dict[str, Any]:
    """The videos row of a video that failed: its code and message, plus what probing found."""
    return video_row(job, root, None, status="error", error_code=exc.code, error=exc.message, **exc.details)


def _run_video(
    job: VideoJob, config: ExtractConfig, root: Path, source_faces: pa.Table | None, sink: Callable[[dict], None],
    decode_ahead: bool = True,
) -> dict[str, Any]:
    """Probe + stream faces into `sink`; returns the ok videos row. An ItemError raised on
    the way carries the probed columns in `details`, so its error row keeps them."""
    start = time.perf_counter()
    info = None
    try:
        info = _probe_checked(job.path, config)
        expect_steps(expected_samples(config, info))
        if source_faces is not None and source_faces.num_rows:
            source_faces = _pair_compatible(job, info, source_faces, root)
        stats: dict[str, Any] = {}
        for face in iter_video_faces(job.path, job.video_id, config, job.prior, source_faces, stats, decode_ahead):
            sink(face)
    except ItemError as exc:
        if info is not None:
            exc.details.update(info_columns(info))
        raise
    meta = json.loads(job.prior.get("meta") or "{}")
    if job.prior.get("_pair_note"):
        meta["pair"] = job.prior["_pair_note"]
    meta["shots"] = stats["n_shots"]
    if stats.get("truncated"):  # cut short: the frames before the cut are kept
        meta["truncated"] = stats["truncated"]
    dropped = {k: v for k, v in stats.get("dropped", {}).items() if v}
    if dropped:
        meta["dropped"] = dropped
    meta["extract_seconds"] = round(time.perf_counter() - start, 3)
    return video_row(job, root, info, status="ok", n_sampled=stats["n_sampled"], meta=json.dumps(meta, sort_keys=True))


def expected_samples(config: ExtractConfig, info: VideoInfo) -> int:
    """About how many frames the sampling keeps of this video, for the progress bar (the
    container's frame count can be off; the bar settles on the frames done)."""
    n = max(int(info.n_frames or 0), 0)
    if config.every:
        return -(-n // config.every)
    if config.count:
        return min(config.count, n)
    if config.fps and info.fps:
        return min(n, math.ceil(n * config.fps / info.fps))
    return n


def _count_tracks(row: dict[str, Any], tally: TrackTally, keep: set[int]) -> None:
    """n_faces / n_tracks of the kept tracks; faces of the others counted as dropped."""
    stats = tally.stats()
    row.update(n_faces=sum(stats[t][0] for t in keep), n_tracks=len(keep))
    n_unselected = sum(n for t, (n, _) in stats.items() if t not in keep)
    if n_unselected:
        meta = json.loads(row["meta"])
        meta.setdefault("dropped", {})["track"] = n_unselected
        row["meta"] = json.dumps(meta, sort_keys=True)


def _probe_checked(path: Path, config: ExtractConfig) -> VideoInfo:
    info = probe(path)
    if config.max_pixels is not None and info.width * info.height > config.max_pixels:
        raise DecodeError(
            "too_large",
            f"{path}: frames are {info.width}x{info.height}, over --max-pixels {config.max_pixels} "
            "(raise --max-pixels to process it)",
        )
    return info


def _pair_compatible(job: VideoJob, info: VideoInfo, source_faces: pa.Table, root: Path) -> pa.Table | None:
    """Use the source's geometry only when the fake has the source's size and length."""
    src_id = job.prior.get("source_video_id")
    src = read_table(root, "videos", VIDEOS_SCHEMA, filter=pc.field("video_id") == src_id).to_pylist()
    if not src:
        return None
    s = src[0]
    if (s["width"], s["height"]) != (info.width, info.height) or abs((s["n_frames"] or 0) - info.n_frames) > 1:
        job.prior["_pair_note"] = (
            f"size/length differ from source {src_id} ({s['width']}x{s['height']}, {s['n_frames']} frames vs "
            f"{info.width}x{info.height}, {info.n_frames} frames): own detections used"
        )
        log.warning("%s: %s", job.path, job.prior["_pair_note"])
        return None
    job.prior["_pair_note"] = f"crops reuse the tracks and matrices of source {src_id}"
    return source_faces


def extract_video_parts(job: VideoJob, config: ExtractConfig, root: Path, decode_ahead: bool = True) -> dict[str, Any]:
    """Extract one video to `root/faces/` and then `root/videos/`; return its videos row.

    Face rows go to a hidden part file row group by row group (memory stays flat); track
    selection that needs the whole video re-reads that file. The videos row is written
    last, atomically: its presence means the video is finished. Raises ItemError for a
    video that cannot be extracted (nothing written then: the stage writes its error row).
    """
    (root / "faces").mkdir(parents=True, exist_ok=True)
    for table in ("faces", "videos"):  # leftovers of a killed run on this video
        for stale in (root / table).glob(f".tmp-*{job.video_id}.parquet"):
            stale.unlink(missing_ok=True)
    source_faces = _load_source_faces(job, root)
    buffer: list[dict[str, Any]] = []
    tally = TrackTally()
    with atomic_write(part_path(root, "faces", job.video_id)) as tmp:
        writer = pq.ParquetWriter(tmp, FACES_SCHEMA, compression="zstd")

        def sink(face: dict[str, Any]) -> None:
            buffer.append(face)
            tally.add(face)
            if len(buffer) >= _ROWS_PER_GROUP:
                writer.write_table(rows_to_table(buffer, FACES_SCHEMA))
                buffer.clear()

        try:
            row = _run_video(job, config, root, source_faces, sink, decode_ahead=decode_ahead)
            if buffer:
                writer.write_table(rows_to_table(buffer, FACES_SCHEMA))
        finally:
            writer.close()
        keep = tally.selected(config)
        if keep != set(tally.stats()):
            table = pq.read_table(tmp)
            kept = table.filter(pc.is_in(table["track_id"], pa.array(sorted(keep), pa.int32())))
            pq.write_table(kept, tmp, compression="zstd", row_group_size=256)
    _count_tracks(row, tally, keep)
    write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(root, "videos", job.video_id))
    return row


def _load_source_faces(job: VideoJob, root: Path) -> pa.Table | None:
    src = job.prior.get("source_video_id")
    if job.prior.get("label") != "fake" or not src:
        return None
    path = part_path(root, "faces", src)
    if not path.is_file():
        return None
    return pq.read_table(path, columns=FACES_INDEX_COLUMNS)
