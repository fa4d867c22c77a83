"""The synthesis stage: plan fakes from a real dataset, make each one, write DS2.

A work item is one fake (one target track) in every asked quality. `make_fake` streams
the target video, composes each frame, encodes a lossless (c0) clip, transcodes it to the
other qualities, re-cuts the target's crops from every encoded clip and writes, atomically
and in this order, `DS2/faces/part-<video>.parquet` and `DS2/videos/part-<video>.parquet`
for each quality's video (the videos parts are the done markers). A re-run skips fakes
whose videos parts all exist.

Pair links follow docs/architecture.md: a fake's `source_video_id` is the real video whose
frames it changes (the task's "target"), `target_video_id` the identity donor (the swap
"source"; the video itself for self-blend). Fake frame i is real frame i of its
`source_video_id`: the clip starts at frame 0 and ends after the last changed frame.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from dfpipe.manifests.ids import face_id, relative_path
from dfpipe.manifests.parts import part_keys, part_path, read_table, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import FACES_INDEX_COLUMNS, FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.pipeline.faces.align import transform_points, warp_crop
from dfpipe.pipeline.video.decode import DecodeError, iter_frames, probe
from dfpipe.manifests.codec import decode_image, encode_image, encode_mask
from dfpipe.pipeline.synth.compose import Composer
from dfpipe.pipeline.synth.config import SynthConfig
from dfpipe.pipeline.synth.pairing import Pair, TrackRef, main_tracks, random_pairs, read_pairs_csv, real_videos, track_sizes
from dfpipe.pipeline.synth.track import TrackPlan, plan_track
from dfpipe.pipeline.video.writing import atomic_output, crf_for_quality, run_ffmpeg, write_video

log = logging.getLogger(__name__)
FAKES_DIR = "fakes"


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


@dataclass
class SynthSummary:
    out: Path
    n_jobs: int = 0
    n_skipped: int = 0
    n_ok: int = 0
    n_videos: int = 0
    n_faces: int = 0
    n_frames: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())


# ----------------------------------------------------------------------------- planning


def _job_key(config: SynthConfig, parts: list[Any]) -> str:
    digest = hashlib.blake2b(json.dumps([config.output_params(), *parts], default=str).encode(), digest_size=6).hexdigest()
    return f"{config.method}-{digest}"


def plan_jobs(ds: Path, config: SynthConfig) -> list[FakeJob]:
    """Every fake of the run, with a stable key (so a re-run finds the finished ones)."""
    videos = real_videos(ds)
    if not videos:
        raise ValueError(f"{ds} holds no extracted real videos (run `dfpipe extract` first)")
    sizes = track_sizes(ds, set(videos))
    usable = {r: n for r, n in sizes.items() if n >= config.min_track_faces}
    jobs: list[FakeJob] = []

    def job(pair: Pair | None, parts: list[Any], **kw: Any) -> FakeJob:
        key = _job_key(config, parts)
        # the item's randomness depends on the seed and the item, not on blend or colour
        # options, so fakes made with other blends differ only by the blend
        item = json.dumps([config.seed, config.method, *parts], default=str)
        seed = int(hashlib.blake2b(item.encode(), digest_size=4).hexdigest(), 16)
        frames_row = videos.get(pair.target.video_id) if pair else None
        identity_row = videos.get(pair.source.video_id) if pair and pair.source else None
        return FakeJob(key, pair, seed, frames_row, identity_row, **kw)

    if config.method == "swap":
        if config.pairs_file:
            for i, (pair, row, error) in enumerate(read_pairs_csv(config.pairs_file, sizes)):
                j = job(pair, ["csv", i, row], note={"pairs_row": i})
                if error:
                    j.error = ("bad_input", f"pairs file row {i + 1}: {error}")
                jobs.append(j)
        else:
            for pair in random_pairs(usable, config.pairs, config.seed, config.min_track_faces):
                jobs.append(job(pair, [pair.target, pair.source]))
    elif config.method == "self-blend":
        if not usable:
            raise ValueError(f"{ds}: no real track has >= {config.min_track_faces} faces")
        for ref in sorted(main_tracks(usable).values(), key=lambda r: r.video_id):
            jobs.append(job(Pair(ref), [ref]))
    else:
        from dfpipe.pipeline.synth.external import match_folders

        matched, unmatched = match_folders(config.from_generator, videos)
        mains = main_tracks(sizes)
        for vid, folder in matched.items():
            ref = mains.get(vid)
            j = job(Pair(ref) if ref else None, [vid, folder.name], generator_dir=str(folder))
            if ref is None:
                j.error = ("bad_input", f"real video {vid} has no face track to paste {folder} onto")
            jobs.append(j)
        for folder in unmatched:
            j = job(None, ["unmatched", folder.name], generator_dir=str(folder))
            j.error = ("source_missing", f"generator folder {folder} names no real video of {ds} (by id or file name)")
            jobs.append(j)
        if not jobs:
            raise ValueError(f"--from-generator {config.from_generator} holds no folders of generated frames")
    return jobs


# ----------------------------------------------------------------------------- one fake


def _video_id(key: str, quality: str) -> str:
    return f"{key}-{quality}"


def _rel_video_path(key: str, quality: str) -> str:
    return f"{FAKES_DIR}/{quality}/{key}.mp4"


@lru_cache(maxsize=2)
def _harmonizer(checkpoint: str, device: str):
    from dfpipe.pipeline.synth.blend import load_harmonizer

    return load_harmonizer(checkpoint, device)


def _track_rows(ds: Path, ref: TrackRef, with_images: bool = False) -> list[dict]:
    path = part_path(ds, "faces", ref.video_id)
    if not path.is_file():
        raise ValueError(f"faces of real video {ref.video_id} are missing ({path})")
    columns = FACES_INDEX_COLUMNS + (["image"] if with_images else [])
    table = pq.read_table(path, columns=columns, filters=[("track_id", "=", ref.track_id)])
    return table.to_pylist()


def _identity_face(ds: Path, ref: TrackRef) -> tuple[np.ndarray, np.ndarray]:
    """The donor's best-scored crop and its landmarks in crop pixels."""
    rows = _track_rows(ds, ref, with_images=True)
    if not rows:
        raise ValueError(f"identity donor track {ref.video_id}/{ref.track_id} has no faces")
    best = max(rows, key=lambda r: (r["score"] or 0.0, -r["frame_index"]))
    return decode_image(best["image"]), transform_points(np.asarray(best["landmarks"]).reshape(5, 2), best["matrix"])


