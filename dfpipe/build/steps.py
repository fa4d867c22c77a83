"""What each build step does: one stage function called on its dataset directory.

Every function returns the step's figures (counts, errors, metrics) for `build.json` and
the card. Per-item failures (an unreadable video, a fake that could not be made) are error
rows and figures, not a stopped build; a stage that refuses its input raises, and the
build stops naming the step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dfpipe.build.plan import Layout, Step, training_set
from dfpipe.build.recipe import Recipe, Source


def run_step(step: Step, recipe: Recipe, lay: Layout, state: dict[str, Any], workers: int | None = None,
             scheduler: str | None = None, progress: bool = True) -> dict[str, Any]:
    kind, _, name = step.name.partition(":")
    run = dict(workers=workers, scheduler=scheduler, progress=progress)
    if kind == "ingest":
        return ingest_source(_by_name(recipe.sources, name), lay.source(name))
    if kind == "extract":
        return _stage_figures(_extract([lay.source(s.name) for s in recipe.sources], lay.reals, recipe, run))
    if kind == "synth":
        from dfpipe.pipeline.synth import synthesize

        plan = _by_name(recipe.synthesis, name)
        config = dataclasses.replace(plan.config, include_reals=False)  # the merge takes the reals once
        return _stage_figures(synthesize(lay.reals, lay.fakes(name), config, **run))
    if kind == "merge":
        from dfpipe.build.splits import identity_leaks
        from dfpipe.manifests.merge import merge_datasets

        merged = merge_datasets([lay.reals, *[lay.fakes(p.name) for p in recipe.synthesis]], lay.dataset)
        leaks = identity_leaks(lay.dataset)
        if leaks:  # a bug, never the data's fault: stop before training on it
            raise RuntimeError(f"identity leak in the merged benchmark: {'; '.join(leaks[:5])}")
        return {"added": merged.added, "kept": merged.kept}
    if kind == "benchmark":
        from dfpipe.manifests.merge import merge_datasets
        from dfpipe.manifests.parts import part_keys

        raw = part_keys(lay.reals, "videos")
        picked = merge_datasets([lay.dataset], lay.benchmark,
                                keep=lambda _ds, row: not (row["label"] == "real" and row["video_id"] in raw))
        return {"added": picked.added, "kept": picked.kept, "left out": "the raw reals (re-encoded copies stay)"}
    if kind == "masks":
        from dfpipe.pipeline.masks import masks

        return _stage_figures(masks(lay.dataset, **run))
    if kind == "quality":
        from dfpipe.pipeline.quality import score_quality
        from dfpipe.pipeline.quality.report import write_report

        figures = _stage_figures(score_quality(lay.dataset, recipe.quality, **run))
        write_report(lay.dataset, lay.dataset / "quality" / "report.html")
        return figures
    if kind == "splits":
        from dfpipe.build.splits import identity_leaks, identity_splits

        summary = identity_splits(lay.reals)
        leaks = identity_leaks(lay.reals)
        if leaks:  # a bug, never the data's fault
            raise RuntimeError(f"identity leak after splitting: {'; '.join(leaks[:5])}")
        return {"videos": summary.videos, "identities": summary.identities, "groups": summary.groups,
                "described": summary.described, "notes": summary.notes}
    if kind == "train":
        return train_detector(_by_name(recipe.detectors, name), recipe, lay, progress)
    if kind == "external":
        source = _by_name(recipe.evaluate.external, name)
        figures = ingest_source(source, lay.external(name))
        figures["extract"] = _stage_figures(_extract([lay.external(name)], None, recipe, run))
        return figures
    if kind == "evaluate":
        return evaluate_detector(_by_name(recipe.detectors, name), recipe, lay, progress)
    if kind == "card":
        from dfpipe.build.card import write_card

        paths = write_card(recipe, lay, state)
        return {"html": str(paths[0]), "markdown": str(paths[1])}
    raise ValueError(f"unknown build step {step.name}")


def _by_name(items, name: str):
    for item in items:
        if item.name == name:
            return item
    raise ValueError(f"the recipe has no entry named {name!r}")


def _extract(inputs: list[Path], out: Path | None, recipe: Recipe, run: dict):
    from dfpipe.pipeline.faces import extract

    return extract(inputs, out, recipe.extract, **run)


def _stage_figures(summary) -> dict[str, Any]:
    return {"items": summary.n_items, "skipped": summary.n_skipped, "ok": summary.n_ok, "errors": summary.n_errors,
            "by_status": dict(summary.by_status), "error_codes": dict(summary.errors),
            "counts": {k: int(v) for k, v in summary.counts.items()}, "notes": list(summary.notes),
            "failed": [list(f) for f in summary.failed[:20]], "execution": summary.execution}


def ingest_source(source: Source, out: Path) -> dict[str, Any]:
    """The source's videos as pending rows of `out` (kind `reals`: every file is real)."""
    from dfpipe.pipeline.ingest import ingest, write_entries

    if source.kind == "reals":
        from dfpipe.pipeline.faces.inputs import media_files, no_media_message
        from dfpipe.pipeline.ingest.common import Entry

        files = media_files(source.root) if source.root.is_dir() else [source.root]
        if not files:
            raise ValueError(no_media_message(source.root))
        base = source.root if source.root.is_dir() else source.root.parent
        entries = [Entry(p.relative_to(base).as_posix(), p.resolve(), "real") for p in files]
        summaries = [write_entries(entries, out, source.name)]
    else:
        summaries = ingest(source.kind, source.root, out, source.compression, source.splits)
    figures: dict[str, Any] = {"written": 0, "by_label": {}, "errors": []}
    for s in summaries:
        figures["written"] += s.written + s.skipped_existing + len(s.updated)
        for label, n in s.by_label.items():
            figures["by_label"][label] = figures["by_label"].get(label, 0) + n
        figures["errors"] += [f"{p}: {m}" for p, m in s.errors]
    return figures


