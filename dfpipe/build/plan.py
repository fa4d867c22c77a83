"""The steps of a benchmark build, in order, with what each reads and writes.

A step is one stage call on one output: `ingest:<source>`, `extract`, `splits`,
`synth:<plan>`, `merge`, `masks`, `quality`, `benchmark` (with a `reencode` plan),
`train:<detector>`, `external:<source>`, `evaluate:<detector>`, `card`. Its digest covers the recipe sections it reads and the
digests of the steps it needs, so a changed section changes every step downstream of it
and nothing else. Its `output` is what a rebuild of the step deletes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from dfpipe.build.recipe import Recipe

#: the step groups `--only` accepts, in build order
GROUPS = ("ingest", "extract", "splits", "synth", "merge", "masks", "quality", "train", "external", "evaluate", "card")


@dataclass(frozen=True)
class Layout:
    """Where a build under `out` keeps each stage's dataset directory."""

    out: Path

    @property
    def reals(self) -> Path:
        return self.out / "reals"

    @property
    def dataset(self) -> Path:
        return self.out / "dataset"

    @property
    def benchmark(self) -> Path:
        """What detectors see when the reals are re-encoded: `dataset/` without the raw reals."""
        return self.out / "benchmark"

    @property
    def card(self) -> Path:
        return self.out / "card"

    @property
    def state(self) -> Path:
        return self.out / "build.json"

    def source(self, name: str) -> Path:
        return self.out / "sources" / name

    def fakes(self, plan: str) -> Path:
        return self.out / "fakes" / plan

    def run(self, detector: str) -> Path:
        return self.out / "train" / detector

    def external(self, name: str) -> Path:
        return self.out / "external" / name

    def evaluation(self, detector: str) -> Path:
        return self.out / "eval" / detector


@dataclass(frozen=True)
class Step:
    name: str
    group: str
    sections: tuple[str, ...]  # recipe sections it reads
    needs: tuple[str, ...]  # steps that must be done first
    outputs: tuple[Path, ...]  # deleted when the step is rebuilt
    own: str = ""  # its own entry of a list section (one synthesis plan, one detector)
    digest: str = ""


def plan_steps(recipe: Recipe, out: str | Path) -> list[Step]:
    """Every step of `recipe` built under `out`, in order, with digests."""
    lay = Layout(Path(out))
    steps: list[Step] = []
    ingests = []
    for s in recipe.sources:
        # a source by its resolved root, so `videos/` and `/abs/videos` are one source
        steps.append(Step(f"ingest:{s.name}", "ingest", (), (), (lay.source(s.name),), _own(s)))
        ingests.append(steps[-1].name)
    steps.append(Step("extract", "extract", ("extract",), tuple(ingests), (lay.reals,)))
    # splits come before synthesis: a swap pairs two people of one split, so no fake ties splits together
    steps.append(Step("splits", "splits", (), ("extract",), ()))
    synths = []
    for p in recipe.synthesis:
        steps.append(Step(f"synth:{p.name}", "synth", (), ("splits",), (lay.fakes(p.name),), _own(p.config)))
        synths.append(steps[-1].name)
    steps.append(Step("merge", "merge", (), ("splits", *synths), (lay.dataset,)))
    steps.append(Step("masks", "masks", (), ("merge",), ()))
    last = "masks"
    if recipe.quality is not None:
        steps.append(Step("quality", "quality", ("quality",), ("masks",), (lay.dataset / "quality",)))
        last = "quality"
    if reencodes_reals(recipe):
        steps.append(Step("benchmark", "merge", (), (last,), (lay.benchmark,)))
        last = "benchmark"
    trains = []
    for d in recipe.detectors:
        steps.append(Step(f"train:{d.name}", "train", (), (last,), (lay.run(d.name),),
                          _own({"model": d.model, **d.options})))
        trains.append(steps[-1].name)
    externals = []
    for s in recipe.evaluate.external:
        steps.append(Step(f"external:{s.name}", "external", ("extract",), (), (lay.external(s.name),), _own(s)))
        externals.append(steps[-1].name)
    evals = []
    for d, t in zip(recipe.detectors, trains):
        steps.append(Step(f"evaluate:{d.name}", "evaluate", (), (t, *externals), (lay.evaluation(d.name),),
                          _own(list(recipe.evaluate.splits))))
        evals.append(steps[-1].name)
    steps.append(Step("card", "card", ("card", "name"), (last, *evals), (lay.card,)))
    return _with_digests(steps, recipe)


def reencodes_reals(recipe: Recipe) -> bool:
    """Whether a `reencode` plan puts the reals at the fakes' qualities."""
    return any(p.config.method == "reencode" for p in recipe.synthesis)


def training_set(recipe: Recipe, lay: Layout) -> Path:
    """The dataset detectors train and are evaluated on: `benchmark/` when the reals are
    re-encoded (the raw reals stay in `dataset/` as the fakes' sources for masks and
    quality), else `dataset/`."""
    return lay.benchmark if reencodes_reals(recipe) else lay.dataset


def _own(value: object) -> str:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    return json.dumps(value, sort_keys=True, default=str)


def _with_digests(steps: list[Step], recipe: Recipe) -> list[Step]:
    by_name: dict[str, Step] = {}
    out = []
    for step in steps:
        parts = [step.name, step.own, *(f"{s}={recipe.section_digest(s)}" for s in step.sections),
                 *(by_name[n].digest for n in step.needs)]
        digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
        done = dataclasses.replace(step, digest=digest)
        by_name[step.name] = done
        out.append(done)
    return out


def parse_only(value: str | None) -> tuple[str, ...] | None:
    """`--only synth,quality` as groups; ValueError naming the unknown one."""
    if not value:
        return None
    groups = tuple(g.strip() for g in value.split(",") if g.strip())
    for g in groups:
        if g not in GROUPS:
            raise ValueError(f"--only: unknown step {g!r}; one of {', '.join(GROUPS)}")
    return groups


__all__ = ["GROUPS", "Layout", "Step", "parse_only", "plan_steps"]
