"""`dfpipe extract`: decode, detect, track and align faces into `videos/` and `faces/`.

One work item is one video. `extract_video` streams frames (bounded memory whatever the
video length), detects faces in batches, links them into tracks, crops each face with its
alignment matrix and appends the rows to a hidden part file, which is renamed into place
when the video is done; the `videos/` row is written last and marks the video finished.
Re-running the same command skips finished videos; a different configuration is refused.

A fake whose source real video is in the same dataset reuses the source's frames, tracks
and matrices (`source_faces`), so real and fake crops line up pixel for pixel.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dfpipe.manifests.ids import face_id, path_id, relative_path, video_content_id
from dfpipe.manifests.parts import list_parts, part_keys, part_path, read_table, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import FACES_INDEX_COLUMNS, FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.pipeline.faces.align import CROPS, crop_matrix, warp_crop
from dfpipe.pipeline.video.decode import DecodeError, Sampling, VideoInfo, iter_frames, probe
from dfpipe.manifests.codec import IMAGE_FORMATS, encode_image
from dfpipe.pipeline.faces.tracks import Tracker, TrackedFrame, select_tracks

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".mts", ".ogv",
}
KEEP_MODES = ("all", "largest", "main")
_ROWS_PER_GROUP = 32


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that decides what `extract` writes (plus a few pure speed knobs)."""

    every: int | None = None
    count: int | None = None
    fps: float | None = None
    size: int = 320
    crop: str = "align"
    margin: float = 0.4
    detector: str = "mobilenet0.25"
    weights: str | None = None
    device: str = "cpu"
    max_side: int | None = 640
    score_threshold: float = 0.8
    nms_threshold: float = 0.4
    min_face: int = 40
    keep: str = "all"
    max_tracks: int | None = None
    min_track_len: int = 1
    smooth: int = 0
    image_format: str = "png"
    jpeg_quality: int = 95
    batch_size: int = 8
    backend: str = "pyav"
    max_pixels: int | None = 8192 * 8192

    #: knobs that change speed but not results; left out of the run.json comparison
    SPEED_ONLY = ("device", "batch_size", "weights")

    def __post_init__(self) -> None:
        self.sampling()  # validates every / count / fps
        if self.crop not in CROPS:
            raise ValueError(f"--crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        from dfpipe.models import DETECTOR_MODELS  # not pipeline.detect: the client needs no torch

        if self.detector not in DETECTOR_MODELS:
            raise ValueError(f"--detector must be one of {', '.join(DETECTOR_MODELS)}, got {self.detector!r}")
        if self.keep not in KEEP_MODES:
            raise ValueError(f"--keep must be one of {', '.join(KEEP_MODES)}, got {self.keep!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"--image-format must be one of {', '.join(IMAGE_FORMATS)}, got {self.image_format!r}")
        if not 16 <= self.size <= 4096:
            raise ValueError(f"--size must be between 16 and 4096 pixels, got {self.size}")
        for name in ("min_face", "smooth"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.min_track_len < 1:
            raise ValueError(f"--min-track-len must be >= 1, got {self.min_track_len}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}")

    def sampling(self) -> Sampling:
        return Sampling(every=self.every, count=self.count, fps=self.fps)

    def output_params(self) -> dict[str, Any]:
        """The parameters a resumed run must share with the first one."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.SPEED_ONLY}


class DetectorFailed(RuntimeError):
    """The face detector raised (loading or inference): the video gets a `detector_error` row."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")


@dataclass
class VideoJob:
    """One video to extract: where it is, its id, and what ingest already knew."""

    path: Path
    video_id: str
    prior: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    out: Path
    n_inputs: int = 0
    n_skipped: int = 0  # finished in an earlier run
    n_ok: int = 0
    n_no_face: int = 0
    n_faces: int = 0
    n_tracks: int = 0
    n_frames: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (path, code, message)

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())


# ----------------------------------------------------------------------------- ids and inputs


def is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and (path / "videos").is_dir() and bool(list_parts(path, "videos"))


def collect_jobs(inputs: Sequence[str | Path]) -> tuple[list[VideoJob], list[tuple[Path, str]]]:
    """Expand inputs (files, folders, dataset directories) into jobs, in a stable order.

    Returns the jobs and the duplicates (path, id of the first path with that content).
    """
    jobs: list[VideoJob] = []
    seen: dict[str, Path] = {}
    duplicates: list[tuple[Path, str]] = []
    for item in inputs:
        item = Path(item)
        if is_dataset_dir(item):
            candidates = list(_dataset_jobs(item))
        elif item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
            candidates = [VideoJob(p, video_content_id(p)) for p in files]
        else:
            candidates = [VideoJob(item, video_content_id(item))]
        for job in candidates:
            if job.video_id in seen:
                if seen[job.video_id].resolve() != job.path.resolve():
                    duplicates.append((job.path, job.video_id))
                continue
            seen[job.video_id] = job.path
            jobs.append(job)
    return jobs, duplicates


def _dataset_jobs(root: Path) -> Iterator[VideoJob]:
    """Rows an ingest wrote (`status=pending`) or earlier extracts, as jobs."""
    table = read_table(root, "videos", VIDEOS_SCHEMA)
    for row in sorted(table.to_pylist(), key=lambda r: r["video_id"]):
        yield VideoJob((root / row["path"]).resolve() if not Path(row["path"]).is_absolute() else Path(row["path"]), row["video_id"], row)


# ----------------------------------------------------------------------------- per video


def _frame_faces_from_source(source_faces: pa.Table | None) -> dict[int, list[dict[str, Any]]] | None:
    if source_faces is None or source_faces.num_rows == 0:
        return None
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for r in source_faces.select([c for c in FACES_INDEX_COLUMNS if c in source_faces.column_names]).to_pylist():
        by_frame.setdefault(int(r["frame_index"]), []).append(r)
    return by_frame


def _face_row(
    video_id: str, frame, track_id: int, score: float, box, landmarks, matrix: np.ndarray, config: ExtractConfig, prior: dict
) -> dict[str, Any]:
    crop = warp_crop(frame.image, matrix, config.size)
    return {
        "face_id": face_id(video_id, frame.index, track_id),
        "video_id": video_id,
        "frame_index": int(frame.index),
        "timestamp": float(frame.timestamp),
        "track_id": int(track_id),
        "score": float(score),
        "x1": float(box[0]),
        "y1": float(box[1]),
        "x2": float(box[2]),
        "y2": float(box[3]),
        "landmarks": [float(v) for v in np.asarray(landmarks).reshape(10)],
        "matrix": [float(v) for v in np.asarray(matrix).reshape(6)],
        "crop": config.crop,
        "size": int(config.size),
        "image_format": config.image_format,
        "image": crop,  # encoded by _encoded_rows
        "mask": None,
        "mask_source": None,
        "label": prior.get("label") or "unknown",
        "split": prior.get("split"),
    }


def iter_video_faces(
    path: Path, video_id: str, config: ExtractConfig, prior: dict | None = None, source_faces: pa.Table | None = None,
    stats: dict | None = None, decode_ahead: bool = True,
) -> Iterator[dict[str, Any]]:
    """Face rows of one video, streamed in frame order (tracks unfiltered).

    `stats` (if given) receives `n_sampled`. `decode_ahead` decodes the next frames in a
    thread while the detector runs (off on single-threaded Dask workers). Raises
    DecodeError for bad files.
    """
    stats = stats if stats is not None else {}
    rows = _raw_face_rows(path, video_id, config, prior or {}, source_faces, stats, decode_ahead)
    if not decode_ahead:
        yield from _encoded_rows(rows, config, 0)
        return
    with _torch_beside_pipeline():
        yield from _encoded_rows(rows, config, 1)


@contextlib.contextmanager
def _torch_beside_pipeline() -> Iterator[None]:
    """Leave one core to the decode and encode threads while the detector runs.

    With every core in torch's thread pool, those threads pre-empt a torch thread and each
    parallel op waits for it; the small detector gains only ~1.35x from its second thread
    on 2 cores, so giving that core to decoding and PNG encoding is faster overall
    (bench/extract.py part c). The caller's setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(before - 1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _encoded_rows(rows: Iterator[dict[str, Any]], config: ExtractConfig, workers: int) -> Iterator[dict[str, Any]]:
    """Encode each row's crop (PNG costs about as much per face as detection per frame).

    With `workers`, encoding runs in a thread (OpenCV releases the GIL) while the next
    frames are detected; rows still come out in order and at most a few batches ahead.
    """
    if not workers:
        for row in rows:
            row["image"] = encode_image(row["image"], config.image_format, config.jpeg_quality)
            yield row
        return
    from concurrent.futures import ThreadPoolExecutor

    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dfpipe-encode") as pool:
        for row in rows:
            pending.append((row, pool.submit(encode_image, row["image"], config.image_format, config.jpeg_quality)))
            while pending and (pending[0][1].done() or len(pending) > 4 * config.batch_size):
                done_row, fut = pending.popleft()
                done_row["image"] = fut.result()
                yield done_row
        while pending:
            done_row, fut = pending.popleft()
            done_row["image"] = fut.result()
            yield done_row


def _raw_face_rows(
    path: Path, video_id: str, config: ExtractConfig, prior: dict, source_faces: pa.Table | None, stats: dict,
    decode_ahead: bool,
) -> Iterator[dict[str, Any]]:
    """Face rows with the crop as an array, in frame order."""
    stats["n_sampled"] = 0
    frames = iter_frames(path, config.sampling(), backend=config.backend, max_pixels=config.max_pixels)
    reuse = _frame_faces_from_source(source_faces)
    if reuse is not None:
        for frame in prefetch(frames, config.batch_size) if decode_ahead else frames:
            stats["n_sampled"] += 1
            for r in reuse.get(frame.index, ()):
                yield _face_row(video_id, frame, r["track_id"], r["score"], (r["x1"], r["y1"], r["x2"], r["y2"]),
                                r["landmarks"], np.asarray(r["matrix"]).reshape(2, 3), config, prior)
        return

    try:
        detector = detector_for(config)
    except Exception as exc:
        raise DetectorFailed(exc) from exc
    tracker = Tracker(smooth=config.smooth)

    def finished(tracked: Iterable[TrackedFrame]) -> Iterator[dict[str, Any]]:
        for tf in tracked:
            for face in tf.faces:
                matrix = crop_matrix(config.crop, face.box, face.landmarks, config.size, config.margin)
                yield _face_row(video_id, tf.payload, face.track_id, face.score, face.box, face.landmarks, matrix, config, prior)

    # each frame with its downscaled detector input; decoding ahead, the downscale runs in
    # the decode thread too, off the detector's path
    prepared = ((frame, detector.detection_input(frame.image)) for frame in frames)
    if decode_ahead:
        prepared = prefetch(prepared, config.batch_size)
    batch = []
    for item in _chain_end(prepared):
        if item is not None:
            stats["n_sampled"] += 1
            batch.append(item)
        if batch and (item is None or len(batch) >= config.batch_size):
            try:
                detections = detector.detect([f.image for f, _ in batch], inputs=[small for _, small in batch])
            except Exception as exc:
                raise DetectorFailed(exc) from exc
            for (fr, _), det in zip(batch, detections):
                side = np.minimum(det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1])
                keep = side >= config.min_face
                yield from finished(tracker.push(fr, det.boxes[keep], det.scores[keep], det.landmarks[keep]))
            batch = []
    yield from finished(tracker.flush())


def detector_for(config: ExtractConfig):
    """The process's detector for these settings (built once, then cached)."""
    from dfpipe.pipeline.faces.detect import load_detector

    return load_detector(config.detector, config.weights, config.device, config.max_side,
                         config.score_threshold, config.nms_threshold, config.batch_size)


def _chain_end(frames: Iterator) -> Iterator:
    """The frames, then a None that tells the batcher to flush."""
    yield from frames
    yield None


def prefetch(items: Iterator, depth: int) -> Iterator:
    """Run `items` in a background thread, at most `depth` ahead.

    FFmpeg decodes without holding the GIL, so the next frames decode while the detector
    works on the current batch; the bounded queue keeps memory flat. Exceptions (a
    truncated file after some frames) reach the consumer in order.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:  # handed to the consumer
            q.put((done, exc))

    thread = threading.Thread(target=produce, name="dfpipe-decode", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def _video_row(job: VideoJob, root: Path, info: VideoInfo | None, **values: Any) -> dict[str, Any]:
    prior = dict(job.prior)
    row = {k: prior.get(k) for k in ("label", "dataset", "method", "compression", "source_video_id", "target_video_id", "split", "meta")}
    row["label"] = row["label"] or "unknown"
    row.update(video_id=job.video_id, path=relative_path(job.path, root))
    if info is not None:
        row.update(width=info.width, height=info.height, rotation=info.rotation, fps=info.fps,
                   n_frames=info.n_frames, duration=info.duration, codec=info.codec, has_audio=info.has_audio)
    row.update(values)
    return row


def process_video(
    path: str | Path, config: ExtractConfig, root: str | Path, row: dict | None = None, source_faces: pa.Table | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The pure per-video function (no writes): the videos row and the selected face rows.

    Holds the face rows of the video in memory: for short clips (predict, tests). The
    extract stage streams the same rows to disk with `extract_video`.
    """
    job = VideoJob(Path(path), (row or {}).get("video_id") or video_content_id(path), dict(row or {}))
    faces: list[dict[str, Any]] = []
    video_row = _run_video(job, config, Path(root), source_faces, faces.append)
    tally = _TrackTally()
    for face in faces:
        tally.add(face)
    keep = tally.selected(config)
    faces = [f for f in faces if f["track_id"] in keep]
    video_row.update(n_faces=len(faces), n_tracks=len(keep))
    return video_row, faces


def _run_video(
    job: VideoJob, config: ExtractConfig, root: Path, source_faces: pa.Table | None, sink, decode_ahead: bool = True
) -> dict[str, Any]:
    """Probe + stream faces into `sink`; returns the videos row (errors as rows)."""
    start = time.perf_counter()
    info = None
    try:
        info = _probe_checked(job.path, config)
        if source_faces is not None and source_faces.num_rows:
            source_faces = _pair_compatible(job, info, source_faces, root)
        stats: dict[str, Any] = {}
        for face in iter_video_faces(job.path, job.video_id, config, job.prior, source_faces, stats, decode_ahead):
            sink(face)
        meta = json.loads(job.prior.get("meta") or "{}")
        if job.prior.get("_pair_note"):
            meta["pair"] = job.prior["_pair_note"]
        meta["extract_seconds"] = round(time.perf_counter() - start, 3)
        return _video_row(job, root, info, status="ok", n_sampled=stats["n_sampled"], meta=json.dumps(meta, sort_keys=True))
    except DecodeError as exc:
        return _video_row(job, root, info, status="error", error_code=exc.code, error=exc.message)
    except DetectorFailed as exc:
        log.error("detector failed on %s: %s", job.path, exc)
        return _video_row(job, root, info, status="error", error_code="detector_error", error=str(exc))
    except Exception as exc:  # a bug must not stop the run either: an `internal` row, with the traceback logged
        log.exception("extract failed on %s", job.path)
        return _video_row(job, root, info, status="error", error_code="internal", error=f"{type(exc).__name__}: {exc}")


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


class _TrackTally:
    """Faces and face areas per track, counted as rows stream past, for track selection."""

    def __init__(self) -> None:
        self._areas: dict[int, list[float]] = {}

    def add(self, face: dict[str, Any]) -> None:
        self._areas.setdefault(face["track_id"], []).append((face["x2"] - face["x1"]) * (face["y2"] - face["y1"]))

    def stats(self) -> dict[int, tuple[int, float]]:
        """{track_id: (n_faces, mean_area)}"""
        return {t: (len(a), float(np.mean(a))) for t, a in self._areas.items()}

    def selected(self, config: ExtractConfig) -> set[int]:
        return select_tracks(self.stats(), config.keep, config.max_tracks, config.min_track_len)


def extract_video(job: VideoJob, config: ExtractConfig, root: str | Path, threads: int | None = None) -> dict[str, Any]:
    """Extract one video to `root/faces/` and `root/videos/`; return a small summary.

    Face rows go to a hidden part file row group by row group (memory stays flat); track
    selection that needs the whole video re-reads that file. The videos row is written
    last, atomically: its presence means the video is finished.
    """
    from dfpipe.runtime.allocator import keep_freed_memory
    from dfpipe.runtime.parallel import set_worker_threads

    if threads:
        set_worker_threads(threads)  # keeps freed memory too
    else:
        keep_freed_memory()
    root = Path(root)
    faces_dir = root / "faces"
    faces_dir.mkdir(parents=True, exist_ok=True)
    for table in ("faces", "videos"):  # leftovers of a killed run on this video
        for stale in (root / table).glob(f".tmp-*{job.video_id}.parquet"):
            stale.unlink(missing_ok=True)
    tmp = faces_dir / f".tmp-{uuid.uuid4().hex}-{job.video_id}.parquet"
    source_faces = _load_source_faces(job, root)
    writer = pq.ParquetWriter(tmp, FACES_SCHEMA, compression="zstd")
    buffer: list[dict[str, Any]] = []
    tally = _TrackTally()

    def sink(face: dict[str, Any]) -> None:
        buffer.append(face)
        tally.add(face)
        if len(buffer) >= _ROWS_PER_GROUP:
            writer.write_table(rows_to_table(buffer, FACES_SCHEMA))
            buffer.clear()

    try:
        row = _run_video(job, config, root, source_faces, sink, decode_ahead=threads != 1)
        if buffer:
            writer.write_table(rows_to_table(buffer, FACES_SCHEMA))
        writer.close()
        if row["status"] == "ok":
            stats = tally.stats()
            keep = tally.selected(config)
            n_faces = sum(stats[t][0] for t in keep)
            final = part_path(root, "faces", job.video_id)
            if keep == set(stats):
                os.replace(tmp, final)
            else:
                table = pq.read_table(tmp)
                write_part_atomic(table.filter(pc.is_in(table["track_id"], pa.array(sorted(keep), pa.int32()))), final)
            row.update(n_faces=n_faces, n_tracks=len(keep))
        else:
            part_path(root, "faces", job.video_id).unlink(missing_ok=True)
    finally:
        if writer.is_open:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(root, "videos", job.video_id))
    return {k: row.get(k) for k in ("video_id", "path", "status", "error_code", "error", "n_faces", "n_tracks", "n_sampled")}


