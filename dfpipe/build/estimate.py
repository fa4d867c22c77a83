"""`dfpipe build --dry-run`: each step's work in its own unit, and the time it should take.

Work is counted from the sources themselves (files listed, frames sampled from probed
headers: at most `PROBE_AT_MOST` videos a source, the rest extrapolated from their mean) and
the recipe (fakes per plan, epochs). Time is work x a rate in seconds per unit: the rate
this build measured on an earlier finished step of the same kind when there is one, else
`CPU_RATES`, measured by building the demo recipe on a 2-core CPU (docs/benchmarks.md,
`bench/build.py`). The estimate says which it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfpipe.build.plan import Step
from dfpipe.build.recipe import Recipe, Source

#: probed videos per source; the others are assumed to be as long as these on average
PROBE_AT_MOST = 40

#: seconds per unit on a 2-core CPU: `python bench/build.py` on the demo recipe, 3 Dec 2026
#: (docs/benchmarks.md); tiny detectors, so `train` underestimates paper-size models
CPU_RATES = {
    "ingest": ("videos", 0.01),
    "extract": ("sampled frames", 0.18),
    "splits": ("videos", 0.22),
    "synth": ("fake frames", 0.37),
    "merge": ("videos", 0.01),
    "masks": ("fake videos", 0.39),
    "quality": ("fake frames", 0.36),
    "train": ("face-epochs", 0.031),
    "external": ("sampled frames", 0.18),
    "evaluate": ("faces", 0.08),
    "card": ("cards", 5.2),
}
#: paper-size detectors on the same CPU, s per face-epoch: a batch-4 step of M2TR @320 takes
#: 5.32 s and MAT @380 4.67 s (bench/train_step.py, docs/benchmarks.md, issue 6)
CPU_TRAIN_FULL = {"m2tr": 5.32 / 4, "mat": 4.67 / 4}


@dataclass
class Estimate:
    units: float | None
    unit: str
    seconds: float | None
    basis: str  # "measured here", "CPU rate", or why there is no estimate


@dataclass
class SourceWork:
    videos: int
    reals: int
    fakes: int
    sampled: float  # frames extract samples, all videos


def source_work(source: Source, config) -> SourceWork:
    """Videos (real / fake) and sampled frames of one source, from a listing and probes."""
    from dfpipe.pipeline.faces.video import expected_samples
    from dfpipe.pipeline.video.probe import probe

    entries = _entries(source)
    labels = [label for _, label in entries]
    samples = []
    for path, _ in entries[:PROBE_AT_MOST]:
        try:
            samples.append(expected_samples(config, probe(path)))
        except Exception:  # an unreadable file is extract's error row, not the estimate's
            samples.append(0)
    mean = sum(samples) / len(samples) if samples else 0.0
    return SourceWork(len(entries), labels.count("real"), labels.count("fake"), mean * len(entries))


def _entries(source: Source) -> list[tuple[Path, str]]:
    from dfpipe.pipeline.faces.inputs import media_files

    if source.kind == "reals":
        return [(p, "real") for p in media_files(source.root)]
    if source.kind == "folders":
        from dfpipe.pipeline.ingest.folders import list_folders

        return [(e.path, e.label) for e in list_folders(source.root)]
    if source.kind == "list":
        from dfpipe.pipeline.ingest.listing import list_listing

        return [(e.path, e.label) for e in list_listing(source.root)[0]]
    if source.kind == "ff++":
        from dfpipe.pipeline.ingest.ffpp import DEFAULT_COMPRESSION, list_ffpp

        return [(e.path, e.label) for e in list_ffpp(source.root, source.compression or DEFAULT_COMPRESSION,
                                                     source.splits)]
    if source.kind == "dfdc":
        from dfpipe.pipeline.ingest.dfdc import list_dfdc

        return [(e.path, e.label) for e in list_dfdc(source.root)]
    return [(p, "unknown") for p in media_files(source.root)]


def estimate_steps(recipe: Recipe, out: Path, steps: list[Step], done: dict[str, Any]) -> dict[str, Estimate]:
    """An Estimate per step name (see the module docstring)."""
    try:
        work = {s.name: source_work(s, recipe.extract) for s in (*recipe.sources, *recipe.evaluate.external)}
    except Exception as exc:  # a source the listing refuses: say so, estimate nothing
        return {s.name: Estimate(None, CPU_RATES[s.group][0], None, f"cannot list the sources: {exc}") for s in steps}
    srcs = [work[s.name] for s in recipe.sources]
    reals = sum(w.reals for w in srcs)
    videos = sum(w.videos for w in srcs)
    sampled = sum(w.sampled for w in srcs)
    per_real = sampled / videos if videos else 0.0
    fakes_per_plan = {p.name: (p.config.pairs if p.config.method in ("swap", "reenact") else reals)
                      * len(p.config.qualities) for p in recipe.synthesis}
    fakes = sum(fakes_per_plan.values()) + sum(w.fakes for w in srcs)
    faces = sampled + sum(fakes_per_plan.values()) * per_real
    units: dict[str, float] = {}
    for step in steps:
        kind, _, name = step.name.partition(":")
        units[step.name] = {
            "ingest": lambda: work[name].videos if name in work else 0,
            "extract": lambda: sampled,
            "synth": lambda: fakes_per_plan.get(name, 0) * per_real,
            "merge": lambda: videos + sum(fakes_per_plan.values()),
            "benchmark": lambda: videos + sum(fakes_per_plan.values()),
            "masks": lambda: fakes,
            "quality": lambda: fakes * per_real,
            "splits": lambda: videos,
            "train": lambda: 0.8 * faces * _epochs(recipe, name),
            "external": lambda: work[name].sampled if name in work else 0,
            "evaluate": lambda: faces * 0.1 * len(recipe.evaluate.splits)
            + sum(work[s.name].sampled for s in recipe.evaluate.external),
            "card": lambda: 1,
        }[kind]()
    measured: dict[str, float] = {}
    measured_steps: dict[str, float] = {}
    for step in steps:
        entry = done.get(step.name, {})
        if entry.get("status") == "done" and units[step.name] and entry.get("seconds"):
            measured.setdefault(step.group, entry["seconds"] / units[step.name])
            measured_steps[step.name] = entry["seconds"] / units[step.name]
    out_: dict[str, Estimate] = {}
    for step in steps:
        unit, rate = CPU_RATES[step.group]
        basis = "CPU rate"
        if step.group == "train":
            rate, basis = _train_rate(recipe, step.name.partition(":")[2], rate)
        if step.group in measured and step.group != "train":
            rate, basis = measured[step.group], "measured here"
        if step.name in measured_steps:
            rate, basis = measured_steps[step.name], "measured here"
        n = units[step.name]
        out_[step.name] = Estimate(round(n, 1), unit, None if n is None else round(n * rate, 1), basis)
    return out_


def _train_rate(recipe: Recipe, name: str, tiny_rate: float) -> tuple[float, str]:
    """s per face-epoch of one detector: the tiny models' rate, or the paper-size one."""
    for d in recipe.detectors:
        if d.name == name and not (d.model.endswith("_tiny") or d.options.get("tiny")):
            return CPU_TRAIN_FULL.get(d.model, tiny_rate), "CPU rate (paper size)"
    return tiny_rate, "CPU rate"


def _epochs(recipe: Recipe, name: str) -> int:
    for d in recipe.detectors:
        if d.name == name:
            return int(d.options.get("epochs", 20))
    return 0


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["CPU_RATES", "Estimate", "estimate_steps", "fmt_seconds", "source_work"]
