"""One fake: which fakes a run makes (`plan_jobs`), and making one into its DS2 rows.

A fake is one target track in every asked quality; with `--variants N`, each track or pair
gives N fakes, keyed `<key>`, `<key>-v1`, ..., each with its own seed and so its own random
draws (self-blend perturbation, mask deformation, colour-fit sampling). `fake_rows` streams
the target video, composes each frame, encodes a lossless (c0) clip, transcodes it to the
other qualities and re-cuts the target's crops from every encoded clip (each composed frame
and each re-cut one is a progress step); `write_parts` writes, atomically and in this order,
`DS2/faces/part-<video>.parquet` and `DS2/videos/part-<video>.parquet` for each quality's
video (the videos parts are the fake's completion marker).

Pair links follow docs/architecture.md: a fake's `source_video_id` is the real video whose
frames it changes (the task's "target"), `target_video_id` the identity donor (the swap
"source"; the video itself for self-blend). Fake frame i is real frame i of its
`source_video_id`: the clip has every frame of it, changed where the track has a face.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from dfpipe.manifests.codec import decode_image, encode_image, encode_mask
from dfpipe.manifests.ids import face_id
from dfpipe.manifests.parts import part_path, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import FACES_INDEX_COLUMNS, FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.pipeline.faces.align import transform_mesh, transform_points, warp_crop
from dfpipe.pipeline.synth.compose import Composer, Generator
from dfpipe.pipeline.synth.config import SynthConfig
from dfpipe.pipeline.synth.pairing import (
    Pair,
    TrackRef,
    main_tracks,
    plan_pairs,
    real_videos,
    track_sizes,
)
from dfpipe.pipeline.synth.track import TrackPlan, plan_track
from dfpipe.pipeline.video.decode import iter_frames, probe
from dfpipe.pipeline.video.writing import crf_for_quality, run_ffmpeg, write_video
from dfpipe.runtime.files import atomic_write
from dfpipe.runtime.progress import expect_steps, step
from dfpipe.runtime.stage import ItemError

FAKES_DIR = "fakes"
log = logging.getLogger(__name__)


@dataclass
class FakeJob:
    """One fake to make. `error` set at planning (a bad pairs row, an unmatched generator
    folder) makes the job write its error rows only."""

    key: str
    pair: Pair | None
    seed: int
    frames_row: dict | None = None  # videos row of the real video whose frames change
    identity_row: dict | None = None  # videos row of the identity donor (swap)
    generator_dir: str | None = None
    error: tuple[str, str] | None = None
    note: dict = field(default_factory=dict)
    variant: int = 0  # which of the `--variants` fakes of its track or pair (0: the first)

    def real_ids(self) -> set[str]:
        """The real videos the fake is made of (listed in DS2 with `include_reals`)."""
        refs = (self.pair.target, self.pair.source) if self.pair else ()
        return {r.video_id for r in refs if r is not None}


# ----------------------------------------------------------------------------- planning


def _job_key(config: SynthConfig, parts: list[Any]) -> str:
    params = config.output_params()
    params.pop("variants")  # not the run's count: a variant's key names its own number (`variant_key`)
    digest = hashlib.blake2b(json.dumps([params, *parts], default=str).encode(), digest_size=6).hexdigest()
    return f"{config.method}-{digest}"


def variant_key(key: str, variant: int) -> str:
    """The key of variant `variant` of the fake keyed `key`: the first keeps the key as it
    was before variants existed (a DS2 made then resumes), the others end in `-v<n>`."""
    return f"{key}-v{variant}" if variant else key


def _item_seed(config: SynthConfig, parts: list[Any], variant: int) -> int:
    """The seed of every random draw of one fake: from the run's seed, the item and its
    variant, not from blend or colour options, so fakes made with other blends differ only
    by the blend (variant 0 draws as fakes did before variants existed)."""
    item = [config.seed, config.method, *parts, *([["variant", variant]] if variant else [])]
    return int(hashlib.blake2b(json.dumps(item, default=str).encode(), digest_size=4).hexdigest(), 16)


def plan_jobs(ds: Path, config: SynthConfig) -> list[FakeJob]:
    """Every fake of the run, with a stable key (so a re-run finds the finished ones):
    `config.variants` per planned track or pair, each with its own seed."""
    videos = real_videos(ds)
    if not videos:
        raise ValueError(f"{ds} holds no extracted real videos (run `dfpipe extract` first)")
    sizes = track_sizes(ds, set(videos))
    usable = {r: n for r, n in sizes.items() if n >= config.min_track_faces}
    jobs: list[FakeJob] = []

    def job(pair: Pair | None, parts: list[Any], note: dict | None = None, **kw: Any) -> None:
        key = _job_key(config, parts)
        frames_row = videos.get(pair.target.video_id) if pair else None
        identity_row = videos.get(pair.source.video_id) if pair and pair.source else None
        for v in range(config.variants):  # each its own note: making a fake adds to it
            jobs.append(FakeJob(variant_key(key, v), pair, _item_seed(config, parts, v), frames_row, identity_row,
                                note=dict(note or {}), variant=v, **kw))

    if config.method in ("swap", "reenact"):
        for i, (pair, note, error, parts) in enumerate(plan_pairs(
                ds, sizes, usable, config.pairing, config.pairs, config.seed, config.min_track_faces, config.pairs_file)):
            job(pair, parts, note=note, error=("bad_input", f"pairs file row {i + 1}: {error}") if error else None)
    elif config.method in ("self-blend", "reencode"):
        if not usable:
            raise ValueError(f"{ds}: no real track has >= {config.min_track_faces} faces")
        for ref in sorted(main_tracks(usable).values(), key=lambda r: r.video_id):
            job(Pair(ref), [ref])
    else:
        from dfpipe.pipeline.synth.external import match_folders

        matched, unmatched = match_folders(config.from_generator, videos)
        mains = main_tracks(sizes)
        for vid, folder in matched.items():
            ref = mains.get(vid)
            job(Pair(ref) if ref else None, [vid, folder.name], generator_dir=str(folder),
                error=None if ref else ("bad_input", f"real video {vid} has no face track to paste {folder} onto"))
        for folder in unmatched:
            job(None, ["unmatched", folder.name], generator_dir=str(folder),
                error=("source_missing", f"generator folder {folder} names no real video of {ds} (by id or file name)"))
        if not jobs:
            raise ValueError(f"--from-generator {config.from_generator} holds no folders of generated frames")
    if config.variants > 1 and (config.method == "reenact" or (config.method == "swap" and config.geometry == "mesh")):
        log.warning("--variants %d: a %s takes its face and mask from the face meshes, with no random draw; its "
                    "variants differ only by the colour transfer's sampled pixels (none with --colour none)",
                    config.variants, "reenactment" if config.method == "reenact" else "mesh swap")
    return jobs


# ----------------------------------------------------------------------------- one fake


def video_id(key: str, quality: str) -> str:
    """The id of a fake's video in one quality: its videos part is named by it."""
    return f"{key}-{quality}"


