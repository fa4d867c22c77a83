"""`score_quality(DS)`: the `score-quality` stage on the one stage runner.

Work item = one extracted video (status ok) with its source's videos row. Its
`quality/frames` part and then its `quality/videos` part (the completion marker) are
written atomically, so a rerun resumes; a video that cannot be scored gets an error row
(and an empty frames part), and the run goes on.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from dfpipe.manifests.parts import part_keys, read_table, write_rows
from dfpipe.manifests.schema import (
    QUALITY_FRAMES_SCHEMA,
    QUALITY_FRAMES_TABLE,
    QUALITY_VIDEOS_SCHEMA,
    QUALITY_VIDEOS_TABLE,
    VIDEOS_SCHEMA,
)
from dfpipe.pipeline.quality.config import QualityConfig
from dfpipe.pipeline.quality.score import perceptual_model, row_head, score_video
from dfpipe.runtime.stage import ItemError, Outcome, Stage, StageSummary, run_stage

NAME = "score-quality"


@dataclass(frozen=True)
class VideoPair:
    """One video to score and its source's videos row (None: a real, or no source)."""

    video: dict[str, Any]
    source: dict[str, Any] | None


class QualityStage(Stage[VideoPair]):
    """Quality metrics of every extracted video of `root`, as `config` asks."""

    name = NAME
    unit = "videos"

    def __init__(self, root: str | Path, config: QualityConfig) -> None:
        self.root = Path(root)  # as given: the summary names it so
        self.out_dir = self.root.absolute()  # workers read and write by absolute path
        self.config = config
        self._weights: dict[str, str] | None = None
        self.gallery: dict[str, Any] = {}  # {real video_id: identity descriptor}, built in prepare

    def params(self) -> dict[str, Any]:
        return self.config.output_params()

    def weights(self) -> dict[str, str]:
        """The VGG-16 file's hash when LPIPS is asked, and the dlib files' for identity; raises
        WeightsError when a file is missing (DlibMissingError without dlib). Resolved once:
        hashing the VGG file again would read ~0.5 GB again."""
        if self._weights is None:
            weights: dict[str, str] = {}
            if "identity" in self.config.metrics:
                from dfpipe.pipeline.quality.identity import identity_weights

                weights.update(identity_weights())
            if "lpips" in self.config.metrics:
                from dfpipe.pipeline.quality.perceptual import VGG16_WEIGHTS, lpips_linear_path
                from dfpipe.runtime.weights import weights_record

                lpips_linear_path()
                weights.update(weights_record(VGG16_WEIGHTS, self.config.weights))
            self._weights = weights
        return self._weights

    def items(self) -> list[VideoPair]:
        videos = {v["video_id"]: v for v in read_table(self.root, "videos", VIDEOS_SCHEMA).to_pylist()}

        def source_of(v: dict) -> dict | None:
            src = videos.get(v.get("source_video_id") or "")
            return src if v["label"] == "fake" and src is not None and src["status"] == "ok" else None

        return [VideoPair(v, source_of(v)) for v in videos.values() if v["status"] == "ok"]

    def key(self, item: VideoPair) -> str:
        return item.video["video_id"]

    def done(self) -> set[str]:
        return part_keys(self.root, QUALITY_VIDEOS_TABLE)

    def setup_worker(self, on_worker: bool) -> None:
        if "lpips" in self.config.metrics:
            perceptual_model(self.config)  # the ~0.5 GB backbone, once per process
        if "identity" in self.config.metrics:
            from dfpipe.pipeline.quality.identity import descriptor_model

            descriptor_model()

    def prepare(self, items: list[VideoPair]) -> None:
        """The identity of every extracted real video (retrieval and id_to_source compare
        each fake face with them), once, here; the items carry it to the workers."""
        done = self.done()
        fakes_left = any(i.video["label"] == "fake" and self.key(i) not in done for i in items)
        if "identity" in self.config.metrics and not self.config.full_frame and fakes_left:
            from dfpipe.pipeline.quality.identity import build_gallery
            from dfpipe.pipeline.quality.score import _read_faces

            self.gallery = build_gallery(self.out_dir, [i.video for i in items], _read_faces)

    def process(self, item: VideoPair, on_worker: bool) -> None:
        self._write(item, *score_video(self.out_dir, item.video, item.source, self.config, self.gallery))

    def write_error(self, item: VideoPair, error: ItemError) -> None:
        head = row_head(item.video, item.source, self.config)
        self._write(item, [], {**head, "status": "error", "error_code": error.code, "error": error.message})

    def _write(self, item: VideoPair, frame_rows: list[dict], video_row: dict) -> None:
        vid = self.key(item)
        write_rows(self.out_dir, QUALITY_FRAMES_TABLE, vid, frame_rows, QUALITY_FRAMES_SCHEMA)
        write_rows(self.out_dir, QUALITY_VIDEOS_TABLE, vid, [video_row], QUALITY_VIDEOS_SCHEMA)  # last: the marker

    def outcomes(self, keys: Iterable[str]) -> list[Outcome]:
        wanted = set(keys)
        columns = ["video_id", "status", "error_code", "error", "n_frames"]
        rows = read_table(self.root, QUALITY_VIDEOS_TABLE, QUALITY_VIDEOS_SCHEMA, columns=columns).to_pylist()
        return [
            Outcome(
                key=r["video_id"], status=r["status"], name=r["video_id"], error_code=r["error_code"], error=r["error"],
                counts={"frames scored": r["n_frames"] or 0},
                note=r["error"] if r["status"] == "ok" else None,  # e.g. source_missing: Ewarp on its own flow
            )
            for r in rows
            if r["video_id"] in wanted
        ]


