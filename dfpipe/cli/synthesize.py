"""`dfpipe synthesize`: a thin layer over `dfpipe.pipeline.synth.synthesize`.

The options are `SynthConfig`'s fields, with its defaults (`--quality` is repeated once per
quality of the `qualities` field).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dfpipe.cli.common import EXIT_INPUT_FAILED, fail, print_stage_summary
from dfpipe.cli.options import option

#: where the options' defaults are: read from its source, so the CLI imports no pipeline
CONFIG = "dfpipe.pipeline.synth.config:SynthConfig"


def synthesize(
    ds: Path = typer.Argument(..., help="A real dataset directory made by `dfpipe extract`."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write the fakes to (DS2)."),
    method: str = option(CONFIG, "method", help="swap (another real identity on the target's face), reenact (the target made to move like a source video), self-blend (SBI), external (--from-generator), or reencode (no fake: each real at the --quality levels, labelled real, so reals and fakes share a codec)."),
    blend: str = option(
        CONFIG, "blend", help="none (naive stitching), alpha, poisson, poisson-mixed or dovenet. A colour mode here "
        "(e.g. rct) means that colour transfer with an alpha blend."),
    colour: str = option(CONFIG, "colour", help="Colour transfer before blending: none, rct, lct, mkl or idt."),
    qualities: List[str] = option(
        CONFIG, "qualities", "--quality", help="FF++ quality of the encoded fakes: c0, c23, c40 (repeat for several)."),
    pairs: int = option(CONFIG, "pairs", help="Number of swap fakes (source/target track pairs)."),
    variants: int = option(
        CONFIG, "variants", help="Fakes per track or pair, each with freshly drawn random parameters (self-blend "
        "perturbation, mask deformation, colour fit); ids of the 2nd and later end in -v1, -v2, ..."),
    pairing: str = option(
        CONFIG, "pairing", help="How swap/reenact pick (target, source): random (different people when dlib is installed), "
        "similar (each target with the most alike other person: face descriptor + skin tone) or file (--pairs-file)."),
    pairs_file: Optional[Path] = option(CONFIG, "pairs_file", help="CSV of pairs (target_video_id, source_video_id[, target_track_id, source_track_id]) instead of random ones."),
    per_video: Optional[int] = option(CONFIG, "per_video", help="Change at most this many frames per fake (default: the whole track)."),
    seed: int = option(CONFIG, "seed", help="Seed of pairing, mask deformations and perturbations: same seed, same fakes. Another seed into an existing --out (all else the same) adds its fakes there."),
    region: str = option(CONFIG, "region", help="Mask region: full, no_forehead or inner."),
    mask_warp: str = option(CONFIG, "mask_warp", help="Mask deformation: elastic, piecewise or none."),
    deform: bool = option(CONFIG, "deform", help="Deform the landmark mask (erode/dilate, blur, blend ratio) as SBI does."),
    geometry: str = option(CONFIG, "geometry", help="What places a swapped face: mesh (the donor's face rendered on each target frame's face mesh, following its pose and expression; needs faces extracted with a mesh) or landmarks (one still crop moved by the 5 points)."),
    occluders: bool = option(CONFIG, "occluders", help="Mesh swap: keep what covers the target's face (a hand, a microphone) in front of the swapped face, found where a frame departs from the target's usual look."),
    transform: str = option(CONFIG, "transform", help="5-point swap (--geometry landmarks) warp from source to target landmarks: similarity or affine."),
    smooth: float = option(CONFIG, "smooth", help="Sigma, in frames, of the temporal smoothing of target landmarks (0 = off)."),
    follow_motion: float = option(
        CONFIG, "follow_motion", help="Share of a swapped face carried along the real video's optical flow each frame "
        "(0 = rigid paste); keeps expression and flicker (Ewarp) close to the real video."),
    from_generator: Optional[Path] = option(CONFIG, "from_generator", help="Folder with one folder of generated frames per target video (external)."),
    harmonizer: Optional[Path] = option(CONFIG, "harmonizer", help="DoveNet checkpoint for --blend dovenet."),
    device: str = option(CONFIG, "device", help="Device of the harmonizer: cpu or cuda."),
    include_reals: bool = option(CONFIG, "include_reals", help="Also list the real videos used (and their faces) in DS2."),
    workers: Optional[int] = typer.Option(None, help="Worker processes on a local Dask cluster (default: one per core, at most one per item; serial, without Dask, for a single item or core; 0 = serial)."),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing Dask scheduler, e.g. tcp://host:8786."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Make SR-DF-style fake videos from the real faces of DS: fake videos in the chosen
    FF++ qualities, DS2/videos/ rows with their lineage and DS2/faces/ crops with masks.

    Re-running the same command resumes; the same command with another --seed adds that
    seed's fakes to DS2 (any other changed option is refused). Exit status 0 when every fake
    was made, 1 when some failed (their rows say why), 2 on bad arguments.
    """
    from dfpipe.pipeline.synth import SynthConfig, synthesize
    from dfpipe.runtime.parallel import ClusterError
    from dfpipe.runtime.runinfo import ParamsMismatch

    # paths as the config records them (run.json and every fake's meta are JSON)
    pairs_file, from_generator, harmonizer = (str(p) if p else None for p in (pairs_file, from_generator, harmonizer))
    try:
        config = SynthConfig(
            method=method, blend=blend, colour=colour, qualities=qualities, pairs=pairs, variants=variants, pairing=pairing, pairs_file=pairs_file, geometry=geometry,
            occluders=occluders,
            per_video=per_video, seed=seed, region=region, mask_warp=mask_warp, deform=deform, transform=transform,
            smooth=smooth, follow_motion=follow_motion, from_generator=from_generator, harmonizer=harmonizer,
            device=device, include_reals=include_reals,
        )
        summary = synthesize(ds, out, config, workers=workers, scheduler=scheduler, progress=progress)
    except (ValueError, ParamsMismatch) as exc:
        fail(str(exc))
    except ClusterError as exc:
        fail(str(exc), exc.code)
    print_stage_summary(summary)
    if summary.n_errors:
        raise typer.Exit(EXIT_INPUT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("synthesize")(synthesize)
