"""What `extract` works on: video or image files, folders of them, or an ingested dataset directory,
expanded into one `VideoJob` per distinct video (content id), in a stable order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from dfpipe.manifests.ids import video_content_id
from dfpipe.manifests.parts import list_parts, read_table
from dfpipe.manifests.schema import VIDEOS_SCHEMA
from dfpipe.pipeline.video.still import IMAGE_EXTENSIONS

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".mts", ".ogv",
}
#: what a folder given to extract is searched for: videos and still images (one frame each)
MEDIA_EXTENSIONS = frozenset(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)


@dataclass
class VideoJob:
    """One video to extract: where it is, its id, and what ingest already knew."""

    path: Path
    video_id: str
    prior: dict[str, Any] = field(default_factory=dict)
    duplicate_of: str | None = None  # a second path with the content of this video id


def is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and (path / "videos").is_dir() and bool(list_parts(path, "videos"))


def collect_jobs(inputs: Sequence[str | Path]) -> tuple[list[VideoJob], list[tuple[Path, str]]]:
    """Expand inputs (files, folders, dataset directories) into jobs, in a stable order.

    Returns the jobs and the duplicates (path, id of the first path with that content).
    Raises ValueError for an input that does not exist or a folder without a video: the
    user's argument is wrong, so nothing is started. (A video a dataset lists that has gone
    missing since is an error row of its own.)
    """
    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing:  # a path the user typed: a bad argument, refused before any work
        raise ValueError(f"no such file or folder: {', '.join(missing)}")
    jobs: list[VideoJob] = []
    seen: dict[str, Path] = {}
    duplicates: list[tuple[Path, str]] = []
    for item in inputs:
        item = Path(item)
        if is_dataset_dir(item):
            candidates = list(_dataset_jobs(item))
        elif item.is_dir():
            files = media_files(item)
            if not files:
                raise ValueError(no_media_message(item))
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


def media_files(folder: Path) -> list[Path]:
    """The videos and images below `folder` (any depth), hidden files left out, sorted."""
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in MEDIA_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def no_media_message(folder: Path) -> str:
    return (f"{folder} holds no video or image file (looked for {', '.join(sorted(VIDEO_EXTENSIONS))} and "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}, in subfolders too) and is not a dataset directory")


def _dataset_jobs(root: Path) -> Iterator[VideoJob]:
    """Rows an ingest wrote (`status=pending`) or earlier extracts, as jobs."""
    table = read_table(root, "videos", VIDEOS_SCHEMA)
    for row in sorted(table.to_pylist(), key=lambda r: r["video_id"]):
        yield VideoJob((root / row["path"]).resolve() if not Path(row["path"]).is_absolute() else Path(row["path"]), row["video_id"], row)


def largest_first(jobs: list[VideoJob]) -> list[VideoJob]:
    """Jobs by file size, largest first (a stand-in for length): workers take videos in
    this order, so a long video does not start last and keep one worker busy alone."""

    def size(job: VideoJob) -> int:
        try:
            return job.path.stat().st_size
        except OSError:
            return 0

    return sorted(jobs, key=size, reverse=True)  # stable: equal sizes keep input order
