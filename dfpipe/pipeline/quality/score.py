"""`score_quality(DS)`: per-frame and per-video quality metrics for every extracted video.

A fake is compared with its source real video on the same frames: Mask-SSIM inside its
mask (from `dfpipe masks`), SSIM, LPIPS and VGG feature MSE of the aligned crops (stored
by extract with the source's matrices, so they line up), and Ewarp on frames t, t+1 with
the flow taken on the source video. A real (or a fake without source) gets Ewarp on its
own flow. With `full_frame`, the same metrics run on whole frames, the crop masks pasted
back into the frame with the inverse matrices.

Work item = one video; its `quality/frames` part and then its `quality/videos` part (the
done marker) are written atomically, so a re-run resumes.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from dfpipe.manifests.parts import part_keys, read_table, write_rows
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.pipeline.faces.align import invert_matrix, warp_crop
from dfpipe.manifests.codec import decode_image, decode_mask
from dfpipe.pipeline.quality.ewarp import DIS_PRESETS, FlowEstimator, ewarp_pair
from dfpipe.pipeline.quality.frames import frames_at
from dfpipe.pipeline.quality.ssim import binary_mask, mask_ssim, ssim
from dfpipe.manifests.schema import (
    QUALITY_FRAMES_TABLE,
    METRIC_COLUMNS,
    QUALITY_FRAMES_SCHEMA,
    QUALITY_VIDEOS_SCHEMA,
    QUALITY_VIDEOS_TABLE,
)

METRICS = ("mask_ssim", "lpips", "ewarp")  # lpips also gives vgg_mse; mask_ssim also ssim
_PERCEPTUAL: dict[tuple, Any] = {}


@dataclass(frozen=True)
class QualityConfig:
    metrics: tuple[str, ...] = METRICS
    full_frame: bool = False
    flow_preset: str = "fast"
    weights: str | None = None  # VGG-16 ImageNet file (default: the weights cache)
    device: str = "cpu"
    batch_size: int = 8

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"metrics must be a non-empty subset of {', '.join(METRICS)}; got {', '.join(self.metrics) or 'none'}")
        if self.flow_preset not in DIS_PRESETS:
            raise ValueError(f"flow preset must be one of {', '.join(DIS_PRESETS)}, got {self.flow_preset!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def output_params(self) -> dict[str, Any]:
        """What decides the numbers (the weights file is recorded by its hash instead)."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "batch_size", "weights")}


def perceptual_model(config: QualityConfig):
    """One LPIPS model per process (the VGG file is ~0.5 GB: load it once per worker)."""
    from dfpipe.pipeline.quality.perceptual import PerceptualMetric

    key = (config.weights, config.device)
    if key not in _PERCEPTUAL:
        _PERCEPTUAL[key] = PerceptualMetric.from_cache(config.weights, config.device)
    return _PERCEPTUAL[key]


