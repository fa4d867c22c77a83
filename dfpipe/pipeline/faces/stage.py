"""`dfpipe extract`: decode, detect, track and align faces into `videos/` and `faces/`, as a stage.

Work item = one distinct video of the inputs (files, folders, or an ingested dataset
directory); a second path with the same content is an item too, whose row says
`duplicate`. `faces/video.py` does one video; the stage runner (`runtime/stage.py`)
skips finished videos, refuses other parameters, maps the videos over Dask and turns
failures into error rows. Fakes with a source in the dataset run after it and reuse its
crops' geometry. Every process loads the detector (and Face Mesh) before its first video,
so weights or a device it cannot use stop the run before anything is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pyarrow.parquet as pq

from dfpipe.manifests.ids import path_id
from dfpipe.manifests.parts import part_keys, part_path, read_table, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import HOW_TO_LABEL, VIDEOS_SCHEMA
from dfpipe.pipeline.faces.config import ExtractConfig
from dfpipe.pipeline.faces.inputs import VideoJob, collect_jobs, is_dataset_dir, largest_first
from dfpipe.pipeline.faces.video import error_row, extract_video_parts
from dfpipe.runtime.stage import ItemError, Outcome, Stage, StageSummary, run_item, run_stage


IMAGE_SECONDS = 0.3  # a still image's extract, rounded up (`ExtractStage.work_seconds`)


@dataclass
class ExtractStage(Stage[VideoJob]):
    root: Path
    config: ExtractConfig
    jobs: list[VideoJob] = field(default_factory=list)
    name = "extract"
    unit = "videos"
    steps = "frames"  # sampled frames through the detector (`rows.py`)

    def params(self) -> dict[str, Any]:
        return self.config.output_params()

    def weights(self) -> dict[str, str]:
        """The sha256 of the detector's weights and, with the mesh on, Face Mesh's and the
        canonical face's, found (or fetched) here: a missing file or one that fails its pinned
        hash stops the run before any work. Needs no torch, so the client of a cluster never
        imports it."""
        from dfpipe.runtime.weights import weights_record

        record = {} if self.config.detector == "mtcnn" else weights_record(f"retinaface_{self.config.detector}",
                                                                          self.config.weights)
        if self.config.mesh != "none":
            record |= weights_record("facemesh") | weights_record("facemesh_canonical")
        return record

    def items(self) -> list[VideoJob]:
        return largest_first(self.jobs)

    def key(self, item: VideoJob) -> str:
        return item.video_id

    def done(self) -> set[str]:
        if not part_keys(self.root, "videos"):
            return set()
        table = read_table(self.root, "videos", VIDEOS_SCHEMA, columns=["video_id", "status"])
        return {r["video_id"] for r in table.to_pylist() if r["status"] in ("ok", "error")}

    def after(self, item: VideoJob) -> tuple[str, ...]:
        src = item.prior.get("source_video_id")
        return (src,) if src else ()  # a fake waits for its source, whose crops it reuses

    def work_seconds(self, item: VideoJob) -> float | None:
        """A still image is one frame: 0.1-0.45 s on one core (detect, mesh, align, write; 11
        photos of 0.08-1.4 MP, 1-8 faces). A video's length is not known before decoding."""
        from dfpipe.pipeline.video.still import is_image

        return IMAGE_SECONDS if is_image(item.path) else None

    def setup_worker(self, on_worker: bool) -> None:
        """Build this process's detector (cached for its videos); on a worker, with the one
        thread per process its videos will run with."""
        from dfpipe.pipeline.faces.rows import detector_for, mesher_for

        if on_worker:
            from dfpipe.runtime.parallel import set_worker_threads

            set_worker_threads(1)
        detector_for(self.config)
        if self.config.mesh != "none":
            mesher_for(self.config)

    def process(self, item: VideoJob, on_worker: bool) -> None:
        if item.duplicate_of is not None:
            raise ItemError("duplicate", f"same content as video {item.duplicate_of}; extracted once")
        if on_worker:
            from dfpipe.runtime.parallel import set_worker_threads

            set_worker_threads(1)  # keeps freed memory too
        else:
            from dfpipe.runtime.allocator import keep_freed_memory

            keep_freed_memory()
        # a single-threaded worker decodes inline; the serial path decodes ahead in a thread
        extract_video_parts(item, self.config, self.root, decode_ahead=not on_worker)

    def write_error(self, item: VideoJob, error: ItemError) -> None:
        part_path(self.root, "faces", item.video_id).unlink(missing_ok=True)  # from a killed earlier try
        write_part_atomic(rows_to_table([error_row(item, self.root, error)], VIDEOS_SCHEMA),
                          part_path(self.root, "videos", item.video_id))

    def outcomes(self, keys: Iterable[str]) -> list[Outcome]:
        wanted = set(keys)
        return [_outcome(r) for r in read_table(self.root, "videos", VIDEOS_SCHEMA).to_pylist() if r["video_id"] in wanted]


