"""`dfpipe extract`: a thin layer over `dfpipe.pipeline.faces.extract.extract`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dfpipe.cli.common import EXIT_INPUT_FAILED, fail, print_run_table


def extract(
    videos: List[Path] = typer.Argument(..., help="Video files, folders (searched recursively) or an ingested dataset directory."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Dataset directory to write (default: the ingested dataset given)."),
    every: Optional[int] = typer.Option(None, help="Keep every Nth frame."),
    count: Optional[int] = typer.Option(None, help="Keep N frames spread evenly over each video."),
    fps: Optional[float] = typer.Option(None, help="Keep about this many frames per second."),
    size: int = typer.Option(320, help="Side of the square face crop in pixels (MAT uses 380)."),
    crop: str = typer.Option("align", help="align: 5-point similarity to a template; box: FF++ 1.3x box crop."),
    margin: float = typer.Option(0.4, help="Extra border around the aligned face, as a fraction of the face."),
    detector: str = typer.Option("mobilenet0.25", help="mobilenet0.25, resnet50 (needs --weights) or mtcnn (facenet-pytorch)."),
    weights: Optional[Path] = typer.Option(None, help="Detector weights file (default: the weights cache)."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
    max_side: int = typer.Option(640, help="Frames are downscaled to this long side for detection (0 = never)."),
    score_threshold: float = typer.Option(0.8, help="Minimum face score."),
    min_face: int = typer.Option(40, help="Minimum face side in pixels."),
    keep: str = typer.Option("all", help="Tracks to keep: all, largest (N largest, see --max-tracks) or main."),
    max_tracks: Optional[int] = typer.Option(None, help="With --keep largest: how many tracks."),
    min_track_len: int = typer.Option(1, help="Drop tracks seen on fewer sampled frames."),
    smooth: int = typer.Option(0, help="Smooth boxes and landmarks over +-N sampled frames of a track (0 = off)."),
    image_format: str = typer.Option("png", help="png or jpeg (quality --jpeg-quality)."),
    jpeg_quality: int = typer.Option(95),
    batch_size: int = typer.Option(8, help="Frames per detector batch."),
    backend: str = typer.Option("pyav", help="Decoder: pyav (default, fastest here) or decord."),
    max_pixels: int = typer.Option(8192 * 8192, help="Refuse videos with larger frames (error row too_large)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes on a local Dask cluster (default: one per core; 0 = no Dask)."),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing Dask scheduler, e.g. tcp://host:8786."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Decode videos, detect, track and align faces, and write DS/videos/ and DS/faces/.

    Re-running the same command resumes: finished videos are skipped. Exit status 0 when
    every input was extracted, 1 when some inputs failed (their rows say why), 2 on bad
    arguments.
    """
    from dfpipe.pipeline.faces.extract import ExtractConfig, extract as run_extract
    from dfpipe.runtime.runinfo import ParamsMismatch
    from dfpipe.runtime.weights import WeightsError

    try:
        config = ExtractConfig(
            every=every, count=count, fps=fps, size=size, crop=crop, margin=margin, detector=detector,
            weights=str(weights) if weights else None, device=device, max_side=max_side or None,
            score_threshold=score_threshold, min_face=min_face, keep=keep, max_tracks=max_tracks,
            min_track_len=min_track_len, smooth=smooth, image_format=image_format, jpeg_quality=jpeg_quality,
            batch_size=batch_size, backend=backend, max_pixels=max_pixels,
        )
        summary = run_extract(videos, out, config, workers=workers, scheduler=scheduler, progress=progress)
    except (ValueError, ParamsMismatch, WeightsError) as exc:
        fail(str(exc))
    print_summary(summary)
    if summary.n_errors:
        raise typer.Exit(EXIT_INPUT_FAILED)


def print_summary(summary) -> None:
    rows = [("inputs", summary.n_inputs), ("already done (skipped)", summary.n_skipped), ("videos ok", summary.n_ok),
            ("  of which without faces", summary.n_no_face), ("failed", summary.n_errors)]
    rows += [(f"  {code}", n) for code, n in sorted(summary.errors.items())]
    rows += [("sampled frames", summary.n_frames), ("faces", summary.n_faces), ("tracks", summary.n_tracks),
             ("seconds", f"{summary.seconds:.1f}")]
    print_run_table(f"extract -> {summary.out}", rows, summary.failed, summary.out)


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)
