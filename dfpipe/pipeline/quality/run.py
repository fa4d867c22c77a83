"""What `dfpipe score-quality` and `dfpipe masks` do around the stage functions: check
arguments, run, print the one-screen summary, return the exit status."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console


def run_score_quality(
    dataset: Path,
    report: Path | None = None,
    metrics: str = "mask_ssim,lpips,ewarp",
    full_frame: bool = False,
    flow_preset: str = "fast",
    weights: Path | None = None,
    device: str = "cpu",
    workers: int | None = None,
    scheduler: str | None = None,
    redo: bool = False,
) -> int:
    """0 when every video was scored, 1 when some could not be, 2 on bad arguments."""
    from dfpipe.pipeline.quality.report import print_summary, summary_table, write_report
    from dfpipe.pipeline.quality.score import QualityConfig, read_quality, score_quality
    from dfpipe.runtime.runinfo import ParamsMismatch
    from dfpipe.runtime.weights import WeightsError

    console = Console()
    try:
        config = QualityConfig(
            metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()), full_frame=full_frame,
            flow_preset=flow_preset, weights=str(weights) if weights else None, device=device,
        )
        if report is not None and report.suffix.lower() not in (".html", ".htm", ".md"):
            raise ValueError(f"--report must end in .html or .md, got {report.name!r}")
        summary = score_quality(dataset, config, workers=workers, scheduler=scheduler, redo=redo)
    except WeightsError as exc:
        console.print(f"[red]error:[/red] {exc}\n(or leave LPIPS out: --metrics mask_ssim,ewarp)")
        return 2
    except (ValueError, FileNotFoundError, ParamsMismatch) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    _, videos = read_quality(dataset)
    print_summary(summary_table(videos), console)
    console.print(
        f"scored {summary.n_scored}, already scored {summary.n_skipped}, failed {summary.n_errors} "
        f"of {summary.n_videos} videos in {summary.seconds:.1f} s -> {Path(dataset) / 'quality'}"
    )
    failed = videos[videos["status"] != "ok"]
    for row in failed.head(10).itertuples():
        console.print(f"[red]{row.error_code}[/red] {row.video_id}: {row.error}")
    if report is not None:
        console.print(f"report: {write_report(dataset, report)}")
    return 1 if len(failed) else 0


def run_masks(
    dataset: Path,
    difference: str = "max",
    threshold: str = "otsu",
    min_threshold: float = 12.0,
    components: int = 1,
    use_shipped: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
) -> int:
    """0 when every extracted fake has masks, 2 on bad arguments."""
    from dfpipe.pipeline.masks.pairmask import PairMaskConfig, make_masks
    from dfpipe.runtime.runinfo import ParamsMismatch

    console = Console()
    try:
        level: str | float = threshold if threshold == "otsu" else float(threshold)
    except ValueError:
        console.print(f"[red]error:[/red] --threshold is 'otsu' or a number in 0..255, got {threshold!r}")
        return 2
    try:
        config = PairMaskConfig(
            difference=difference, threshold=level, min_threshold=min_threshold, components=components, use_shipped=use_shipped
        )
        summary = make_masks(dataset, config, workers=workers, scheduler=scheduler)
    except (ValueError, FileNotFoundError, ParamsMismatch) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    sources = ", ".join(f"{k}: {v}" for k, v in sorted(summary.by_source.items())) or "none"
    console.print(
        f"masks for {summary.n_done} fakes (faces by mask source: {sources}); {summary.n_skipped} already had masks; "
        f"{summary.n_fakes} extracted fakes in {summary.root}, {summary.seconds:.1f} s"
    )
    for message in summary.warnings[:20]:
        console.print(f"[yellow]warning[/yellow] {message}")
    return 0
