"""`dfpipe masks`: a thin layer over `dfpipe.pipeline.masks.masks` (the stage in `masks/stage.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dfpipe.cli.common import EXIT_INPUT_FAILED, console, fail, print_stage_summary
from dfpipe.cli.options import option

#: where the options' defaults are: read from its source, so the CLI imports no pipeline
CONFIG = "dfpipe.pipeline.masks.pairmask:PairMaskConfig"


def masks(
    root: Path = typer.Argument(..., metavar="DATASET", help="An extracted dataset directory."),
    difference: str = option(CONFIG, "difference", help="Pair difference: max (channel), ssim (1 - SSIM map) or both."),
    threshold: str = option(CONFIG, "threshold", help="otsu, or a fixed level 0..255 on the difference map."),
    min_threshold: float = option(CONFIG, "min_threshold", help="Floor under the Otsu level, so codec noise is never a mask."),
    components: int = option(CONFIG, "components", help="Keep this many largest regions."),
    use_shipped: bool = option(CONFIG, "use_shipped", "--use-shipped/--no-shipped", help="Prefer the dataset's own mask videos."),
    workers: Optional[int] = typer.Option(None, help="Worker processes on a local Dask cluster (default: one per core, at most one per item; serial, without Dask, for a single item or core; 0 = serial)."),
    scheduler: Optional[str] = typer.Option(None, help="An existing Dask scheduler, e.g. tcp://host:8786."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Fill the mask column of every extracted fake: from the difference with its real pair
    (aligned crops, kept inside the face mesh's region and hole-filled), from the dataset's mask
    videos when it ships them (FF++), else from the face mesh (or the 5 landmarks without one). Each fake gets a row in DS/masks/ (its counts, or why it failed).

    Re-running the same command resumes: fakes already masked are skipped. Exit status 0
    when every fake has masks, 1 when some failed (their rows say why), 2 on bad arguments.
    """
    from dfpipe.pipeline.masks import PairMaskConfig, masks
    from dfpipe.pipeline.masks.stage import mask_sources
    from dfpipe.runtime.parallel import ClusterError
    from dfpipe.runtime.runinfo import ParamsMismatch

    try:
        threshold = threshold if threshold == "otsu" else float(threshold)
    except ValueError:
        fail(f"--threshold is 'otsu' or a number in 0..255, got {threshold!r}")
    try:
        config = PairMaskConfig(
            difference=difference, threshold=threshold, min_threshold=min_threshold, components=components,
            use_shipped=use_shipped,
        )
        summary = masks(root, config, workers=workers, scheduler=scheduler, progress=progress)
    except (ValueError, FileNotFoundError, ParamsMismatch) as exc:
        fail(str(exc))
    except ClusterError as exc:
        fail(str(exc), exc.code)
    print_stage_summary(summary)
    sources = ", ".join(f"{k}: {v}" for k, v in sorted(mask_sources(summary).items())) or "none"
    console.print(f"faces by mask source: {sources}; {summary.n_skipped} already had masks")
    if summary.n_errors:
        raise typer.Exit(EXIT_INPUT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("masks")(masks)
