"""Face rows of one video, streamed in frame order: decode, detect, mesh, track, align, crop, encode.

Faces smaller than `--min-face` are counted as dropped (`stats["dropped"]["small"]`), and
so are the detector's weak faces under `--score-threshold` (`"low_score"`), so a run can
say what it left out and why. Every kept face gets its 468-point Face Mesh (one forward
per detector batch), smoothed along its track with the box, and the head pose fitted to
it; quality flags mark faces a curator may want to leave out, without dropping them.
"""

from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np
import pyarrow as pa

from dfpipe.manifests.codec import encode_image
from dfpipe.manifests.ids import face_id
from dfpipe.manifests.schema import FACES_INDEX_COLUMNS
from dfpipe.pipeline.faces.align import crop_matrix, mesh_template, warp_crop
from dfpipe.pipeline.faces.config import ExtractConfig
from dfpipe.pipeline.faces.shots import CutDetector
from dfpipe.pipeline.faces.threads import chain_end, encoded_rows, prefetch, torch_beside_pipeline
from dfpipe.pipeline.faces.tracks import TrackedFrame, Tracker, select_tracks
from dfpipe.pipeline.video.decode import DecodeError, Frame, iter_frames
from dfpipe.runtime.progress import step
from dfpipe.runtime.stage import ItemError


#: side of the grey crop `sharpness` is measured on, so it does not depend on --size
SHARPNESS_SIZE = 128


class DetectorFailed(ItemError):
    """The face detector or Face Mesh raised (loading or inference): the video gets a
    `detector_error` row."""

    def __init__(self, cause: Exception, model: str = "face detector") -> None:
        super().__init__("detector_error", f"{model}: {type(cause).__name__}: {cause}")


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the crop in grey at 128 px: edges make it large, blur
    (motion, focus, upsampling a tiny face, heavy compression) small."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop[..., :3]), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def geometry_columns(mesh: np.ndarray | None, mesh_score: float | None, frame_shape) -> dict[str, Any]:
    """mesh, mesh_score and the head pose fitted to the mesh (all null without a mesh)."""
    if mesh is None:
        return {"mesh": None, "mesh_score": None, "yaw": None, "pitch": None, "roll": None}
    from dfpipe.pipeline.faces.mesh import canonical_face, head_pose

    try:
        yaw, pitch, roll = head_pose(mesh, frame_shape, canonical_face()[0])
    except (ValueError, cv2.error):
        yaw = pitch = roll = None
    return {"mesh": np.asarray(mesh, dtype=np.float32).reshape(-1).tolist(), "mesh_score": mesh_score,
            "yaw": yaw, "pitch": pitch, "roll": roll}


def flag_columns(row: dict[str, Any], config: ExtractConfig) -> dict[str, bool | None]:
    """The quality flags of a face row (null where the measure behind a flag is missing)."""
    side = min(row["x2"] - row["x1"], row["y2"] - row["y1"])
    pose = None if row["yaw"] is None else max(abs(row["yaw"]), abs(row["pitch"])) > config.flag_pose
    return {
        "flag_low_mesh_score": None if row["mesh_score"] is None else row["mesh_score"] < config.flag_mesh_score,
        "flag_extreme_pose": pose,
        "flag_tiny": side < config.flag_tiny,
        "flag_blurry": row["sharpness"] < config.flag_blur,
    }


def _frame_faces_from_source(source_faces: pa.Table | None) -> dict[int, list[dict[str, Any]]] | None:
    if source_faces is None or source_faces.num_rows == 0:
        return None
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for r in source_faces.select([c for c in FACES_INDEX_COLUMNS if c in source_faces.column_names]).to_pylist():
        by_frame.setdefault(int(r["frame_index"]), []).append(r)
    return by_frame