def _rel_video_path(key: str, quality: str) -> str:
    return f"{FAKES_DIR}/{quality}/{key}.mp4"


@lru_cache(maxsize=2)
def harmonizer(checkpoint: str, device: str):
    """The DoveNet harmonizer of `--blend dovenet`, loaded once per process."""
    from dfpipe.pipeline.synth.blend import load_harmonizer

    return load_harmonizer(checkpoint, device)


def _track_rows(ds: Path, ref: TrackRef, with_images: bool = False) -> list[dict]:
    path = part_path(ds, "faces", ref.video_id)
    if not path.is_file():
        raise ItemError("bad_input", f"faces of real video {ref.video_id} are missing ({path})")
    columns = FACES_INDEX_COLUMNS + (["image"] if with_images else [])
    table = pq.read_table(path, columns=columns, filters=[("track_id", "=", ref.track_id)])
    return table.to_pylist()


def _identity_face(ds: Path, ref: TrackRef) -> tuple[np.ndarray, np.ndarray]:
    """The donor's best-scored crop and its landmarks in crop pixels."""
    rows = _track_rows(ds, ref, with_images=True)
    if not rows:
        raise ItemError("bad_input", f"identity donor track {ref.video_id}/{ref.track_id} has no faces")
    best = max(rows, key=lambda r: (r["score"] or 0.0, -r["frame_index"]))
    return decode_image(best["image"]), transform_points(np.asarray(best["landmarks"]).reshape(5, 2), best["matrix"])


