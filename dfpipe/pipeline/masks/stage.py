"""`dfpipe masks DS`: manipulation masks for every extracted fake, as a stage.

Work item = one fake video with status ok. Its faces part gets its masks
(`masks/video.py`), then its `masks/` row is written: the completion marker, with the
faces by mask source, or the error row of a fake that could not be masked. A rerun
skips fakes with a row; other parameters are refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from dfpipe.manifests.parts import part_keys, read_table, write_rows
from dfpipe.manifests.schema import MASKS_SCHEMA, MASKS_TABLE, VIDEOS_SCHEMA
from dfpipe.pipeline.masks.pairmask import PairMaskConfig
from dfpipe.pipeline.masks.video import mask_video
from dfpipe.runtime.stage import ItemError, Outcome, Stage, StageSummary, run_stage

#: mask sources and their count columns in `masks/`
_SOURCE_COLUMNS = {"shipped": "n_shipped", "pair": "n_pair", "landmarks": "n_landmarks", "mesh": "n_mesh"}


@dataclass
class MasksStage(Stage[dict]):
    root: Path
    config: PairMaskConfig
    name = "masks"
    unit = "fakes"

    def params(self) -> dict[str, Any]:
        return asdict(self.config)

    def videos(self) -> list[dict]:
        return read_table(self.root, "videos", VIDEOS_SCHEMA).to_pylist()

    def items(self) -> list[dict]:
        return [v for v in self.videos() if v["label"] == "fake" and v["status"] == "ok"]

    def key(self, item: dict) -> str:
        return item["video_id"]

    def done(self) -> set[str]:
        return part_keys(self.root, MASKS_TABLE)

    def process(self, item: dict, on_worker: bool) -> None:
        masked = mask_video(self.root, item, self.config)
        counts = {col: masked.sources.get(src, 0) for src, col in _SOURCE_COLUMNS.items()}
        row = {"video_id": item["video_id"], "status": "ok", "n_faces": sum(masked.sources.values()),
               "note": masked.note, **counts}
        write_rows(self.root, MASKS_TABLE, item["video_id"], [row], MASKS_SCHEMA)

    def write_error(self, item: dict, error: ItemError) -> None:
        row = {"video_id": item["video_id"], "status": "error", "error_code": error.code, "error": error.message}
        write_rows(self.root, MASKS_TABLE, item["video_id"], [row], MASKS_SCHEMA)

    def outcomes(self, keys: Iterable[str]) -> list[Outcome]:
        wanted = set(keys)
        if not wanted or not part_keys(self.root, MASKS_TABLE):
            return []
        paths = {v["video_id"]: v["path"] for v in self.videos()}
        rows = read_table(self.root, MASKS_TABLE, MASKS_SCHEMA).to_pylist()
        return [
            Outcome(
                key=r["video_id"], status=r["status"], name=paths.get(r["video_id"], r["video_id"]),
                error_code=r["error_code"], error=r["error"], note=r["note"],
                counts={f"faces masked from {src}": r[col] for src, col in _SOURCE_COLUMNS.items() if r[col]},
            )
            for r in rows
            if r["video_id"] in wanted
        ]


def masks(
    root: str | Path,
    config: PairMaskConfig | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> StageSummary:
    """Masks for every extracted fake of dataset directory `root` (see the module docstring).

    Raises FileNotFoundError when `root` is no dataset directory, ParamsMismatch when it was
    masked with other parameters."""
    root = Path(root)
    if not (root / "videos").is_dir():
        raise FileNotFoundError(f"{root}: not a dataset directory (no videos/)")
    stage = MasksStage(root, config or PairMaskConfig())
    pending = [v for v in stage.videos() if v["label"] == "fake" and v["status"] == "pending"]
    summary = run_stage(stage, workers=workers, scheduler=scheduler, progress=progress)
    if pending:
        summary.notes.append(f"{len(pending)} fakes are not extracted yet (run dfpipe extract {root})")
    return summary


def mask_sources(summary: StageSummary) -> dict[str, int]:
    """{mask source: faces} of a masks run, for the one-line report."""
    prefix = "faces masked from "
    return {k[len(prefix):]: v for k, v in summary.counts.items() if k.startswith(prefix) and v}


__all__ = ["MasksStage", "masks", "mask_sources"]
