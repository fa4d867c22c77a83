"""One dataset directory from several: the reals and every fakes dataset of a benchmark.

Training and evaluation read one dataset directory; a benchmark makes its fakes in one
dataset per synthesis plan. `merge_datasets` gathers their `videos/` and `faces/` parts into
`out`: each video's faces part is hard-linked where the file system allows (a copy
elsewhere), its `videos/` row re-rooted so its `path` still reaches the file, and written
last, as the video's completion marker. A video id met twice (the reals each plan carries
along) is taken once: from the first input that has it extracted and labelled. Re-running adds what the
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


def _rank(row: dict) -> tuple[bool, bool]:
    return row["status"] == "ok", row.get("label") in ("real", "fake")


def merge_datasets(inputs: Sequence[str | Path], out: str | Path,
                   keep: Callable[[Path, dict], bool] | None = None, tables: Sequence[str] = ()) -> MergeSummary:
    """Gather the videos and faces of the dataset directories `inputs` into `out`; `keep`
    (input, videos row) -> bool leaves out the videos it refuses; `tables` names other
    per-video tables whose part of each merged video comes along."""
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
    # of one video's rows, an extracted one wins over a pending or failed one, then a
    # labelled one over an unlabelled one (a folder extracted as it was), then the first
    chosen: dict[str, tuple[Path, dict]] = {}
    for ds in inputs:
        for row in read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist():
            vid = row["video_id"]
            if vid in done or (keep is not None and not keep(ds, row)):
                continue
            if vid not in chosen or _rank(row) > _rank(chosen[vid][1]):
                chosen[vid] = (ds, row)
    for vid in sorted(chosen):
        ds, row = chosen[vid]
        for table in ("faces", *tables):
            part = part_path(ds, table, vid)
            if part.is_file():
                link_or_copy(part, part_path(out, table, vid))
        row["path"] = relative_path(ds / row["path"], out)
        write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(out, "videos", vid))
        summary.added += 1
        summary.by_input[str(ds)] = summary.by_input.get(str(ds), 0) + 1
    return summary


def merge(datasets: Sequence[str | Path], out: str | Path) -> MergeSummary:
    """`dfpipe merge DS1 DS2 ... --out DS`: one dataset directory of several, for training
    or scoring them together.

    Video ids are content hashes, so a video two inputs share is one video (taken once, an
    extracted row first); each keeps its label, lineage and split, and its faces (with
    their masks) and its `masks/` row come along. Quality scores and the splits a training
    run kept (`DS/splits/`) do not: score and train on the merged dataset itself. Re-running
    adds what the inputs gained; `out`'s run.json names the inputs."""
    from dfpipe.manifests.schema import MASKS_TABLE
    from dfpipe.runtime.runinfo import read_run, record_stage

    if not datasets:
        raise ValueError("name at least one dataset directory to merge")
    summary = merge_datasets(datasets, out, tables=(MASKS_TABLE,))
    earlier = read_run(out).get("stages", {}).get("merge", {}).get("params", {}).get("inputs", [])
    inputs = list(dict.fromkeys([*earlier, *(str(Path(d).resolve()) for d in datasets)]))
    record_stage(out, "merge", {"inputs": inputs})
    return summary


__all__ = ["MergeSummary", "link_or_copy", "merge", "merge_datasets"]