class _GeneratedFrames:
    """An external generator whose images are the user's input: an image it cannot use
    (unreadable, of no usable size) is the fake's `bad_input`, not a bug."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def __call__(self, frame: np.ndarray, frame_index: int, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            return self.generator(frame, frame_index, landmarks)
        except ValueError as exc:
            raise ItemError("bad_input", str(exc)) from exc


def _source_mesh_face(ds: Path, ref: TrackRef) -> tuple[np.ndarray, np.ndarray] | None:
    """The donor's best crop to render on every target frame and its mesh in crop pixels
    (468 x 3), or None when the donor's faces have no mesh (extracted with --mesh none)."""
    rows = [r for r in _track_rows(ds, ref, with_images=True) if r.get("mesh") is not None]
    if not rows:
        return None
    best = choose_donor(rows)
    return decode_image(best["image"]), transform_mesh(best["mesh"], best["matrix"])


def choose_donor(rows: list[dict]) -> dict:
    """The donor's face (a faces row with a mesh) to render on every target frame: the one
    nearest frontal, at rest and sharp (`donor_costs`); the earliest of equals."""
    costs = donor_costs(rows)
    return rows[min(range(len(rows)), key=lambda i: (costs[i], rows[i]["frame_index"]))]


def donor_costs(rows: list[dict]) -> list[float]:
    """Degrees, roughly, per faces row: how far each donor face is from frontal, at rest and
    sharp. The swapped face takes the target's expression, but a donor frame with an open
    or smiling mouth or lowered lids carries its stretched lips and half-shut eyes onto
    every frame, and a frame blurred by the head's motion blurs the whole fake. Eyes and
    sharpness are judged against the donor's own track (people and cameras differ)."""
    from dfpipe.pipeline.synth.meshswap import eye_opening, mouth_opening

    meshes = [np.asarray(r["mesh"], np.float64).reshape(-1, 3) for r in rows]
    eyes = np.array([np.mean(eye_opening(m)) for m in meshes])
    usual_eyes = max(float(np.median(eyes)), 1e-6)
    sharp = np.array([r.get("sharpness") or 0.0 for r in rows], np.float64)
    sharpest = max(float(sharp.max()), 1e-6)
    return [abs(r["yaw"] or 0.0) + abs(r["pitch"] or 0.0) - 20.0 * (r["mesh_score"] or 0.0)
            + 150.0 * mouth_opening(m) + 40.0 * max(0.0, 1.0 - e / usual_eyes) + 25.0 * (1.0 - s / sharpest)
            for r, m, e, s in zip(rows, meshes, eyes, sharp)]


def _target_look(ds: Path, ref: TrackRef):
    """The target's usual face (`occlusion.TargetLook`) from its sampled crops with a mesh."""
    from dfpipe.pipeline.synth.occlusion import TargetLook, evenly

    rows = sorted((r for r in _track_rows(ds, ref, with_images=True) if r.get("mesh") is not None),
                  key=lambda r: r["frame_index"])
    return TargetLook([(decode_image(r["image"]), transform_mesh(r["mesh"], r["matrix"])) for r in evenly(rows)]) if rows else None


def _mesher(device: str):
    """The process's Face Mesh (shared with extract)."""
    from dfpipe.pipeline.faces.rows import face_mesher

    return face_mesher(device)


#: frames decoded ahead of composing them when the generator batches per-frame work
_PREPARE_CHUNK = 16