def face_row(
    video_id: str, frame, track_id: int, shot_id: int, score: float, box, landmarks, matrix: np.ndarray,
    config: ExtractConfig, prior: dict, mesh: np.ndarray | None = None, mesh_score: float | None = None,
) -> dict[str, Any]:
    crop = warp_crop(frame.image, matrix, config.size)
    row = {
        "face_id": face_id(video_id, frame.index, track_id),
        "video_id": video_id,
        "frame_index": int(frame.index),
        "timestamp": float(frame.timestamp),
        "track_id": int(track_id),
        "shot_id": int(shot_id),
        "score": float(score),
        "x1": float(box[0]),
        "y1": float(box[1]),
        "x2": float(box[2]),
        "y2": float(box[3]),
        "landmarks": [float(v) for v in np.asarray(landmarks).reshape(10)],
        **geometry_columns(mesh, mesh_score, frame.image.shape),
        "sharpness": sharpness(crop),
        "matrix": [float(v) for v in np.asarray(matrix).reshape(6)],
        "crop": config.crop,
        "size": int(config.size),
        "image_format": config.image_format,
        "image": crop,  # encoded by encoded_rows
        "mask": None,
        "mask_source": None,
        "label": prior.get("label") or "unknown",
        "split": prior.get("split"),
    }
    row.update(flag_columns(row, config))
    return row


def iter_video_faces(
    path: Path, video_id: str, config: ExtractConfig, prior: dict | None = None, source_faces: pa.Table | None = None,
    stats: dict | None = None, decode_ahead: bool = True,
) -> Iterator[dict[str, Any]]:
    """Face rows of one video, streamed in frame order (tracks unfiltered).

    `stats` (if given) receives `n_sampled`, `n_shots` and `dropped` (faces by reason).
    `decode_ahead` decodes the next frames in a thread while the detector runs (off on
    single-threaded Dask workers). Raises DecodeError for bad files.
    """
    stats = stats if stats is not None else {}
    rows = _raw_face_rows(path, video_id, config, prior or {}, source_faces, stats, decode_ahead)
    encode = partial(encode_image, fmt=config.image_format, jpeg_quality=config.jpeg_quality)
    if not decode_ahead:
        yield from encoded_rows(rows, encode, 0, 0)
        return
    with torch_beside_pipeline():
        yield from encoded_rows(rows, encode, 1, 4 * config.batch_size)


def frames_kept_if_cut(frames: Iterator[Frame], stats: dict, path: Path) -> Iterator[Frame]:
    """The frames of a video cut short, then a clean end: a truncated file keeps the frames
    it has (their faces are as good as any), and `stats["truncated"]` says where it stopped.
    A file that yields no frame at all, or fails with corrupt data, still raises."""
    n = 0
    try:
        for frame in frames:
            n += 1
            yield frame
    except DecodeError as exc:
        if exc.code != "truncated" or n == 0:
            raise
        stats["truncated"] = exc.message.removeprefix(f"{path}: ")  # the row already names the file


