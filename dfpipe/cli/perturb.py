"""`dfpipe perturb`: a thin layer over `dfpipe.pipeline.perturb.stage.perturb`.

The options are `PerturbConfig`'s fields, with its defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dfpipe.cli.common import EXIT_INPUT_FAILED, console, fail, print_stage_summary
from dfpipe.cli.options import option

#: where the options' defaults are: read from its source, so the CLI imports no pipeline
CONFIG = "dfpipe.pipeline.perturb.stage:PerturbConfig"


def perturb(
    ds: Path = typer.Argument(..., help="A dataset directory made by `dfpipe extract` (labelled real and fake)."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write the perturbed copies to (DS2)."),
    spec: str = option(CONFIG, "spec", "--kinds", help=(
        "Perturbations, DeeperForensics-1.0's: CS colour saturation, CC colour contrast, BW block-wise "
        "noise, GNC Gaussian noise, GB Gaussian blur, JPEG (down/up-sampling, as their code does), VC video "
        "compression (--mode videos). KIND = its five levels, KIND:L one level, A:L+B:M a mix applied "
        "together, comma-separated; 'all' = every kind at every level (VC only with --mode videos).")),
    mode: str = option(CONFIG, "mode", help="crops: perturb the face crops (fast, ready to evaluate); videos: "
                                             "perturb every frame and re-encode (then run `dfpipe extract DS2`)."),
    clean: bool = option(CONFIG, "clean", help="Keep the unperturbed originals in DS2 (perturbation 'none')."),
    mixed: int = option(CONFIG, "mixed", help="Also this many random mixes per video (DeeperForensics' mixed)."),
    mix_kinds: int = option(CONFIG, "mix_kinds", help="Distinct kinds in each random mix."),
    seed: int = option(CONFIG, "seed", help="Seed of block positions, noise and mixes; also the training seed "
                                             "whose kept splits (DS/splits/) the copies take."),
    workers: Optional[int] = typer.Option(None, help="Worker processes on a local Dask cluster (0 = serial)."),
    scheduler: Optional[str] = typer.Option(None, help="An existing Dask scheduler, e.g. tcp://host:8786."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Perturbed copies of a dataset for robustness tables (DeeperForensics-1.0).

    Each copy keeps its original's label, method and split; its meta names the
    perturbation and the original. Evaluate with `dfpipe evaluate CKPT DS2 --by
    perturbation`. Re-running the same command resumes. Exit status 0 when every copy was
    made, 1 when some failed (their rows say why), 2 on bad arguments.
    """
    from dfpipe.pipeline.perturb.stage import PerturbConfig, perturb
    from dfpipe.runtime.parallel import ClusterError
    from dfpipe.runtime.runinfo import ParamsMismatch

    try:
        config = PerturbConfig(spec=spec, mode=mode, clean=clean, mixed=mixed, mix_kinds=mix_kinds, seed=seed)
        summary = perturb(ds, out, config, workers=workers, scheduler=scheduler, progress=progress)
    except (ValueError, ParamsMismatch) as exc:
        fail(str(exc))
    except ClusterError as exc:
        fail(str(exc), exc.code)
    print_stage_summary(summary)
    if mode == "videos":
        console.print(f"next: dfpipe extract {out}   (the copies are videos; extract makes their faces)")
    if summary.n_errors:
        raise typer.Exit(EXIT_INPUT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("perturb")(perturb)