def _generator(job: FakeJob, config: SynthConfig, ds: Path, plan: TrackPlan, crop_size: int, rng: np.random.Generator):
    if config.method == "swap":
        from dfpipe.pipeline.synth.swap import SwapGenerator

        face, lm = _identity_face(ds, job.pair.source)
        swap = SwapGenerator(face, lm, config.transform)
        if config.follow_motion > 0:
            from dfpipe.pipeline.synth.motion import FlowFollow

            return FlowFollow(swap, refresh=1.0 - config.follow_motion)
        return swap
    if config.method == "self-blend":
        from dfpipe.pipeline.synth.selfblend import SelfBlendGenerator

        return SelfBlendGenerator(rng)
    from dfpipe.pipeline.synth.external import ExternalGenerator

    return ExternalGenerator(job.generator_dir, plan.matrices, crop_size)


def make_fake(job: FakeJob, config: SynthConfig, ds_root: str, out_root: str, threads: int | None = None) -> dict[str, Any]:
    """Make one fake in every quality; write its faces and videos parts; return a summary.
    Bad or missing inputs become error rows (one per quality), never an exception."""
    if threads:
        from dfpipe.runtime.parallel import set_worker_threads

        set_worker_threads(threads)
    ds, out = Path(ds_root), Path(out_root)
    start = time.perf_counter()
    video_rows: list[dict]
    face_rows: list[dict] = []
    try:
        if job.error:
            raise _JobError(*job.error)
        video_rows, face_rows = _make(job, config, ds, out)
    except _JobError as exc:
        video_rows = _error_rows(job, config, exc.code, exc.message)
    except DecodeError as exc:
        video_rows = _error_rows(job, config, exc.code, str(exc.message))
    except (ValueError, RuntimeError, OSError) as exc:
        video_rows = _error_rows(job, config, "bad_input", str(exc))
    except Exception as exc:  # a bug: keep the run going, say so in the row
        log.exception("synthesis of %s failed", job.key)
        video_rows = _error_rows(job, config, "internal", f"{type(exc).__name__}: {exc}")
    # one part per fake video, as extract writes them (score-quality reads faces by video id);
    # the videos parts come last: all of them present means the fake is done
    for row in video_rows:
        own = [f for f in face_rows if f["video_id"] == row["video_id"]]
        if own:
            write_part_atomic(rows_to_table(own, FACES_SCHEMA), part_path(out, "faces", row["video_id"]))
    for row in video_rows:
        write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(out, "videos", row["video_id"]))
    return {"key": job.key, "status": video_rows[0]["status"], "error_code": video_rows[0].get("error_code"),
            "n_faces": len(face_rows), "seconds": time.perf_counter() - start}


