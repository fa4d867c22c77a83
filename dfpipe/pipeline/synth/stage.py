"""`synthesize` as a stage of the one stage runner (`dfpipe.runtime.stage.run_stage`).

A work item is one fake (`fake.FakeJob`); it is done when its videos parts exist for every
asked quality, so a re-run skips finished fakes. The real videos the fakes come from are
copied into DS2 once, before the fakes, so DS2 is a complete benchmark: reals and fakes,
pairs resolvable. A run with another `--seed` (and every other parameter the same) adds its
fakes to DS2: the seed is hashed into every key, so they sit next to the others, and
run.json lists every seed (`stages.synthesize.added.seed`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterable

from dfpipe.manifests.ids import relative_path
from dfpipe.manifests.parts import part_keys, part_path, read_table, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import VIDEOS_SCHEMA
from dfpipe.pipeline.synth.config import ADDED_PARAMS, SynthConfig
from dfpipe.pipeline.synth.fake import FakeJob, error_rows, fake_rows, harmonizer, plan_jobs, video_id, write_parts
from dfpipe.runtime.files import atomic_write
from dfpipe.runtime.stage import ItemError, Outcome, Stage, StageSummary, run_item, run_stage


class SynthStage(Stage[FakeJob]):
    """Fakes of the real dataset `ds` into `root` (DS2), as `config` asks."""

    name = "synthesize"
    unit = "fakes"
    steps = "frames"  # composed, then re-cut once per quality (`fake.py`)
    added_params = ADDED_PARAMS  # another seed adds its fakes to DS2

    def __init__(self, ds: str | Path, out: str | Path, config: SynthConfig) -> None:
        self.config = config
        self.ds = Path(ds)  # as given: planning's messages name it so
        self.root = Path(out)
        # workers read and write by absolute path (their working directory may differ)
        self.ds_dir, self.out_dir = self.ds.absolute(), self.root.absolute()

    def params(self) -> dict[str, Any]:
        return {**self.config.output_params(), "source_dataset": str(self.ds_dir)}

    def items(self) -> list[FakeJob]:
        return plan_jobs(self.ds, self.config)

    def key(self, job: FakeJob) -> str:
        return job.key

    def done(self) -> set[str]:
        """Fakes with a videos part in every quality (ids `<key>-<quality>`)."""
        parts = part_keys(self.root, "videos")
        keys = {p.rsplit("-", 1)[0] for p in parts}
        return {k for k in keys if all(video_id(k, q) in parts for q in self.config.qualities)}

    def prepare(self, items: list[FakeJob]) -> None:
        if self.config.include_reals:
            copy_reals(self.ds, self.root, set().union(*(j.real_ids() for j in items)))

    def setup_worker(self, on_worker: bool) -> None:
        if on_worker:
            from dfpipe.runtime.parallel import set_worker_threads

            set_worker_threads(1)
        if self.config.blend == "dovenet":
            harmonizer(self.config.harmonizer, self.config.device)  # a bad checkpoint fails here, before any work

    def process(self, job: FakeJob, on_worker: bool) -> None:
        if on_worker:  # again here: a worker that joined the cluster after setup
            from dfpipe.runtime.parallel import set_worker_threads

            set_worker_threads(1)
        write_parts(self.out_dir, *fake_rows(job, self.config, self.ds_dir, self.out_dir))

    def write_error(self, job: FakeJob, error: ItemError) -> None:
        write_parts(self.out_dir, error_rows(job, self.config, error.code, error.message), [])

    def outcomes(self, keys: Iterable[str]) -> list[Outcome]:
        """One outcome per fake, whatever its number of qualities: a failed fake has one
        error row per quality but counts once."""
        rows = {r["video_id"]: r for r in read_table(self.root, "videos", VIDEOS_SCHEMA).to_pylist()}
        outcomes = []
        for key in keys:
            own = [rows[v] for v in (video_id(key, q) for q in self.config.qualities) if v in rows]
            if not own:
                continue
            ok = [r for r in own if r["status"] == "ok"]
            counts = {"fake videos": len(ok), "faces": sum(r["n_faces"] or 0 for r in ok),
                      "frames": sum(r["n_frames"] or 0 for r in ok)}
            failed = next((r for r in own if r["status"] != "ok"), None)
            if failed is None:
                outcomes.append(Outcome(key, "ok", own[0]["path"], counts=counts))
            else:
                outcomes.append(Outcome(key, "error", failed["path"], failed["error_code"], failed["error"], counts))
        return outcomes


def copy_reals(ds: Path, out: Path, video_ids: set[str]) -> None:
    """The real videos the fakes come from, as rows of DS2 (path re-rooted, faces copied)."""
    rows = [r for r in read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist() if r["video_id"] in video_ids]
    done = part_keys(out, "videos")
    for row in rows:
        vid = row["video_id"]
        if vid in done:
            continue
        src_faces = part_path(ds, "faces", vid)
        if src_faces.is_file():
            with atomic_write(part_path(out, "faces", vid)) as tmp:
                shutil.copyfile(src_faces, tmp)
        row["path"] = relative_path(ds / row["path"], out)
        write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(out, "videos", vid))


def synthesize(
    ds: str | Path,
    out: str | Path,
    config: SynthConfig | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> StageSummary:
    """Make the fakes `config` asks for from the real dataset `ds` into `out` (DS2).

    Raises ValueError / ParamsMismatch before any work on bad arguments or when `out` was
    made with other parameters (another seed is no mismatch: its fakes are added to `out`);
    a fake that fails gets error rows, and the run goes on."""
    config = config or SynthConfig()
    ds, out = Path(ds), Path(out)
    if not (ds / "videos").is_dir():
        raise ValueError(f"{ds} is not a dataset directory (no videos/ folder); run `dfpipe extract` first")
    if ds.absolute() == out.absolute():
        raise ValueError("--out must be a new dataset directory, not the real dataset itself")
    return run_stage(SynthStage(ds, out, config), workers=workers, scheduler=scheduler, progress=progress)


def make_fake(job: FakeJob, config: SynthConfig, ds: str | Path, out: str | Path) -> str:
    """Make one planned fake into `out` under the stage's error policy; its status."""
    return run_item(SynthStage(ds, out, config), job, on_worker=False)