def _load_source_faces(job: VideoJob, root: Path) -> pa.Table | None:
    src = job.prior.get("source_video_id")
    if job.prior.get("label") != "fake" or not src:
        return None
    path = part_path(root, "faces", src)
    if not path.is_file():
        return None
    return pq.read_table(path, columns=FACES_INDEX_COLUMNS)


# ----------------------------------------------------------------------------- the run


def extract(
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    config: ExtractConfig | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> RunSummary:
    """Extract faces from every input video into the dataset directory `out`.

    Inputs are files, folders (searched recursively for video files) or dataset
    directories whose `videos/` rows an ingest wrote; `out` defaults to the single
    dataset directory given. Fakes with a source in the dataset run after it and reuse
    its crops' geometry. Raises ParamsMismatch before any work if `out` was made with
    other parameters.
    """
    from dfpipe.runtime.parallel import Task, dask_client, run_on_each_worker, run_tasks
    from dfpipe.runtime.runinfo import check_params, record_stage

    config = config or ExtractConfig()
    if not inputs:
        raise ValueError("no inputs: give video files, folders or a dataset directory")
    if out is None:
        if len(inputs) == 1 and is_dataset_dir(Path(inputs[0])):
            out = inputs[0]
        else:
            raise ValueError("--out is required unless the single input is a dataset directory")
    root = Path(out)
    check_params(root, "extract", config.output_params())
    weights_hash = _weights_hash(config)
    started = time.perf_counter()
    jobs, duplicates = collect_jobs(inputs)
    summary = RunSummary(out=root, n_inputs=len(jobs) + len(duplicates))
    finished = _finished_ids(root)
    todo = _largest_first([j for j in jobs if j.video_id not in finished])
    summary.n_skipped = len(jobs) - len(todo)
    todo_ids = {j.video_id for j in todo}
    with dask_client(workers, scheduler) if todo else contextlib.nullcontext() as client:
        if todo:
            # every worker loads the detector before any video: weights that do not fit
            # the network stop the run here (exit 2, nothing written), not in N error rows
            run_on_each_worker(client, _load_worker_detector, config, client is not None)
        root.mkdir(parents=True, exist_ok=True)
        record_stage(root, "extract", config.output_params(), weights=weights_hash)
        for path, vid in duplicates:
            _write_duplicate(root, path, vid, summary)
        threads = 1 if client is not None else None
        tasks = [
            Task(
                key=j.video_id,
                fn=extract_video,
                args=(j, config, str(root.absolute()), threads),
                # a fake waits for its source, whose crops it reuses
                after=(j.prior["source_video_id"],) if j.prior.get("source_video_id") in todo_ids else (),
            )
            for j in todo
        ]
        if tasks:
            run_tasks(tasks, client, description="extract", progress=progress)
    _add_existing(root, summary, [j.video_id for j in jobs])
    summary.seconds = time.perf_counter() - started
    return summary


def _largest_first(jobs: list[VideoJob]) -> list[VideoJob]:
    """Jobs by file size, largest first (a stand-in for length): workers take videos in
    this order, so a long video does not start last and keep one worker busy alone."""

    def size(job: VideoJob) -> int:
        try:
            return job.path.stat().st_size
        except OSError:
            return 0

    return sorted(jobs, key=size, reverse=True)  # stable: equal sizes keep input order


def _weights_hash(config: ExtractConfig) -> dict[str, str]:
    """The detector weights file's sha256 for run.json, found (or fetched) here: a missing
    file or one that fails its pinned hash stops the run before any work (exit 2). Needs
    no torch, so the client of a cluster never imports it."""
    if config.detector == "mtcnn":
        return {}
    from dfpipe.runtime.weights import weights_record

    return weights_record(f"retinaface_{config.detector}", config.weights)


def _load_worker_detector(config: ExtractConfig, on_worker: bool) -> None:
    """Build this process's detector (cached for its videos); on a worker, with the one
    thread per process its videos will run with."""
    if on_worker:
        from dfpipe.runtime.parallel import set_worker_threads

        set_worker_threads(1)
    detector_for(config)


def _finished_ids(root: Path) -> set[str]:
    keys = part_keys(root, "videos")
    if not keys:
        return set()
    table = read_table(root, "videos", VIDEOS_SCHEMA, columns=["video_id", "status"])
    return {r["video_id"] for r in table.to_pylist() if r["status"] in ("ok", "error")}


def _write_duplicate(root: Path, path: Path, first_id: str, summary: RunSummary) -> None:
    dup_id = path_id(path, "dup-")
    row = {
        "video_id": dup_id, "path": relative_path(path, root), "label": "unknown", "status": "error",
        "error_code": "duplicate", "error": f"same content as video {first_id}; extracted once",
    }
    write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(root, "videos", dup_id))


def _add_existing(root: Path, summary: RunSummary, ids: Iterable[str]) -> None:
    """Fill the summary from the videos rows of this run's inputs (new and resumed)."""
    wanted = set(ids)
    rows = read_table(root, "videos", VIDEOS_SCHEMA).to_pylist()
    for r in rows:
        if r["video_id"] not in wanted and r.get("error_code") != "duplicate":
            continue
        if r["status"] == "ok":
            summary.n_ok += 1
            summary.n_faces += r["n_faces"] or 0
            summary.n_tracks += r["n_tracks"] or 0
            summary.n_frames += r["n_sampled"] or 0
            if not r["n_faces"]:
                summary.n_no_face += 1
        elif r["status"] == "error":
            summary.errors[r["error_code"]] = summary.errors.get(r["error_code"], 0) + 1
            summary.failed.append((r["path"], r["error_code"], r["error"] or ""))
