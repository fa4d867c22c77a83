"""`dfpipe build RECIPE --out BENCH`: every stage of a benchmark, in-process, resumable.

Each step (`plan.py`) calls the stage's own Python function on its own dataset directory
under BENCH, so a re-run resumes inside a step item by item (the stages skip finished
videos, training continues from `last.pt`) and skips finished steps. `BENCH/build.json`
keeps, per step, the digest it was built with, its seconds and figures; beside it the
recipe as written, the package versions and the weights' hashes. A recipe section that
changed since its steps were built is refused by name, unless `rebuild_changed`, which
deletes those steps' outputs (and so everything downstream, whose digests changed too)
and builds them again.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from dfpipe.build.plan import Layout, Step, parse_only, plan_steps
from dfpipe.build.recipe import Recipe, load_recipe
from dfpipe.runtime.files import write_text_atomic
from dfpipe.runtime.parallel import ClusterError


class BuildError(RuntimeError):
    """A build that cannot go on: the message names the step and what to do. `code` is
    the CLI's exit status: 2 when refused before any work, 1 when a step failed."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class StepReport:
    name: str
    group: str
    status: str  # done (earlier run), built, to do, changed, not selected
    seconds: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    estimate: Any = None  # dry run: estimate.Estimate


@dataclass
class BuildReport:
    out: Path
    recipe: Recipe
    steps: list[StepReport]
    dry_run: bool = False

    @property
    def card(self) -> Path:
        return Layout(self.out).card / "index.html"


# ----------------------------------------------------------------------------- state


def read_state(out: str | Path) -> dict[str, Any]:
    path = Layout(Path(out)).state
    if not path.is_file():
        return {"steps": {}}
    return json.loads(path.read_text())


def _write_state(out: Path, state: dict[str, Any]) -> None:
    write_text_atomic(Layout(out).state, json.dumps(state, indent=2, sort_keys=True, default=str) + "\n")


def _record_provenance(recipe: Recipe, out: Path, state: dict[str, Any]) -> None:
    """The recipe as written, the versions and the weights' hashes the stages recorded."""
    from dfpipe.runtime.runinfo import package_versions, read_run

    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "recipe.yaml", recipe.path.read_text())
    state["recipe"] = {"name": recipe.name, "path": str(recipe.path), "raw": recipe.raw}
    state["versions"] = package_versions()
    weights: dict[str, Any] = {}
    lay = Layout(out)
    for root in (lay.reals, lay.dataset, *[lay.fakes(p.name) for p in recipe.synthesis]):
        for stage, entry in read_run(root).get("stages", {}).items():
            for key, value in (entry.get("weights") or {}).items():
                weights[key] = value
    state["weights"] = weights


# ----------------------------------------------------------------------------- build