def _chunks(items, n: int):
    """Lists of up to `n` consecutive items."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _generator(job: FakeJob, config: SynthConfig, ds: Path, plan: TrackPlan, crop_size: int,
               rng: np.random.Generator) -> Generator:
    if config.method == "reenact":
        if not plan.has_mesh:
            raise ItemError("bad_input", f"--method reenact needs faces with a face mesh: {job.pair.target.video_id} "
                                         "was extracted with --mesh none (extract it again)")
        from dfpipe.pipeline.synth.reenact import ReenactGenerator, SourceExpression

        try:
            expression = SourceExpression(_track_rows(ds, job.pair.source, with_images=True),
                                          ds / job.identity_row["path"], _mesher(config.device))
        except ValueError as exc:
            raise ItemError("bad_input", f"expression source {job.pair.source.video_id}: {exc}") from exc
        return ReenactGenerator(expression, plan.meshes, plan.boxes, _mesher(config.device), plan.first)
    if config.method == "swap" and config.geometry == "mesh" and plan.has_mesh:
        source = _source_mesh_face(ds, job.pair.source)
        if source is not None:
            from dfpipe.pipeline.synth.meshswap import MeshSwapGenerator

            job.note["geometry"] = "mesh"
            # no flow following: the mesh itself follows pose and expression, and mixing in the
            # previous frame carried along the flow left ghosts of the eyes and mouth
            return MeshSwapGenerator(source[0], source[1], plan.boxes, _mesher(config.device),
                                     target_meshes=plan.meshes,
                                     look=_target_look(ds, job.pair.target) if config.occluders else None)
    if config.method == "swap":
        from dfpipe.pipeline.synth.swap import SwapGenerator

        job.note["geometry"] = "landmarks"

        face, lm = _identity_face(ds, job.pair.source)
        swap = SwapGenerator(face, lm, config.transform)
        if config.follow_motion > 0:
            from dfpipe.pipeline.synth.motion import FlowFollow

            return FlowFollow(swap, refresh=1.0 - config.follow_motion)
        return swap
    if config.method == "self-blend":
        from dfpipe.pipeline.synth.selfblend import SelfBlendGenerator

        generator = SelfBlendGenerator(rng)
        job.note["self_blend"] = generator.params.as_meta()  # what this fake (this variant) drew
        return generator
    from dfpipe.pipeline.synth.external import ExternalGenerator

    try:
        return _GeneratedFrames(ExternalGenerator(job.generator_dir, plan.matrices, crop_size))
    except (ValueError, OSError) as exc:  # a generator folder without usable frames, or unreadable
        raise ItemError("bad_input", str(exc)) from exc


def fake_rows(job: FakeJob, config: SynthConfig, ds: Path, out: Path) -> tuple[list[dict], list[dict]]:
    """Make one fake in every quality (its video files under `out`); return its videos rows
    and faces rows. Raises ItemError for a known problem with the fake's inputs."""
    if job.error:
        raise ItemError(*job.error)
    return _make(job, config, ds, out)  # a DecodeError of the real video is an ItemError too


def write_parts(out: Path, video_rows: list[dict], face_rows: list[dict]) -> None:
    """One part per fake video, as extract writes them (score-quality reads faces by video
    id); the videos parts come last: all of them present means the fake is done."""
    for row in video_rows:
        own = [f for f in face_rows if f["video_id"] == row["video_id"]]
        if own:
            write_part_atomic(rows_to_table(own, FACES_SCHEMA), part_path(out, "faces", row["video_id"]))
    for row in video_rows:
        write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(out, "videos", row["video_id"]))


def error_rows(job: FakeJob, config: SynthConfig, code: str, message: str) -> list[dict]:
    """A failed fake's videos rows: one per quality, each saying why."""
    return [
        {**_base_row(job, config, q), "status": "error", "error_code": code, "error": message, "meta": _meta(job, config, q)}
        for q in config.qualities
    ]