def train_detector(detector, recipe: Recipe, lay: Layout, progress: bool) -> dict[str, Any]:
    """Train (or continue) one detector on the benchmark; `last.pt` makes it a resume."""
    from dfpipe.train.trainer import train

    out = lay.run(detector.name)
    summary = train(training_set(recipe, lay), detector.model, out, resume=(out / "last.pt").is_file(), progress=progress,
                    **dict(detector.options))
    keep = ("epochs", "steps", "best", "seconds", "n_train", "n_val", "device", "notes")
    return {k: summary[k] for k in keep if summary and k in summary}


def checkpoint_of(lay: Layout, detector: str) -> Path:
    run = lay.run(detector)
    best = run / "best.pt"
    return best if best.is_file() else run / "last.pt"


def evaluate_detector(detector, recipe: Recipe, lay: Layout, progress: bool) -> dict[str, Any]:
    """The detector on each named split of the benchmark and on each external set (all of
    it): metrics, ROC and per-face scores under `eval/<detector>/<split>/`."""
    from dfpipe.train.data import DataError
    from dfpipe.train.evaluate import evaluate

    ckpt = checkpoint_of(lay, detector.name)
    opts = detector.options  # evaluated as it trained: same device, batch, loader workers, precision
    run = dict(batch=int(opts.get("batch", 32)), workers=int(opts.get("workers", 2)), device=opts.get("device"),
               amp=bool(opts.get("amp", True)), progress=progress)
    targets = [(split, training_set(recipe, lay), split) for split in recipe.evaluate.splits]
    targets += [(f"external-{s.name}", lay.external(s.name), "all") for s in recipe.evaluate.external]
    figures: dict[str, Any] = {}
    for label, dataset, split in targets:
        try:
            result = evaluate(ckpt, dataset, split, report=lay.evaluation(detector.name) / label, **run)
        except DataError as exc:
            figures[label] = {"skipped": str(exc)}
            continue
        if not result.get("n_faces"):
            figures[label] = {"skipped": f"no faces in the {split} split"}
            continue
        figures[label] = {k: result.get(k) for k in ("n_faces", "n_videos", "frame", "video", "per_method",
                                                     "per_compression", "dataset_dir", "split")}
    return figures


__all__ = ["checkpoint_of", "evaluate_detector", "ingest_source", "run_step", "train_detector"]