def build(
    recipe: str | Path | Recipe,
    out: str | Path,
    only: str | Sequence[str] | None = None,
    dry_run: bool = False,
    rebuild_changed: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    on_step: Callable[[StepReport], None] | None = None,
) -> BuildReport:
    """Build (or resume) the benchmark `recipe` under `out`; see the module docstring.

    `only` names step groups (`synth,quality`); their earlier steps must be done. Raises
    RecipeError / ValueError before any work for a bad recipe or argument, BuildError for a
    changed recipe section (unless `rebuild_changed`) or a step that fails."""
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    out = Path(out)
    groups = parse_only(only) if isinstance(only, str) or only is None else parse_only(",".join(only))
    steps = plan_steps(recipe, out)
    state = read_state(out)
    done = state.get("steps", {})
    changed = [s for s in steps if s.name in done and done[s.name].get("digest") != s.digest]
    # steps of an earlier recipe that this one no longer has (a removed plan or detector)
    gone = [name for name in done if name not in {s.name for s in steps}]
    if dry_run:
        return _dry_run(recipe, out, steps, done, groups, changed)
    if (changed or gone) and not rebuild_changed:
        raise BuildError(_changed_message(recipe, steps, changed, gone, done), code=2)
    for name in gone:  # its outputs went with it (a removed plan's fakes, a removed detector's run)
        for path in done.pop(name).get("outputs", []):
            shutil.rmtree(path, ignore_errors=True)
    for step in changed:
        for path in step.outputs:
            shutil.rmtree(path, ignore_errors=True)
        done.pop(step.name, None)
    _check_only(steps, done, groups)
    reports = []
    out.mkdir(parents=True, exist_ok=True)
    from dfpipe.build.steps import run_step

    for step in steps:
        if step.name in done and done[step.name].get("status") == "done":
            report = StepReport(step.name, step.group, "done", done[step.name].get("seconds"),
                                done[step.name].get("figures", {}))
        elif groups is not None and step.group not in groups:
            report = StepReport(step.name, step.group, "not selected")
        else:
            if step.group == "card":  # the card shows the provenance: record it first
                _record_provenance(recipe, out, state)
                _write_state(out, state)
            # recorded before it runs, so a stopped step whose recipe entry changes is seen too
            done[step.name] = {"digest": step.digest, "status": "running", "outputs": [str(p) for p in step.outputs]}
            state["steps"] = done
            _write_state(out, state)
            started = time.perf_counter()
            try:
                figures = run_step(step, recipe, Layout(out), state, workers=workers, scheduler=scheduler,
                                   progress=progress)
            except BuildError:
                raise
            except ClusterError as exc:  # the cluster failed, not the step: its code (2: unreachable)
                raise BuildError(f"step {step.name}: {exc}", code=exc.code) from exc
            except (ValueError, RuntimeError, FileNotFoundError, ImportError) as exc:
                raise BuildError(f"step {step.name} failed: {exc}\n(fix it and re-run the same command: "
                                 "finished steps and items are kept)") from exc
            seconds = round(time.perf_counter() - started, 2)
            done[step.name].update(status="done", seconds=seconds, figures=figures,
                                   finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            state["steps"] = done
            _record_provenance(recipe, out, state)
            _write_state(out, state)
            report = StepReport(step.name, step.group, "built", seconds, figures)
        reports.append(report)
        if on_step:
            on_step(report)
    return BuildReport(out, recipe, reports)


def _check_only(steps: list[Step], done: dict[str, Any], groups: tuple[str, ...] | None) -> None:
    """With --only, every step a selected one needs must be built or selected too."""
    if groups is None:
        return
    selected = {s.name for s in steps if s.group in groups}
    for step in steps:
        if step.name not in selected:
            continue
        for need in step.needs:
            if need not in selected and done.get(need, {}).get("status") != "done":
                raise BuildError(f"--only {','.join(groups)}: {step.name} needs {need}, which is not built yet; "
                                 f"build without --only, or add {need.split(':')[0]} to --only", code=2)


def _changed_message(recipe: Recipe, steps: list[Step], changed: list[Step], gone: list[str],
                     done: dict[str, Any]) -> str:
    parts = []
    if changed:
        first = changed[0]
        sections = list(first.sections) or [first.group]
        parts.append(f"{', '.join(s.name for s in changed)} would be built again (first: {first.name}, which reads "
                     f"the recipe's {', '.join(sections)})")
    if gone:
        parts.append(f"{', '.join(gone)} left the recipe (their outputs would be deleted)")
    return (f"{recipe.path}: the recipe changed since this build: {'; '.join(parts)}. Re-run with --rebuild-changed "
            "to do so (other steps are kept), or build into a new --out.")


def _dry_run(recipe: Recipe, out: Path, steps: list[Step], done: dict[str, Any], groups, changed) -> BuildReport:
    from dfpipe.build.estimate import estimate_steps

    estimates = estimate_steps(recipe, out, steps, done)
    changed_names = {s.name for s in changed}
    reports = []
    for step in steps:
        if step.name in changed_names:
            status = "changed"
        elif done.get(step.name, {}).get("status") == "done":
            status = "done"
        elif groups is not None and step.group not in groups:
            status = "not selected"
        else:
            status = "to do"
        entry = done.get(step.name, {})
        reports.append(StepReport(step.name, step.group, status, entry.get("seconds"), entry.get("figures", {}),
                                  estimates.get(step.name)))
    return BuildReport(out, recipe, reports, dry_run=True)


__all__ = ["BuildError", "BuildReport", "StepReport", "build", "read_state"]
