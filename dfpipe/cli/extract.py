"""`dfpipe extract`: a thin layer over `dfpipe.pipeline.faces.extract` (the stage in `faces/stage.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dfpipe.cli.common import EXIT_INPUT_FAILED, fail, print_stage_summary
from dfpipe.cli.options import option

#: where the options' defaults are: read from its source, so the CLI imports no pipeline
CONFIG = "dfpipe.pipeline.faces.config:ExtractConfig"


def extract(
    videos: List[Path] = typer.Argument(..., help="Video files, folders (searched recursively) or an ingested dataset directory."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Dataset directory to write (default: the ingested dataset given)."),
    every: Optional[int] = option(CONFIG, "every", help="Keep every Nth frame."),
    count: Optional[int] = option(CONFIG, "count", help="Keep N frames spread evenly over each video."),
    fps: Optional[float] = option(CONFIG, "fps", help="Keep about this many frames per second."),
    size: int = option(CONFIG, "size", help="Side of the square face crop in pixels (MAT uses 380)."),
    crop: str = option(CONFIG, "crop", help="mesh: the ArcFace framing fitted to the face mesh's rigid points (steadiest along tracks); align: the same from the 5 points; box: FF++ 1.3x box crop; auto: mesh, or align with --mesh none."),
    margin: float = option(CONFIG, "margin", help="Extra border around the aligned face, as a fraction of the face."),
    detector: str = option(CONFIG, "detector", help="mobilenet0.25, resnet50 (needs --weights) or mtcnn (facenet-pytorch)."),
    weights: Optional[Path] = option(CONFIG, "weights", help="Detector weights file (default: the weights cache)."),
    device: str = option(CONFIG, "device", help="cpu, cuda or auto."),
    max_side: int = option(CONFIG, "max_side", help="Frames are downscaled to this long side for detection (0 = never)."),
    score_threshold: float = option(CONFIG, "score_threshold", help="Minimum face score."),
    nms_threshold: float = option(CONFIG, "nms_threshold", help="IoU over which the weaker of two overlapping detections is dropped."),
    min_face: int = option(CONFIG, "min_face", help="Minimum face side in pixels."),
    keep: str = option(CONFIG, "keep", help="Tracks to keep: all, largest (N largest, see --max-tracks) or main."),
    max_tracks: Optional[int] = option(CONFIG, "max_tracks", help="With --keep largest: how many tracks."),
    min_track_len: int = option(CONFIG, "min_track_len", help="Drop tracks seen on fewer sampled frames."),
    smooth: int = option(CONFIG, "smooth", help="Smooth boxes and landmarks over +-N sampled frames of a track (0 = off)."),
    cut_threshold: float = option(CONFIG, "cut_threshold", help="Colour-histogram distance between sampled frames that counts as a camera cut: tracks end there, faces get a new shot_id; a jump of every face counts as a cut too (0 = no cut detection)."),
    mesh: str = option(CONFIG, "mesh", help="facemesh: 468-point Face Mesh, head pose and pose flags for every face; none: 5 points only (faster)."),
    flag_mesh_score: float = option(CONFIG, "flag_mesh_score", help="Flag faces (flag_low_mesh_score) whose Face Mesh presence score is under this."),
    flag_pose: float = option(CONFIG, "flag_pose", help="Flag faces (flag_extreme_pose) turned or nodded more than this many degrees."),
    flag_tiny: int = option(CONFIG, "flag_tiny", help="Flag faces (flag_tiny) whose box's shorter side is under this many pixels."),
    flag_blur: float = option(CONFIG, "flag_blur", help="Flag faces (flag_blurry) whose sharpness (Laplacian variance at 128 px) is under this."),
    image_format: str = option(CONFIG, "image_format", help="png or jpeg (quality --jpeg-quality)."),
    jpeg_quality: int = option(CONFIG, "jpeg_quality", help="JPEG quality of the crops with --image-format jpeg."),
    batch_size: int = option(CONFIG, "batch_size", help="Frames per detector batch."),
    backend: str = option(CONFIG, "backend", help="Decoder: pyav (default, fastest here) or decord."),
    max_pixels: int = option(CONFIG, "max_pixels", help="Refuse videos with larger frames (error row too_large)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes on a local Dask cluster (default: one per core, at most one per item; serial, without Dask, for a single item or core; 0 = serial)."),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing Dask scheduler, e.g. tcp://host:8786."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Decode videos, detect, track and align faces, and write DS/videos/ and DS/faces/.

    Re-running the same command resumes: finished videos are skipped. Exit status 0 when
    every input was extracted, 1 when some inputs failed (their rows say why), 2 on bad
    arguments.
    """
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.runtime.parallel import ClusterError
    from dfpipe.runtime.runinfo import ParamsMismatch
    from dfpipe.runtime.weights import WeightsError

    weights = str(weights) if weights else None  # run.json is JSON
    max_side = max_side or None  # 0 on the command line: never downscale
    try:
        config = ExtractConfig(
            every=every, count=count, fps=fps, size=size, crop=crop, margin=margin, detector=detector,
            weights=weights, device=device, max_side=max_side, score_threshold=score_threshold,
            nms_threshold=nms_threshold, min_face=min_face, keep=keep, max_tracks=max_tracks,
            min_track_len=min_track_len, smooth=smooth, cut_threshold=cut_threshold, mesh=mesh,
            flag_mesh_score=flag_mesh_score, flag_pose=flag_pose, flag_tiny=flag_tiny, flag_blur=flag_blur, image_format=image_format, jpeg_quality=jpeg_quality,
            batch_size=batch_size, backend=backend, max_pixels=max_pixels,
        )
        summary = extract(videos, out, config, workers=workers, scheduler=scheduler, progress=progress)
    except (ValueError, ParamsMismatch, WeightsError) as exc:
        fail(str(exc))
    except ClusterError as exc:
        fail(str(exc), exc.code)
    print_stage_summary(summary)
    if summary.n_errors:
        raise typer.Exit(EXIT_INPUT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)
