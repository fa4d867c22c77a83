"""Per-video quality metrics: what `score-quality` computes for one extracted video.

A fake is compared with its source real video on the same frames: Mask-SSIM inside its
mask (from `dfpipe masks`), SSIM, LPIPS and VGG feature MSE of the aligned crops (stored
by extract with the source's matrices, so they line up), and Ewarp on frames t, t+1 with
the flow taken on the source video. A real (or a fake without source) gets Ewarp on its
own flow. Each fake face also gets identity distances (dlib descriptor), pose and expression
errors (`geometry`, from the rows' angles and mesh) and a seam score. With `full_frame`, the
same metrics (but the per-face ones) run on whole frames, the crop masks pasted back into the
frame with the inverse matrices.

`score_video` returns the rows and writes nothing; the stage (`quality/stage.py`) writes
them, and the error row of a video that cannot be scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from dfpipe.manifests.codec import decode_image, decode_mask
from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import (
    FACES_SCHEMA,
    METRIC_COLUMNS,
    QUALITY_FRAMES_SCHEMA,
    QUALITY_FRAMES_TABLE,
    QUALITY_VIDEOS_SCHEMA,
    QUALITY_VIDEOS_TABLE,
)
from dfpipe.pipeline.faces.align import invert_matrix, warp_crop
from dfpipe.pipeline.quality.config import QualityConfig
from dfpipe.pipeline.quality.ewarp import FlowEstimator, ewarp_pair
from dfpipe.pipeline.quality.frames import frames_at
from dfpipe.pipeline.quality.ssim import binary_mask, mask_ssim, ssim
from dfpipe.runtime.stage import ItemError

_PERCEPTUAL: dict[tuple, Any] = {}


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


class PairMismatch(ItemError):
    """A fake and its source differ in size or length (error code pair_mismatch)."""

    def __init__(self, message: str) -> None:
        super().__init__("pair_mismatch", message)


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


def row_keys(video: dict[str, Any], config: QualityConfig) -> dict[str, Any]:
    """The columns that say which video (and region) a quality row is about."""
    keys = {k: video.get(k) for k in ("video_id", "source_video_id", "dataset", "method", "compression", "label")}
    return {**keys, "region": "frame" if config.full_frame else "crop"}


def row_head(video: dict[str, Any], source: dict[str, Any] | None, config: QualityConfig) -> dict[str, Any]:
    """The columns of a quality/videos row, scored or not: the keys, metrics and flow."""
    return {**row_keys(video, config), "metrics": ",".join(config.metrics), "flow_on": "source" if source else "self"}


def score_video(
    root: str | Path, video: dict[str, Any], source: dict[str, Any] | None, config: QualityConfig,
    gallery: dict[str, np.ndarray] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(quality/frames rows, quality/videos row) of one video, `source` its source's
    videos row (None for a real, or a fake whose source is not extracted), `gallery` the
    identities of the dataset's real videos (`identity.build_gallery`) for the identity metric.

    Raises PairMismatch or DecodeError (both ItemErrors) for inputs it cannot score.
    """
    gallery = gallery or {}
    rows = _score_rows(Path(root), video, source, config, row_keys(video, config), gallery)
    means = {c: _mean([r.get(c) for r in rows]) for c in METRIC_COLUMNS}
    retrieval = None
    if "identity" in config.metrics and video.get("label") == "fake":
        from dfpipe.pipeline.quality.identity import expected_identity, retrieval_rate

        retrieval = retrieval_rate([r.get("id_nearest") for r in rows], expected_identity(video), gallery)
    row = {**row_head(video, source, config), "n_frames": len(rows), **means, "id_retrieval": retrieval, "status": "ok"}
    if video.get("label") == "fake" and video.get("source_video_id") and source is None:
        row.update(error_code="source_missing", error="the source video is not extracted in this dataset: Ewarp on its own flow only")
    return rows, row


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def _read_faces(root: Path, vid: str) -> list[dict]:
    import pyarrow.parquet as pq

    from dfpipe.manifests.parts import part_path

    path = part_path(root, "faces", vid)
    if not path.is_file():
        return []
    return pq.read_table(path, schema=FACES_SCHEMA).to_pylist()


