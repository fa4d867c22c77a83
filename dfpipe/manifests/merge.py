"""One dataset directory from several: the reals and every fakes dataset of a benchmark.

Training and evaluation read one dataset directory; a benchmark makes its fakes in one
dataset per synthesis plan. `merge_datasets` gathers their `videos/` and `faces/` parts into
`out`: each video's faces part is hard-linked where the file system allows (a copy
elsewhere), its `videos/` row re-rooted so its `path` still reaches the file, and written
last, as the video's completion marker. A video id met twice (the reals each plan carries
along) is taken once, from the first input that has it extracted. Re-running adds what the
inputs gained since; later stages (masks, quality) then run on `out` itself.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from dfpipe.manifests.ids import relative_path
from dfpipe.manifests.parts import part_path, read_table, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import VIDEOS_SCHEMA
from dfpipe.runtime.files import atomic_write


@dataclass
class MergeSummary:
    out: Path
    added: int = 0  # videos written by this run
    kept: int = 0  # already in `out`
    by_input: dict[str, int] = field(default_factory=dict)


def link_or_copy(src: Path, dst: Path) -> None:
    """`dst` holds `src`'s bytes, atomically: a hard link when possible (no second copy of
    the crops; stages that change a part write a new file, so the source stays as it was)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dst) as tmp:
        try:
            tmp.unlink(missing_ok=True)
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def merge_datasets(inputs: Sequence[str | Path], out: str | Path,
                   keep: Callable[[Path, dict], bool] | None = None) -> MergeSummary:
    """Gather the videos and faces of the dataset directories `inputs` into `out`; `keep`
    (input, videos row) -> bool leaves out the videos it refuses."""
    out = Path(out)
    inputs = [Path(p) for p in inputs]
    for ds in inputs:
        if not (ds / "videos").is_dir():
            raise FileNotFoundError(f"{ds}: not a dataset directory (no videos/)")
        if ds.absolute() == out.absolute():
            raise ValueError(f"{out}: the merged dataset cannot also be one of its inputs")
    summary = MergeSummary(out)
    # a video `out` holds extracted is final; a pending one may have been extracted since
    done = {r["video_id"] for r in read_table(out, "videos", VIDEOS_SCHEMA, columns=["video_id", "status"]).to_pylist()
            if r["status"] == "ok"} if (out / "videos").is_dir() else set()
    summary.kept = len(done)
    # an extracted row wins over a pending or failed one of the same video in a later input
    chosen: dict[str, tuple[Path, dict]] = {}
    for ds in inputs:
        for row in read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist():
            vid = row["video_id"]
            if vid in done or (keep is not None and not keep(ds, row)):
                continue
            if vid not in chosen or (chosen[vid][1]["status"] != "ok" and row["status"] == "ok"):
                chosen[vid] = (ds, row)
    for vid in sorted(chosen):
        ds, row = chosen[vid]
        faces = part_path(ds, "faces", vid)
        if faces.is_file():
            link_or_copy(faces, part_path(out, "faces", vid))
        row["path"] = relative_path(ds / row["path"], out)
        write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(out, "videos", vid))
        summary.added += 1
        summary.by_input[str(ds)] = summary.by_input.get(str(ds), 0) + 1
    return summary


__all__ = ["MergeSummary", "link_or_copy", "merge_datasets"]