class _JobError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _meta(job: FakeJob, config: SynthConfig, quality: str, **extra: Any) -> str:
    meta = {
        "generator": config.method,
        "blend": config.blend,
        "colour": config.colour,
        "quality": quality,
        "seed": config.seed,
        "item_seed": job.seed,
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
    return json.dumps(meta, sort_keys=True)


def _base_row(job: FakeJob, config: SynthConfig, quality: str) -> dict[str, Any]:
    frames = job.frames_row or {}
    frames_id = job.pair.target.video_id if job.pair else None
    identity = job.pair.source.video_id if job.pair and job.pair.source else None
    if config.method == "self-blend":
        identity = frames_id
    return {
        "video_id": _video_id(job.key, quality),
        "path": _rel_video_path(job.key, quality),
        "label": "fake",
        "dataset": frames.get("dataset"),
        "method": config.method,
        "compression": quality,
        "source_video_id": frames_id,
        "target_video_id": identity,
        "split": frames.get("split"),
    }


def _error_rows(job: FakeJob, config: SynthConfig, code: str, message: str) -> list[dict]:
    return [
        {**_base_row(job, config, q), "status": "error", "error_code": code, "error": message, "meta": _meta(job, config, q)}
        for q in config.qualities
    ]


def _make(job: FakeJob, config: SynthConfig, ds: Path, out: Path) -> tuple[list[dict], list[dict]]:
    if job.frames_row is None:
        raise _JobError("source_missing", f"real video {job.pair.target.video_id} is not in {ds}")
    if config.method == "swap" and job.identity_row is None:
        raise _JobError("source_missing", f"identity donor {job.pair.source.video_id} is not in {ds}")
    rows = _track_rows(ds, job.pair.target)
    if not rows:
        raise _JobError("bad_input", f"track {job.pair.target.track_id} of {job.pair.target.video_id} has no faces")
    plan = plan_track(rows, config.per_video, config.smooth)
    video_path = ds / job.frames_row["path"]
    info = probe(video_path)
    crop_size = int(rows[0]["size"])
    rng = np.random.default_rng(job.seed)
    generator = _generator(job, config, ds, plan, crop_size, rng)
    harmonizer = _harmonizer(config.harmonizer, config.device) if config.blend == "dovenet" else None
    composer = Composer(
        generator, rng, config.blend, config.colour, config.region, config.mask_warp, config.deform, harmonizer, job.seed,
        # SBI's random blend ratio suits self-blending; a swapped face is pasted opaque
        blend_ratio=None if config.method == "self-blend" else 1.0,
    )

    masks: dict[int, bytes] = {}
    n_written = 0

    def fake_frames():
        nonlocal n_written
        for frame in iter_frames(video_path):
            if frame.index >= plan.end:
                return
            image = frame.image
            if frame.index in plan.landmarks:
                image, mask = composer(image, frame.index, plan.landmarks[frame.index])
                if frame.index in plan.rows:
                    masks[frame.index] = encode_mask(warp_crop(mask, plan.rows[frame.index]["matrix"], crop_size))
            n_written += 1
            yield image

    fakes = out / FAKES_DIR
    lossless = fakes / "c0" / f"{job.key}.mp4" if "c0" in config.qualities else fakes / f".lossless-{job.key}.mp4"
    # lossless whatever the preset: the fastest one only costs disk
    write_video(fake_frames(), lossless, fps=info.fps, crf=crf_for_quality("c0"), preset="veryfast")
    try:
        if n_written != plan.end:
            raise _JobError("truncated", f"{video_path} ended after {n_written} frames; the fake needs {plan.end}")
        video_rows, face_rows = [], []
        for quality in config.qualities:
            path = fakes / quality / f"{job.key}.mp4"
            if quality != "c0":
                with atomic_output(path) as tmp:
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
    vid = _video_id(job.key, quality)
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
        out.append({
            **{k: row[k] for k in ("track_id", "score", "x1", "y1", "x2", "y2", "landmarks", "matrix", "crop", "size")},
            "face_id": face_id(vid, frame.index, row["track_id"]),
            "video_id": vid,
            "frame_index": frame.index,
            "timestamp": frame.timestamp,
            "image_format": config.image_format,
            "image": encode_image(crop, config.image_format),
            "mask": masks[frame.index],
            "mask_source": "synth",
            "label": "fake",
            "split": split,
        })
    return out


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


# ----------------------------------------------------------------------------- the run


def _copy_reals(ds: Path, out: Path, video_ids: set[str]) -> None:
    """The real videos the fakes come from, as rows of DS2 (path re-rooted, faces copied),
    so DS2 is a complete benchmark: reals and fakes, pairs resolvable."""
    rows = [r for r in read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist() if r["video_id"] in video_ids]
    for row in rows:
        vid = row["video_id"]
        if vid in part_keys(out, "videos"):
            continue
        src_faces = part_path(ds, "faces", vid)
        if src_faces.is_file():
            dst = part_path(out, "faces", vid)
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.parent / f".tmp-copy-{dst.name}"
            shutil.copyfile(src_faces, tmp)
            os.replace(tmp, dst)
        row["path"] = relative_path(ds / row["path"], out)
        write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(out, "videos", vid))