def _score_rows(
    root: Path, video: dict, source: dict | None, config: QualityConfig, keys: dict, gallery: dict[str, np.ndarray]
) -> list[dict]:
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
    if not config.full_frame and video.get("label") == "fake" and FACE_METRICS & set(config.metrics):
        donor = _read_faces(root, video["target_video_id"]) if video.get("target_video_id") else []
        for sc, extra in zip(scores, _face_metrics(faces, items, src_faces, donor, video, config, gallery)):
            sc.update(extra)
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


# ----------------------------------------------------------------------------- per face

#: The metrics computed per face row of a fake, against its real partner rows.
FACE_METRICS = frozenset({"identity", "pose", "expression", "seam"})


def _donor_rows(donor_faces: list[dict]) -> dict[int, dict]:
    """{frame index: row} of the donor video's main track (its person)."""
    from dfpipe.pipeline.quality.identity import main_track

    return {r["frame_index"]: r for r in main_track(donor_faces)}


def _face_metrics(
    faces: list[dict], items: list[Item], src_faces: dict[tuple[int, int], dict], donor_faces: list[dict],
    video: dict, config: QualityConfig, gallery: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """Identity, pose, expression and seam of each fake face row (`items` in the same order).

    Pose is compared with the real face of the same frame of the changed video; expression
    with that face too, except for a reenactment, whose expression should be the donor's (its
    frame of the same index, when the donor is in the dataset; else null)."""
    from dfpipe.pipeline.quality.geometry import expression_error, pose_error, seam_score
    from dfpipe.pipeline.quality.identity import REENACT_METHODS

    reenact = video.get("method") in REENACT_METHODS
    donor = _donor_rows(donor_faces) if reenact else {}
    ident = _identity_metrics(faces, items, src_faces, video, gallery) if "identity" in config.metrics else None
    out = []
    for i, (r, it) in enumerate(zip(faces, items)):
        partner = src_faces.get((r["frame_index"], r["track_id"]))
        row: dict[str, Any] = dict(ident[i]) if ident else {}
        if "pose" in config.metrics and partner is not None:
            row["pose_error"] = pose_error(_angles(r), _angles(partner))
        if "expression" in config.metrics:
            ref = donor.get(r["frame_index"]) if reenact else partner
            row["expression_error"] = expression_error(r.get("mesh"), ref.get("mesh")) if ref is not None else None
        if "seam" in config.metrics:
            row["seam"] = seam_score(it.image, it.source, it.mask)
        out.append(row)
    return out


def _angles(row: dict) -> tuple[float | None, float | None, float | None]:
    return row.get("yaw"), row.get("pitch"), row.get("roll")


def _identity_metrics(
    faces: list[dict], items: list[Item], src_faces: dict[tuple[int, int], dict], video: dict,
    gallery: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """id_to_source (to the donor's identity), id_to_target (to the real face of the same
    frame) and id_nearest (the nearest real identity of the dataset) per fake face row."""
    from dfpipe.models.face_descriptor import descriptor_distance
    from dfpipe.pipeline.quality.identity import describe_rows, nearest_identity

    fakes = describe_rows(faces, [it.image for it in items])
    partners = [src_faces.get((r["frame_index"], r["track_id"])) for r in faces]
    present = [p for p in partners if p is not None]
    real_by_id = dict(zip((p["face_id"] for p in present), describe_rows(present)))
    donor = gallery.get(video.get("target_video_id") or "")
    out = []
    for d, p in zip(fakes, partners):
        real = real_by_id.get(p["face_id"]) if p is not None else None
        out.append({
            "id_to_target": descriptor_distance(d, real) if d is not None and real is not None else None,
            "id_to_source": descriptor_distance(d, donor) if d is not None and donor is not None else None,
            "id_nearest": nearest_identity(d, gallery) if d is not None else None,
        })
    return out


def read_quality(root: str | Path) -> tuple["pd.DataFrame", "pd.DataFrame"]:  # noqa: F821
    """(frames, videos) quality tables of `root` as pandas DataFrames."""
    frames = read_table(root, QUALITY_FRAMES_TABLE, QUALITY_FRAMES_SCHEMA).to_pandas()
    vids = read_table(root, QUALITY_VIDEOS_TABLE, QUALITY_VIDEOS_SCHEMA).to_pandas()
    return frames, vids


__all__ = ["PairMismatch", "read_quality", "row_head", "score_video"]