def score_quality(
    root: str | Path,
    config: QualityConfig | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    redo: bool = False,
) -> StageSummary:
    """Score every extracted video of `root` into `root/quality/` (resumable).

    Videos already scored are skipped when the parameters match; other parameters are
    refused (ParamsMismatch) unless `redo`, which clears `root/quality/` first. A missing
    weights file (WeightsError) is found before anything is cleared or scored.
    """
    from dfpipe.runtime.runinfo import ParamsMismatch, forget_stage

    root = Path(root)
    if not (root / "videos").is_dir():
        raise FileNotFoundError(f"{root}: not a dataset directory (no videos/)")
    config, skipped = usable_config(config or QualityConfig())
    stage = QualityStage(root, config)
    stage.weights()
    if redo:
        shutil.rmtree(root / "quality", ignore_errors=True)
    if not part_keys(root, QUALITY_VIDEOS_TABLE):  # no scores: an old record binds nothing
        forget_stage(root, NAME)
    try:
        summary = run_stage(stage, workers=workers, scheduler=scheduler, progress=progress)
    except ParamsMismatch as exc:
        raise ParamsMismatch(f"{exc} Or pass --redo to score again from scratch.") from None
    summary.notes[:0] = skipped
    return summary


def _check_identity(config: QualityConfig) -> None:
    from dfpipe.pipeline.quality.identity import identity_weights

    identity_weights()


def _check_lpips(config: QualityConfig) -> None:
    from dfpipe.pipeline.quality.perceptual import VGG16_WEIGHTS, lpips_linear_path
    from dfpipe.runtime.weights import resolve_weights

    lpips_linear_path()
    resolve_weights(VGG16_WEIGHTS, config.weights)


_CHECKS = {"identity": _check_identity, "lpips": _check_lpips}


def usable_config(config: QualityConfig) -> tuple[QualityConfig, list[str]]:
    """`config` without the optional metrics (`QualityConfig.optional`) whose install or
    weights are missing (offline: the VGG-16 file for lpips, dlib's for identity), and a
    note for each one left out. A metric the user named stays: its missing piece raises
    (DlibMissingError, WeightsError) before any work."""
    from dfpipe.models.face_descriptor import DlibMissingError
    from dfpipe.runtime.weights import WeightsError

    notes: list[str] = []
    optional = config.optional()  # of the list as asked, before any metric is left out
    for metric, check in _CHECKS.items():
        if metric not in config.metrics:
            continue
        try:
            check(config)
        except (DlibMissingError, WeightsError) as exc:
            if metric not in optional:
                raise
            kept = tuple(m for m in config.metrics if m != metric)
            config = dataclasses.replace(config, metrics=kept)
            notes.append(f"{metric} skipped: {str(exc).splitlines()[0]}")
    return config, notes


__all__ = ["QualityStage", "VideoPair", "score_quality", "usable_config"]