def _meta(job: FakeJob, config: SynthConfig, quality: str, **extra: Any) -> str:
    meta = {
        "generator": config.method,
        "blend": config.blend,
        "colour": config.colour,
        "quality": quality,
        "seed": config.seed,
        "item_seed": job.seed,
        "variant": job.variant,
        "region": config.region,
        "mask_warp": config.mask_warp if config.deform else "none",
        "transform": config.transform if config.method == "swap" else None,
        "follow_motion": config.follow_motion if config.method == "swap" else None,
        "smooth": config.smooth,
        "frames_track_id": job.pair.target.track_id if job.pair else None,
        "identity_track_id": job.pair.source.track_id if job.pair and job.pair.source else None,
        "generator_dir": job.generator_dir,
        "harmonizer": config.harmonizer,
        **job.note,
        **extra,
    }
    if config.method == "reencode":  # the same person as the real it copies
        meta.update(_people((job.frames_row or {}).get("meta")))
    return json.dumps(meta, sort_keys=True)


def _people(meta: object) -> dict[str, Any]:
    """`identity` / `identities` of a real video's meta (named by `dfpipe build`'s splits)."""
    try:
        parsed = json.loads(meta) if isinstance(meta, str) else {}
    except json.JSONDecodeError:
        return {}
    return {k: parsed[k] for k in ("identity", "identities") if isinstance(parsed, dict) and k in parsed}


def _base_row(job: FakeJob, config: SynthConfig, quality: str) -> dict[str, Any]:
    frames = job.frames_row or {}
    frames_id = job.pair.target.video_id if job.pair else None
    identity = job.pair.source.video_id if job.pair and job.pair.source else None
    if config.method == "self-blend":
        identity = frames_id
    real = config.method == "reencode"  # the real video at this quality: lineage, no target
    return {
        "video_id": video_id(job.key, quality),
        "path": _rel_video_path(job.key, quality),
        "label": "real" if real else "fake",
        "dataset": frames.get("dataset"),
        "method": None if real else config.method,
        "compression": quality,
        "source_video_id": frames_id,
        "target_video_id": None if real else identity,
        "split": frames.get("split"),
    }


def _make(job: FakeJob, config: SynthConfig, ds: Path, out: Path) -> tuple[list[dict], list[dict]]:
    if job.frames_row is None:
        raise ItemError("source_missing", f"real video {job.pair.target.video_id} is not in {ds}")
    if config.method in ("swap", "reenact") and job.identity_row is None:
        raise ItemError("source_missing", f"identity donor {job.pair.source.video_id} is not in {ds}")
    rows = _track_rows(ds, job.pair.target)
    if not rows:
        raise ItemError("bad_input", f"track {job.pair.target.track_id} of {job.pair.target.video_id} has no faces")
    video_path = ds / job.frames_row["path"]
    info = probe(video_path)
    plan = plan_track(rows, config.per_video, config.smooth, info.n_frames)
    # progress: every frame is composed, then the target's frames are re-cut per quality
    expect_steps(info.n_frames + len(config.qualities) * len(plan.rows))
    crop_size = int(rows[0]["size"])
    rng = np.random.default_rng(job.seed)
    composer = None if config.method == "reencode" else Composer(  # reencode: every frame as it is
        _generator(job, config, ds, plan, crop_size, rng), rng, config.blend, config.colour, config.region,
        config.mask_warp, config.deform,
        harmonizer(config.harmonizer, config.device) if config.blend == "dovenet" else None, job.seed,
        # SBI's random blend ratio suits self-blending; a swapped face is pasted opaque
        blend_ratio=None if config.method == "self-blend" else 1.0,
    )
    generator = composer.generator if composer is not None else None

    masks: dict[int, bytes] = {}
    n_written = 0

    prepare = getattr(generator, "prepare_frames", None)

    def fake_frames():
        nonlocal n_written
        # every frame: the fake is as long as its real video; a few at a time, so a generator
        # that runs a network per frame (the mesh ones) can batch it
        for chunk in _chunks(iter_frames(video_path), _PREPARE_CHUNK if prepare else 1):
            if prepare:
                prepare([(f.index, f.image, plan.landmarks[f.index]) for f in chunk if f.index in plan.landmarks])
            for frame in chunk:
                image = frame.image
                if composer is not None and frame.index in plan.landmarks:
                    image, mask = composer(image, frame.index, plan.landmarks[frame.index])
                    if frame.index in plan.rows:
                        masks[frame.index] = encode_mask(warp_crop(mask, plan.rows[frame.index]["matrix"], crop_size))
                n_written += 1
                step()
                yield image

    fakes = out / FAKES_DIR
    lossless = fakes / "c0" / f"{job.key}.mp4" if "c0" in config.qualities else fakes / f".lossless-{job.key}.mp4"
    # lossless whatever the preset: the fastest one only costs disk
    write_video(fake_frames(), lossless, fps=info.fps, crf=crf_for_quality("c0"), preset="veryfast")
    try:
        if n_written < plan.end:
            raise ItemError("truncated", f"{video_path} ended after {n_written} frames; the fake needs {plan.end}")
        video_rows, face_rows = [], []
        for quality in config.qualities:
            path = fakes / quality / f"{job.key}.mp4"
            if quality != "c0":
                with atomic_write(path) as tmp:
                    run_ffmpeg(["-i", str(lossless), "-c:v", "libx264", "-crf", str(crf_for_quality(quality)),
                                "-preset", "medium", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(tmp)])
            q_faces = _face_rows(path, job, config, quality, plan, masks, crop_size)
            face_rows += q_faces
            video_rows.append(_video_row(job, config, quality, path, plan, len(q_faces)))
    finally:
        if "c0" not in config.qualities:
            lossless.unlink(missing_ok=True)
    return video_rows, face_rows