def synthesize(
    ds: str | Path,
    out: str | Path,
    config: SynthConfig | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> SynthSummary:
    """Make the fakes `config` asks for from the real dataset `ds` into `out` (DS2).

    Raises ValueError / ParamsMismatch before any work on bad arguments or when `out` was
    made with other parameters; bad inputs of single fakes become error rows."""
    from dfpipe.runtime.parallel import Task, dask_client, run_tasks
    from dfpipe.runtime.runinfo import check_params, record_stage

    config = config or SynthConfig()
    ds, out = Path(ds), Path(out)
    if not (ds / "videos").is_dir():
        raise ValueError(f"{ds} is not a dataset directory (no videos/ folder); run `dfpipe extract` first")
    if ds.absolute() == out.absolute():
        raise ValueError("--out must be a new dataset directory, not the real dataset itself")
    if config.blend == "dovenet":
        _harmonizer(config.harmonizer, config.device)  # a bad checkpoint fails here, before any work
    check_params(out, "synthesize", {**config.output_params(), "source_dataset": str(ds.absolute())})
    started = time.perf_counter()
    jobs = plan_jobs(ds, config)
    out.mkdir(parents=True, exist_ok=True)
    record_stage(out, "synthesize", {**config.output_params(), "source_dataset": str(ds.absolute())})
    summary = SynthSummary(out=out, n_jobs=len(jobs))
    if config.include_reals:
        used = {r.video_id for j in jobs if j.pair for r in (j.pair.target, j.pair.source) if r is not None}
        _copy_reals(ds, out, used)
    done = part_keys(out, "videos")
    todo = [j for j in jobs if not all(_video_id(j.key, q) in done for q in config.qualities)]
    summary.n_skipped = len(jobs) - len(todo)
    if todo:
        with dask_client(workers, scheduler) as client:
            threads = 1 if client is not None else None
            tasks = [Task(j.key, make_fake, (j, config, str(ds.absolute()), str(out.absolute()), threads)) for j in todo]
            run_tasks(tasks, client, description=f"synthesize ({config.method})", progress=progress)
    _summarize(out, {j.key for j in jobs}, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _summarize(out: Path, keys: set[str], summary: SynthSummary) -> None:
    """Counts per fake (a failed fake has one error row per quality but counts once)."""
    failed: dict[str, dict] = {}
    rows = [r for r in read_table(out, "videos", VIDEOS_SCHEMA).to_pylist()
            if r["label"] == "fake" and r["video_id"].rsplit("-", 1)[0] in keys]
    for r in rows:
        key = r["video_id"].rsplit("-", 1)[0]
        if r["status"] == "ok":
            summary.n_videos += 1
            summary.n_faces += r["n_faces"] or 0
            summary.n_frames += r["n_frames"] or 0
        else:
            failed.setdefault(key, r)
    summary.n_ok = len({r["video_id"].rsplit("-", 1)[0] for r in rows if r["status"] == "ok"})
    for r in failed.values():
        summary.errors[r["error_code"]] = summary.errors.get(r["error_code"], 0) + 1
        summary.failed.append((r["path"], r["error_code"], r["error"] or ""))


__all__ = ["FakeJob", "SynthSummary", "make_fake", "plan_jobs", "synthesize"]
