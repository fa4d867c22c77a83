"""`dfpipe score-quality`: a thin layer over `dfpipe.pipeline.quality.score_quality`.

The options are `QualityConfig`'s fields, with its defaults (`--metrics` comma-separated).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dfpipe.cli.common import EXIT_INPUT_FAILED, console, fail, print_stage_summary
from dfpipe.cli.options import library_default, option

#: where the options' defaults are: read from its source, so the CLI imports no pipeline
CONFIG = "dfpipe.pipeline.quality.config:QualityConfig"


def score_quality(
    root: Path = typer.Argument(
        ..., metavar="DATASET", help="An extracted dataset directory (run `dfpipe masks` first for Mask-SSIM)."),
    report: Optional[Path] = typer.Option(None, help="Write an HTML (.html) or Markdown (.md) report with PNG plots."),
    metrics: str = typer.Option(
        ",".join(library_default(CONFIG, "metrics")),
        help="Comma-separated subset of mask_ssim, lpips, ewarp, identity, pose, expression, seam (identity needs "
        "dlib: pip install dlib-bin; left out with a note when missing, unless named here)."),
    full_frame: bool = option(
        CONFIG, "full_frame", "--full-frame", help="Score whole frames instead of the aligned face crops."),
    flow_preset: str = option(CONFIG, "flow_preset", help="OpenCV DIS preset for Ewarp: ultrafast, fast, medium."),
    weights: Optional[Path] = option(
        CONFIG, "weights", help="VGG-16 ImageNet weights (vgg16-397923af.pth; default: the weights cache)."),
    device: str = option(CONFIG, "device", help="Device for LPIPS: cpu or cuda."),
    workers: Optional[int] = typer.Option(None, help="Worker processes on a local Dask cluster (default: one per core, at most one per item; serial, without Dask, for a single item or core; 0 = serial)."),
    scheduler: Optional[str] = typer.Option(None, help="An existing Dask scheduler, e.g. tcp://host:8786."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    redo: bool = typer.Option(False, "--redo", help="Clear DS/quality/ and score again (e.g. with other metrics)."),
) -> None:
    """Score how close each fake is to its source (Mask-SSIM, LPIPS, VGG feature MSE), how
    much every video flickers (Ewarp), whose face a fake shows (identity distances to donor and
    target, retrieval), its pose and expression error and how visible its seam is, into
    DS/quality/, with a summary table per dataset and method, and optionally a report with
    histograms, box plots and sample crops.

    Re-running the same command resumes. Exit status 0 when every video was scored, 1 when
    some could not be (their rows say why), 2 on bad arguments.
    """
    from dfpipe.models.face_descriptor import DlibMissingError
    from dfpipe.pipeline.quality import METRICS, QualityConfig, read_quality, score_quality
    from dfpipe.pipeline.quality.report import check_report_path, summary_table, write_report
    from dfpipe.runtime.parallel import ClusterError
    from dfpipe.runtime.runinfo import ParamsMismatch
    from dfpipe.runtime.weights import WeightsError

    metrics = tuple(m.strip() for m in metrics.split(",") if m.strip())
    weights = str(weights) if weights else None  # run.json is JSON
    try:
        config = QualityConfig(metrics=metrics, full_frame=full_frame, flow_preset=flow_preset, weights=weights, device=device)
        if report is not None:
            check_report_path(report)
        summary = score_quality(root, config, workers=workers, scheduler=scheduler, progress=progress, redo=redo)
    except (WeightsError, DlibMissingError) as exc:
        named = "identity" if isinstance(exc, DlibMissingError) or "dlib" in str(exc) else "lpips"
        rest = ",".join(m for m in METRICS if m in metrics and m != named)
        fail(f"{exc}\n(or leave {'LPIPS' if named == 'lpips' else 'identity'} out: --metrics {rest})")
    except (ValueError, FileNotFoundError, ParamsMismatch) as exc:
        fail(str(exc))
    except ClusterError as exc:
        fail(str(exc), exc.code)
    print_stage_summary(summary)
    print_quality_table(summary_table(read_quality(root)[1]))
    console.print(
        f"scored {summary.n_ok} of {summary.n_items} videos (already scored {summary.n_skipped} before this run) "
        f"-> {root / 'quality'}"
    )
    if report is not None:
        console.print(f"report: {write_report(root, report)}")
    if summary.n_errors:
        raise typer.Exit(EXIT_INPUT_FAILED)


def print_quality_table(table) -> None:
    """The per-method means of `report.summary_table`, as a terminal table with a legend."""
    from rich.table import Table

    from dfpipe.cli.tables import print_in_parts
    from dfpipe.pipeline.quality.report import GROUP, SHORT, fmt

    groups = [c for c in table.columns if c in GROUP]
    metrics = [c for c in table.columns if c not in GROUP]
    # one row per metric, one column per group: a dozen metrics side by side do not fit a terminal;
    # with many groups, as many tables as it takes to keep each group's name whole
    columns = []
    for i, row in enumerate(table.itertuples(index=False)):
        name = " / ".join(str(getattr(row, g)) for g in groups if getattr(row, g) not in (None, "", "-"))
        columns.append((name or "-", [fmt(table[m].iloc[i]) for m in metrics]))

    def make(part: list[tuple[str, list[str]]]) -> Table:
        rich_table = Table(title="dataset quality (means over videos)")
        rich_table.add_column("metric", no_wrap=True)
        for header, _ in part:
            rich_table.add_column(header, justify="right")
        for j, metric in enumerate(metrics):
            rich_table.add_row(SHORT.get(metric, metric), *[cells[j] for _, cells in part])
        return rich_table

    print_in_parts(make, columns, console)
    computed = [m for m in metrics if table[m].notna().any()]
    console.print("; ".join(LEGEND[m] for m in computed if m in LEGEND) + ".")


#: What each row of the terminal table means; only the computed ones are printed.
LEGEND = {
    "mask_ssim": "M-SSIM: Mask-SSIM of the masked images (higher = closer to the source)",
    "mask_ssim_inside": "M-SSIM in: mean SSIM inside the mask",
    "ssim": "SSIM: whole crop",
    "lpips": "LPIPS: lower = closer",
    "vgg_mse": "VGG MSE: lower = closer",
    "ewarp": "Ewarp: lower = less flicker",
    "id_to_source": "ID src: face-descriptor distance to the donor (< 0.6 = same person)",
    "id_to_target": "ID tgt: face-descriptor distance to the real target (< 0.6 = same person)",
    "id_retrieval": "ID ret: frames whose nearest real identity is the expected one",
    "pose_error": "pose: degrees from the target's head pose",
    "expression_error": "expr: mesh distance after pose removal / eye distance",
    "seam": "seam: boundary gradient over the real's (1 = invisible)",
}


def register(app: typer.Typer) -> None:
    app.command("score-quality")(score_quality)