def _outcome(row: dict[str, Any]) -> Outcome:
    ok = row["status"] == "ok"
    counts = {"sampled frames": row["n_sampled"] or 0, "faces": row["n_faces"] or 0, "tracks": row["n_tracks"] or 0,
              "videos without faces": int(ok and not row["n_faces"])}
    meta = json.loads(row["meta"] or "{}") if ok else {}
    note = f"truncated, {row['n_sampled']} sampled frame(s) kept: {meta['truncated']}" if meta.get("truncated") else None
    return Outcome(row["video_id"], row["status"], row["path"], row["error_code"], row["error"], counts,
                   meta.get("dropped", {}), note)


def _stage(videos: Sequence[str | Path], out: str | Path | None, config: ExtractConfig) -> ExtractStage:
    """The stage for these inputs; ValueError on bad arguments (before any work)."""
    if not videos:
        raise ValueError("no inputs: give video files, folders or a dataset directory")
    if out is None:
        if len(videos) == 1 and is_dataset_dir(Path(videos[0])):
            out = videos[0]
        else:
            raise ValueError("--out is required unless the single input is a dataset directory")
    jobs, duplicates = collect_jobs(videos)
    jobs += [VideoJob(path, path_id(path, "dup-"), duplicate_of=first) for path, first in duplicates]
    return ExtractStage(Path(out), config, jobs)


def extract(
    videos: Sequence[str | Path],
    out: str | Path | None = None,
    config: ExtractConfig | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> StageSummary:
    """Extract faces from every input video into the dataset directory `out`.

    `videos` are files, folders (searched recursively for video files) or dataset
    directories whose `videos/` rows an ingest wrote; `out` defaults to the single
    dataset directory given. Raises ValueError on bad arguments and ParamsMismatch before
    any work if `out` was made with other parameters.
    """
    stage = _stage(videos, out, config or ExtractConfig())
    summary = run_stage(stage, workers=workers, scheduler=scheduler, progress=progress)
    note = unlabelled_note(stage.jobs)
    if note:
        summary.notes.append(note)
    return summary


def unlabelled_note(jobs: Sequence[VideoJob]) -> str | None:
    """What to say when inputs came without labels: detectors, masks and synthesis need
    them, and only ingest gives them."""
    n = sum(1 for job in jobs if job.duplicate_of is None and job.prior.get("label") in (None, "unknown"))
    if not n:
        return None
    return (f"{n} input(s) have no label (label=unknown); masks, synthesize, train and evaluate need real and fake: "
            f"{HOW_TO_LABEL}")


def extract_video(job: VideoJob, config: ExtractConfig, root: str | Path, on_worker: bool = False) -> dict[str, Any]:
    """One video through the stage, as a worker runs it: its parts (or its error row) are
    written; returns the small summary of its videos row."""
    stage = ExtractStage(Path(root), config, [job])
    run_item(stage, job, on_worker)
    (row,) = pq.read_table(part_path(stage.root, "videos", job.video_id)).to_pylist()
    return {k: row.get(k) for k in ("video_id", "path", "status", "error_code", "error", "n_faces", "n_tracks", "n_sampled")}