def _nan_to_none(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


# ----------------------------------------------------------------------------- pairs of images


@dataclass
class Item:
    """One thing scored: a face crop (or a whole frame) of the video and of its source."""

    frame_index: int
    track_id: int | None
    face_id: str | None
    image: np.ndarray | None  # the fake (or real) crop / frame
    source: np.ndarray | None  # the same region of the source video, None without one
    mask: np.ndarray | None  # uint8 255 = manipulated, None when unknown
    mask_source: str | None
    matrix: np.ndarray | None  # crop matrix (None for full frames)
    size: int | None


def _crop_items(faces: list[dict], source_faces: dict[tuple[int, int], dict]) -> list[Item]:
    items = []
    for r in faces:
        partner = source_faces.get((r["frame_index"], r["track_id"]))
        aligned = partner is not None and np.allclose(partner["matrix"], r["matrix"], atol=1e-6)
        items.append(
            Item(
                r["frame_index"], r["track_id"], r["face_id"], decode_image(r["image"]),
                decode_image(partner["image"]) if aligned else None,
                decode_mask(r["mask"]) if r["mask"] is not None else None, r["mask_source"],
                np.asarray(r["matrix"]).reshape(2, 3), int(r["size"]),
            )
        )
    return items


def _score_images(items: list[Item], config: QualityConfig) -> list[dict[str, Any]]:
    """Mask-SSIM / SSIM / LPIPS / VGG MSE of each item against its source."""
    rows = []
    for it in items:
        row: dict[str, Any] = {"mask_source": it.mask_source}
        if it.mask is not None:
            row["mask_area"] = float(binary_mask(it.mask).mean())
        if it.source is not None and "mask_ssim" in config.metrics:
            row["ssim"] = ssim(it.image, it.source)
            if it.mask is not None:
                masked, inside = mask_ssim(it.image, it.source, it.mask)
                row["mask_ssim"], row["mask_ssim_inside"] = _nan_to_none(masked), _nan_to_none(inside)
        rows.append(row)
    if "lpips" in config.metrics:
        paired = [i for i, it in enumerate(items) if it.source is not None]
        model = perceptual_model(config) if paired else None
        # whole 720p frames: one at a time (VGG activations of a batch would need gigabytes)
        batch = config.batch_size if not paired or items[paired[0]].image.size <= 3 * 512 * 512 else 1
        for start in range(0, len(paired), batch):
            chunk = paired[start : start + batch]
            dist, mse = model.distances([items[i].image for i in chunk], [items[i].source for i in chunk])
            for i, d, m in zip(chunk, dist, mse):
                rows[i]["lpips"], rows[i]["vgg_mse"] = float(d), float(m)
    return rows


# ----------------------------------------------------------------------------- frames


def _paired_frames(path: Path, source: Path | None, wanted: set[int]) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    own = frames_at(path, wanted)
    if source is None:
        for index, image in own:
            yield index, image, None
        return
    theirs = frames_at(source, wanted)
    for (index, image), (s_index, s_image) in zip(own, theirs):
        if index != s_index or s_image.shape != image.shape:
            raise PairMismatch(f"frame {index} of the video and frame {s_index} of its source differ in size or timing")
        yield index, image, s_image


class PairMismatch(ValueError):
    """A fake and its source differ in size or length (error code pair_mismatch)."""


def _ewarp_and_frames(
    path: Path, source: Path | None, faces: list[dict], config: QualityConfig
) -> tuple[dict[tuple[int, int | None], tuple[float, float]], list[Item]]:
    """Ewarp per face (crop) or per frame (full frame), and full-frame items when asked.

    For each sampled frame t the frames t and t+1 are cropped with the face's matrix at
    t (the same geometry for both, so the flow is the real motion).
    """
    indices = {r["frame_index"] for r in faces}
    wanted = indices | {i + 1 for i in indices} if "ewarp" in config.metrics else set(indices)
    by_frame: dict[int, list[dict]] = {}
    for r in faces:
        by_frame.setdefault(r["frame_index"], []).append(r)
    flow = FlowEstimator(config.flow_preset)
    ewarp: dict[tuple[int, int | None], tuple[float, float]] = {}
    items: list[Item] = []
    previous: tuple[int, np.ndarray, np.ndarray | None] | None = None
    for index, image, src in _paired_frames(path, source, wanted):
        if config.full_frame and index in by_frame:
            items.append(_frame_item(index, image, src, by_frame[index]))
        if "ewarp" in config.metrics and previous is not None and previous[0] == index - 1 and previous[0] in by_frame:
            t_img, t_src = previous[1], previous[2]
            if config.full_frame:
                w = ewarp_pair(t_img, image, flow, t_src, src)
                ewarp[(previous[0], None)] = (w.error, w.valid_fraction)
            else:
                for r in by_frame[previous[0]]:
                    m, size = np.asarray(r["matrix"]).reshape(2, 3), int(r["size"])
                    crops = [warp_crop(x, m, size) if x is not None else None for x in (t_img, image, t_src, src)]
                    w = ewarp_pair(crops[0], crops[1], flow, crops[2], crops[3])
                    ewarp[(previous[0], r["track_id"])] = (w.error, w.valid_fraction)
        previous = (index, image, src)
    return ewarp, items


def _frame_item(index: int, image: np.ndarray, src: np.ndarray | None, faces: list[dict]) -> Item:
    """A whole frame, its mask the union of the faces' crop masks pasted back."""
    h, w = image.shape[:2]
    mask, sources = None, {r["mask_source"] for r in faces if r["mask"] is not None}
    for r in faces:
        if r["mask"] is None:
            continue
        back = cv2.warpAffine(
            decode_mask(r["mask"]), invert_matrix(np.asarray(r["matrix"])), (w, h), flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
        mask = back if mask is None else np.maximum(mask, back)
    return Item(index, None, None, image, src, mask, ",".join(sorted(sources)) or None, None, None)


# ----------------------------------------------------------------------------- per video


def score_video(root: str | Path, video: dict[str, Any], source: dict[str, Any] | None, config: QualityConfig) -> dict[str, Any]:
    """Score one video, write its quality parts, return its quality/videos row."""
    from dfpipe.pipeline.video.decode import DecodeError

    root = Path(root)
    vid = video["video_id"]
    keys = {k: video.get(k) for k in ("video_id", "source_video_id", "dataset", "method", "compression", "label")}
    keys["region"] = "frame" if config.full_frame else "crop"
    head = {**keys, "metrics": ",".join(config.metrics), "flow_on": "source" if source else "self"}
    try:
        rows = _score_rows(root, video, source, config, keys)
    except PairMismatch as exc:
        return _finish(root, vid, [], {**head, "status": "error", "error_code": "pair_mismatch", "error": str(exc)})
    except DecodeError as exc:
        return _finish(root, vid, [], {**head, "status": "error", "error_code": exc.code, "error": str(exc)})
    means = {c: _mean([r.get(c) for r in rows]) for c in METRIC_COLUMNS}
    row = {**head, "n_frames": len(rows), **means, "status": "ok"}
    if video.get("label") == "fake" and video.get("source_video_id") and source is None:
        row.update(error_code="source_missing", error="the source video is not extracted in this dataset: Ewarp on its own flow only")
    return _finish(root, vid, rows, row)


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def _finish(root: Path, vid: str, frame_rows: list[dict], video_row: dict) -> dict:
    write_rows(root, QUALITY_FRAMES_TABLE, vid, frame_rows, QUALITY_FRAMES_SCHEMA)
    write_rows(root, QUALITY_VIDEOS_TABLE, vid, [video_row], QUALITY_VIDEOS_SCHEMA)  # last: the done marker
    return video_row


def _read_faces(root: Path, vid: str) -> list[dict]:
    import pyarrow.parquet as pq

    from dfpipe.manifests.parts import part_path

    path = part_path(root, "faces", vid)
    if not path.is_file():
        return []
    return pq.read_table(path, schema=FACES_SCHEMA).to_pylist()


def _score_rows(root: Path, video: dict, source: dict | None, config: QualityConfig, keys: dict) -> list[dict]:
    faces = sorted(_read_faces(root, video["video_id"]), key=lambda r: (r["frame_index"], r["track_id"]))
    if not faces:
        return []
    src_faces = {}
    if source is not None and not config.full_frame:
        src_faces = {(r["frame_index"], r["track_id"]): r for r in _read_faces(root, source["video_id"])}
    path = root / video["path"]
    src_path = root / source["path"] if source is not None else None
    need_frames = "ewarp" in config.metrics or config.full_frame
    ewarp, frame_items = _ewarp_and_frames(path, src_path, faces, config) if need_frames else ({}, [])
    items = frame_items if config.full_frame else _crop_items(faces, src_faces)
    scores = _score_images(items, config)
    rows = []
    for it, sc in zip(items, scores):
        e = ewarp.get((it.frame_index, it.track_id), (None, None))
        rows.append(
            {
                **keys, "face_id": it.face_id, "frame_index": it.frame_index, "track_id": it.track_id,
                **sc, "ewarp": _nan_to_none(e[0]), "ewarp_valid": e[1],
            }
        )
    return rows


# ----------------------------------------------------------------------------- the run


@dataclass
class QualitySummary:
    root: Path
    n_videos: int = 0
    n_scored: int = 0
    n_skipped: int = 0
    n_errors: int = 0
    seconds: float = 0.0


def score_quality(
    root: str | Path,
    config: QualityConfig | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    redo: bool = False,
) -> QualitySummary:
    """Score every extracted video of `root` into `root/quality/` (resumable).

    Videos already scored are skipped when the parameters match; other parameters are
    refused unless `redo`, which clears `root/quality/` first.
    """
    from dfpipe.runtime.parallel import Task, dask_client, run_tasks
    from dfpipe.runtime.runinfo import ParamsMismatch, check_params, record_stage

    config = config or QualityConfig()
    root = Path(root)
    if not (root / "videos").is_dir():
        raise FileNotFoundError(f"{root}: not a dataset directory (no videos/)")
    weights = {}
    if "lpips" in config.metrics:  # fail before any work when the backbone is missing
        from dfpipe.pipeline.quality.perceptual import VGG16_WEIGHTS, lpips_linear_path
        from dfpipe.runtime.weights import weights_record

        lpips_linear_path()
        weights = weights_record(VGG16_WEIGHTS, config.weights)
    if redo and (root / "quality").is_dir():
        import shutil

        shutil.rmtree(root / "quality")
    if part_keys(root, QUALITY_VIDEOS_TABLE):
        try:
            check_params(root, "score-quality", config.output_params())
        except ParamsMismatch as exc:
            raise ParamsMismatch(f"{exc} Or pass --redo to score again from scratch.") from None
    record_stage(root, "score-quality", config.output_params(), weights=weights)
    started = time.perf_counter()
    videos = {v["video_id"]: v for v in read_table(root, "videos", VIDEOS_SCHEMA).to_pylist()}
    ok = [v for v in videos.values() if v["status"] == "ok"]
    done = part_keys(root, QUALITY_VIDEOS_TABLE)
    todo = [v for v in ok if v["video_id"] not in done]
    summary = QualitySummary(root=root, n_videos=len(ok), n_skipped=len(ok) - len(todo))

    def source_of(v: dict) -> dict | None:
        src = videos.get(v.get("source_video_id") or "")
        return src if v["label"] == "fake" and src is not None and src["status"] == "ok" else None

    with dask_client(workers if todo else 0, scheduler) as client:
        tasks = [Task(v["video_id"], score_video, (str(root.absolute()), v, source_of(v), config)) for v in todo]
        results = run_tasks(tasks, client, description="score-quality", progress=progress)
    summary.n_scored = sum(1 for r in results.values() if r["status"] == "ok")
    summary.n_errors = sum(1 for r in results.values() if r["status"] != "ok")
    summary.seconds = time.perf_counter() - started
    return summary


def read_quality(root: str | Path) -> tuple["pd.DataFrame", "pd.DataFrame"]:  # noqa: F821
    """(frames, videos) quality tables of `root` as pandas DataFrames."""
    frames = read_table(root, QUALITY_FRAMES_TABLE, QUALITY_FRAMES_SCHEMA).to_pandas()
    vids = read_table(root, QUALITY_VIDEOS_TABLE, QUALITY_VIDEOS_SCHEMA).to_pandas()
    return frames, vids


__all__ = ["METRICS", "QualityConfig", "QualitySummary", "read_quality", "score_quality", "score_video"]
