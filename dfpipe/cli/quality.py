"""`dfpipe masks` and `dfpipe score-quality`: manipulation masks for fakes, dataset quality."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("masks")
    def masks(
        dataset: Path = typer.Argument(..., help="An extracted dataset directory."),
        difference: str = typer.Option("max", help="Pair difference: max (channel), ssim (1 - SSIM map) or both."),
        threshold: str = typer.Option("otsu", help="otsu, or a fixed level 0..255 on the difference map."),
        min_threshold: float = typer.Option(12.0, help="Floor under the Otsu level, so codec noise is never a mask."),
        components: int = typer.Option(1, help="Keep this many largest regions."),
        use_shipped: bool = typer.Option(True, "--use-shipped/--no-shipped", help="Prefer the dataset's own mask videos."),
        workers: Optional[int] = typer.Option(None, help="Dask worker processes (0 = serial; default: one per core)."),
        scheduler: Optional[str] = typer.Option(None, help="An existing Dask scheduler, e.g. tcp://host:8786."),
    ) -> None:
        """Fill the mask column of every extracted fake: from the difference with its real pair
        (aligned crops), from the dataset's mask videos when it ships them (FF++), else from the
        face landmarks. Resumable: faces that already have masks are kept."""
        from dfpipe.pipeline.quality.run import run_masks

        raise typer.Exit(run_masks(dataset, difference, threshold, min_threshold, components, use_shipped, workers, scheduler))

    @app.command("score-quality")
    def score_quality(
        dataset: Path = typer.Argument(..., help="An extracted dataset directory (run `dfpipe masks` first for Mask-SSIM)."),
        report: Optional[Path] = typer.Option(None, help="Write an HTML (.html) or Markdown (.md) report with PNG plots."),
        metrics: str = typer.Option("mask_ssim,lpips,ewarp", help="Comma-separated subset of mask_ssim, lpips, ewarp."),
        full_frame: bool = typer.Option(False, "--full-frame", help="Score whole frames instead of the aligned face crops."),
        flow_preset: str = typer.Option("fast", help="OpenCV DIS preset for Ewarp: ultrafast, fast, medium."),
        weights: Optional[Path] = typer.Option(None, help="VGG-16 ImageNet weights (vgg16-397923af.pth; default: the weights cache)."),
        device: str = typer.Option("cpu", help="Device for LPIPS: cpu or cuda."),
        workers: Optional[int] = typer.Option(None, help="Dask worker processes (0 = serial; default: one per core)."),
        scheduler: Optional[str] = typer.Option(None, help="An existing Dask scheduler, e.g. tcp://host:8786."),
        redo: bool = typer.Option(False, "--redo", help="Clear DS/quality/ and score again (e.g. with other metrics)."),
    ) -> None:
        """Score how close each fake is to its source (Mask-SSIM, LPIPS, VGG feature MSE) and how
        much every video flickers (Ewarp), into DS/quality/, with a summary table per dataset and
        method, and optionally a report with histograms and box plots."""
        from dfpipe.pipeline.quality.run import run_score_quality

        raise typer.Exit(
            run_score_quality(dataset, report, metrics, full_frame, flow_preset, weights, device, workers, scheduler, redo)
        )
