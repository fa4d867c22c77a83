"""`dfpipe build`: a thin layer over `dfpipe.build.run.build`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dfpipe.cli.common import console, fail


def build(
    recipe: Path = typer.Argument(..., metavar="RECIPE", help="A benchmark recipe (YAML; docs/recipes.md)."),
    out: Path = typer.Option(..., "--out", help="The benchmark folder: one dataset directory per stage, build.json, card/."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (steps, work, estimated time) and stop."),
    only: Optional[str] = typer.Option(None, help="Build only these step groups, comma-separated: ingest, extract, "
                                                  "splits, synth, merge (and benchmark), masks, quality, train, external, "
                                                  "evaluate, card. What they need must be built already."),
    rebuild_changed: bool = typer.Option(False, "--rebuild-changed", help="Delete and rebuild the steps a changed "
                                                                         "recipe section touches (default: refuse)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes of each stage's local Dask cluster (default: one per core; 0 = serial)."),
    scheduler: Optional[str] = typer.Option(None, help="An existing Dask scheduler, e.g. tcp://host:8786."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Build a whole benchmark from one recipe: ingest, extract, split by identity,
    synthesize, merge, masks, quality, train and evaluate the detectors, and write the
    dataset card (OUT/card/index.html and card.md).

    Re-running the same command resumes: finished steps are skipped and a step that was
    stopped continues item by item. A recipe section changed since is refused by name
    (or rebuilt with --rebuild-changed). Exit status 0 when built, 1 when a step failed,
    2 on a bad recipe or argument (nothing done).
    """
    from dfpipe.build.plan import parse_only
    from dfpipe.build.recipe import RecipeError, load_recipe
    from dfpipe.build.run import BuildError, build

    try:
        recipe = load_recipe(recipe)
        parse_only(only)
    except (RecipeError, ValueError) as exc:
        fail(str(exc))
    if not dry_run:
        console.print(f"[bold]build[/] {recipe.name} -> {out}")
    on_step = None if dry_run else print_step
    try:
        report = build(recipe, out, only=only, dry_run=dry_run, rebuild_changed=rebuild_changed, workers=workers,
                       scheduler=scheduler, progress=progress, on_step=on_step)
    except BuildError as exc:
        fail(str(exc), exc.code)
    except ValueError as exc:
        fail(str(exc))
    if dry_run:
        print_plan(report)
        return
    print_steps(report)
    if report.card.is_file():
        console.print(f"card: {report.card}  |  {report.card.with_name('card.md')}")


def print_step(step) -> None:
    if step.status == "built":
        console.print(f"[green]done[/] {step.name} ({step.seconds:.1f} s)")


def print_steps(report) -> None:
    from rich.table import Table

    from dfpipe.build.estimate import fmt_seconds
    from dfpipe.cli.tables import print_table

    table = Table(title=f"{report.recipe.name} -> {report.out}")
    for col in ("step", "status", "time", "figures"):
        table.add_column(col)
    for s in report.steps:
        table.add_row(s.name, s.status, fmt_seconds(s.seconds), _figures(s.figures))
    print_table(table, console)


def _figures(figures: dict) -> str:
    keys = ("items", "ok", "errors", "added", "written", "videos", "epochs")
    return ", ".join(f"{k} {figures[k]}" for k in keys if k in figures)[:70]


def print_plan(report) -> None:
    from rich.table import Table

    from dfpipe.build.estimate import fmt_seconds
    from dfpipe.cli.tables import print_table

    table = Table(title=f"plan: {report.recipe.name} -> {report.out}")
    for col in ("step", "status", "work", "estimate", "basis"):
        table.add_column(col)
    total = 0.0
    for s in report.steps:
        est = s.estimate
        work = f"{est.units:,.0f} {est.unit}" if est and est.units is not None else "-"
        if s.status == "done":
            when, basis = f"took {fmt_seconds(s.seconds)}", "built"
        else:
            when, basis = (fmt_seconds(est.seconds), est.basis) if est else ("-", "")
            total += (est.seconds or 0) if est and s.status in ("to do", "changed") else 0
        table.add_row(s.name, s.status, work, when, basis)
    print_table(table, console)
    console.print(f"left to build: about {fmt_seconds(total)} on this machine's rates")
    if any(s.status == "changed" for s in report.steps):
        console.print("[yellow]note:[/] changed steps are refused; build with --rebuild-changed to rebuild them")


def export(
    bench: Path = typer.Argument(..., metavar="BENCH", help="A build folder (dfpipe build --out) or a dataset directory."),
    format: str = typer.Option(..., "--format", help="hf (Hugging Face datasets Parquet, the card as README) or "
                                                      "webdataset (tar shards that dfpipe train reads back)."),
    out: Path = typer.Option(..., "--out", help="A new folder for the export."),
    faces_per_file: int = typer.Option(2000, help="Faces per Parquet file or tar shard."),
) -> None:
    """Export a benchmark's faces for sharing: Hugging Face Parquet with image and
    label features (`datasets.load_dataset(OUT)`, or the Hub), or WebDataset shards.

    The crops are written as stored (no re-encoding), a file per split and chunk, with each
    face's label, video, method, compression, split and identity. Exit status 0 when
    written, 2 on a bad argument (nothing written).
    """
    from dfpipe.build.export import FORMATS, export

    if format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if faces_per_file < 1:
        fail("--faces-per-file must be at least 1")
    try:
        summary = export(bench, format, out, faces_per_file)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    faces = ", ".join(f"{s} {n}" for s, n in summary.faces.items())
    console.print(f"exported {sum(summary.faces.values())} faces ({faces}) as {format}: {len(summary.files)} files in {out}")


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("export")(export)
