"""`dfpipe synthesize`: a thin layer over `dfpipe.pipeline.synth.synthesize`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dfpipe.cli.common import EXIT_INPUT_FAILED, fail, print_run_table


def synthesize(
    ds: Path = typer.Argument(..., help="A real dataset directory made by `dfpipe extract`."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write the fakes to (DS2)."),
    method: str = typer.Option("swap", help="swap (another real identity), self-blend (SBI) or external (--from-generator)."),
    blend: str = typer.Option(
        "alpha", help="none (naive stitching), alpha, poisson, poisson-mixed or dovenet. A colour mode here "
        "(e.g. rct) means that colour transfer with an alpha blend."),
    colour: str = typer.Option("none", help="Colour transfer before blending: none, rct, lct, mkl or idt."),
    quality: List[str] = typer.Option(["c23"], help="FF++ quality of the encoded fakes: c0, c23, c40 (repeat for several)."),
    pairs: int = typer.Option(10, help="Number of swap fakes (source/target track pairs)."),
    pairs_file: Optional[Path] = typer.Option(None, help="CSV of pairs (target_video_id, source_video_id[, target_track_id, source_track_id]) instead of random ones."),
    per_video: Optional[int] = typer.Option(None, help="Change at most this many frames per fake (default: the whole track)."),
    seed: int = typer.Option(0, help="Seed of pairing, mask deformations and perturbations: same seed, same fakes."),
    region: str = typer.Option("full", help="Mask region: full, no_forehead or inner."),
    mask_warp: str = typer.Option("elastic", help="Mask deformation: elastic, piecewise or none."),
    deform: bool = typer.Option(True, help="Deform the landmark mask (erode/dilate, blur, blend ratio) as SBI does."),
    transform: str = typer.Option("similarity", help="Swap warp from source to target landmarks: similarity or affine."),
    smooth: float = typer.Option(1.5, help="Sigma, in frames, of the temporal smoothing of target landmarks (0 = off)."),
    follow_motion: float = typer.Option(
        0.8, help="Share of a swapped face carried along the real video's optical flow each frame (0 = rigid paste); "
        "keeps expression and flicker (Ewarp) close to the real video."),
    from_generator: Optional[Path] = typer.Option(None, help="Folder with one folder of generated frames per target video (external)."),
    harmonizer: Optional[Path] = typer.Option(None, help="DoveNet checkpoint for --blend dovenet."),
    device: str = typer.Option("cpu", help="Device of the harmonizer: cpu or cuda."),
    include_reals: bool = typer.Option(True, help="Also list the real videos used (and their faces) in DS2."),
    workers: Optional[int] = typer.Option(None, help="Worker processes on a local Dask cluster (default: one per core; 0 = no Dask)."),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing Dask scheduler, e.g. tcp://host:8786."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Make SR-DF-style fake videos from the real faces of DS: fake videos in the chosen
    FF++ qualities, DS2/videos/ rows with their lineage and DS2/faces/ crops with masks.

    Re-running the same command resumes. Exit status 0 when every fake was made, 1 when
    some failed (their rows say why), 2 on bad arguments.
    """
    from dfpipe.pipeline.synth import SynthConfig, synthesize as run_synthesize
    from dfpipe.runtime.runinfo import ParamsMismatch

    try:
        config = SynthConfig(
            method=method, blend=blend, colour=colour, qualities=tuple(quality), pairs=pairs,
            per_video=per_video, seed=seed, region=region, mask_warp=mask_warp, deform=deform, transform=transform,
            smooth=smooth, follow_motion=follow_motion,
            pairs_file=str(pairs_file) if pairs_file else None,
            from_generator=str(from_generator) if from_generator else None,
            harmonizer=str(harmonizer) if harmonizer else None, device=device, include_reals=include_reals,
        )
        summary = run_synthesize(ds, out, config, workers=workers, scheduler=scheduler, progress=progress)
    except (ValueError, ParamsMismatch) as exc:
        fail(str(exc))
    print_summary(summary)
    if summary.n_errors:
        raise typer.Exit(EXIT_INPUT_FAILED)


def print_summary(summary) -> None:
    rows = [("fakes planned", summary.n_jobs), ("already done (skipped)", summary.n_skipped), ("fakes ok", summary.n_ok),
            ("failed", summary.n_errors)]
    rows += [(f"  {code}", n) for code, n in sorted(summary.errors.items())]
    rows += [("videos written (all qualities)", summary.n_videos), ("frames", summary.n_frames),
             ("faces", summary.n_faces), ("seconds", f"{summary.seconds:.1f}")]
    print_run_table(f"synthesize -> {summary.out}", rows, summary.failed, summary.out)


def register(app: typer.Typer) -> None:
    app.command("synthesize")(synthesize)