def _face_rows(path: Path, job: FakeJob, config: SynthConfig, quality: str, plan: TrackPlan,
               masks: dict[int, bytes], crop_size: int) -> list[dict]:
    """The target's crops re-cut from the encoded fake, with the exact masks used."""
    vid = video_id(job.key, quality)
    split = (job.frames_row or {}).get("split")
    out: list[dict] = []
    last = max(plan.rows)
    for frame in iter_frames(path):
        if frame.index > last:
            break
        row = plan.rows.get(frame.index)
        if row is None:
            continue
        crop = warp_crop(frame.image, row["matrix"], crop_size)
        step()
        out.append({
            **_own_geometry(frame.image, row, config),
            **{k: row[k] for k in ("track_id", "shot_id", "score", "x1", "y1", "x2", "y2", "landmarks", "matrix", "crop", "size")},
            "face_id": face_id(vid, frame.index, row["track_id"]),
            "video_id": vid,
            "frame_index": frame.index,
            "timestamp": frame.timestamp,
            "image_format": config.image_format,
            "image": encode_image(crop, config.image_format),
            "mask": masks.get(frame.index),
            "mask_source": "synth" if frame.index in masks else None,
            "label": "real" if config.method == "reencode" else "fake",
            "split": split,
        })
    return out


def _own_geometry(image: np.ndarray, row: dict, config: SynthConfig) -> dict:
    """The fake face's own mesh and head pose (Face Mesh on the fake frame, in the target
    row's region), when the target has a mesh: the pose and expression metrics compare them."""
    if row.get("mesh") is None:
        return {}
    from dfpipe.pipeline.faces.rows import geometry_columns

    box = np.array([row["x1"], row["y1"], row["x2"], row["y2"]], np.float64).reshape(1, 4)
    points, scores = _mesher(config.device).mesh(image, box, np.asarray(row["landmarks"], np.float64).reshape(1, 5, 2))
    return geometry_columns(points[0], float(scores[0]), image.shape)


def _video_row(job: FakeJob, config: SynthConfig, quality: str, path: Path, plan: TrackPlan, n_faces: int) -> dict:
    info = probe(path)
    return {
        **_base_row(job, config, quality),
        "width": info.width, "height": info.height, "rotation": 0, "fps": info.fps, "n_frames": info.n_frames,
        "duration": info.duration, "codec": info.codec, "has_audio": False,
        "n_sampled": len(plan.rows), "n_faces": n_faces, "n_tracks": 1 if n_faces else 0,
        "status": "ok",
        "meta": _meta(job, config, quality, changed_frames=[plan.first, plan.end - 1], n_changed=len(plan.landmarks)),
    }