def _raw_face_rows(
    path: Path, video_id: str, config: ExtractConfig, prior: dict, source_faces: pa.Table | None, stats: dict,
    decode_ahead: bool,
) -> Iterator[dict[str, Any]]:
    """Face rows with the crop as an array, in frame order."""
    stats["n_sampled"] = 0
    stats["n_shots"] = 1
    dropped = stats.setdefault("dropped", {"small": 0, "low_score": 0})
    frames = frames_kept_if_cut(iter_frames(path, config.sampling(), backend=config.backend,
                                            max_pixels=config.max_pixels), stats, path)
    mesher = None
    if config.mesh != "none":
        try:
            mesher = mesher_for(config)
        except Exception as exc:
            raise DetectorFailed(exc, "Face Mesh") from exc

    def meshes(frames_: list, boxes: list[np.ndarray], landmarks: list[np.ndarray]) -> list:
        """Per frame, (N x 468 x 3 points, N scores) or (None, None) without a mesh model."""
        if mesher is None:
            return [(None, None)] * len(frames_)
        try:
            return mesher.mesh_frames([f.image for f in frames_], boxes, landmarks)
        except Exception as exc:
            raise DetectorFailed(exc, "Face Mesh") from exc

    reuse = _frame_faces_from_source(source_faces)
    if reuse is not None:  # a fake: the source's boxes and crops, its own mesh
        for frame in prefetch(frames, config.batch_size) if decode_ahead else frames:
            stats["n_sampled"] += 1
            rows = reuse.get(frame.index, [])
            boxes = np.array([(r["x1"], r["y1"], r["x2"], r["y2"]) for r in rows], np.float64).reshape(-1, 4)
            lms = np.array([r["landmarks"] for r in rows], np.float64).reshape(-1, 5, 2)
            ((pts, scores),) = meshes([frame], [boxes], [lms])
            step()
            for i, r in enumerate(rows):
                stats["n_shots"] = max(stats["n_shots"], r["shot_id"] + 1)
                yield face_row(video_id, frame, r["track_id"], r["shot_id"], r["score"], boxes[i], lms[i],
                               np.asarray(r["matrix"]).reshape(2, 3), config, prior,
                               None if pts is None else pts[i], None if scores is None else float(scores[i]))
        return

    try:
        detector = detector_for(config)
    except Exception as exc:
        raise DetectorFailed(exc) from exc
    tracker = Tracker(smooth=config.smooth, jump_cuts=config.cut_threshold > 0)
    cuts = CutDetector(config.cut_threshold)
    template = None
    if config.crop == "mesh":
        from dfpipe.pipeline.faces.mesh import canonical_face

        template = mesh_template(canonical_face()[0], config.size, config.margin)

    def finished(tracked: Iterable[TrackedFrame]) -> Iterator[dict[str, Any]]:
        for tf in tracked:
            stats["n_shots"] = tf.shot + 1
            for face in tf.faces:
                matrix = crop_matrix(config.crop, face.box, face.landmarks, config.size, config.margin,
                                     face.mesh, template)
                yield face_row(video_id, tf.payload, face.track_id, tf.shot, face.score, face.box, face.landmarks,
                               matrix, config, prior, face.mesh, face.mesh_score)

    def prepare(frame) -> tuple[Any, np.ndarray, bool]:
        """A frame with its downscaled detector input and whether a cut precedes it."""
        small = detector.detection_input(frame.image)
        return frame, small, cuts.is_cut(small)

    # decoding ahead, the downscale and the cut test run in the decode thread too, off the
    # detector's path (in frame order: the cut test compares each frame with the one before)
    prepared = (prepare(frame) for frame in frames)
    if decode_ahead:
        prepared = prefetch(prepared, config.batch_size)
    batch = []
    for item in chain_end(prepared):
        if item is not None:
            stats["n_sampled"] += 1
            batch.append(item)
        if batch and (item is None or len(batch) >= config.batch_size):
            try:
                detections = detector.detect([f.image for f, _, _ in batch], inputs=[small for _, small, _ in batch])
            except Exception as exc:
                raise DetectorFailed(exc) from exc
            kept = []
            for det in detections:
                side = np.minimum(det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1])
                keep = side >= config.min_face
                dropped["small"] += int((~keep).sum())
                dropped["low_score"] += det.n_weak
                kept.append(keep)
            frame_meshes = meshes([f for f, _, _ in batch], [d.boxes[k] for d, k in zip(detections, kept)],
                                  [d.landmarks[k] for d, k in zip(detections, kept)])
            step(len(batch))
            for (fr, _, cut), det, keep, (pts, scores) in zip(batch, detections, kept, frame_meshes):
                yield from finished(tracker.push(fr, det.boxes[keep], det.scores[keep], det.landmarks[keep], cut=cut,
                                                 meshes=pts, mesh_scores=scores))
            batch = []
    yield from finished(tracker.flush())


def mesher_for(config: ExtractConfig):
    """The process's Face Mesh for these settings (built once, then cached)."""
    return face_mesher(config.device)


@lru_cache(maxsize=2)
def face_mesher(device: str):
    """The process's Face Mesh on `device` (cpu, cuda, auto), built once: extract and
    synthesize share it."""
    from dfpipe.pipeline.faces.mesh import FaceMesher
    from dfpipe.runtime.device import resolve_device

    return FaceMesher(device=resolve_device(device))


def detector_for(config: ExtractConfig):
    """The process's detector for these settings (built once, then cached)."""
    from dfpipe.pipeline.faces.detect import load_detector

    return load_detector(config.detector, config.weights, config.device, config.max_side,
                         config.score_threshold, config.nms_threshold, config.batch_size)


class TrackTally:
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
