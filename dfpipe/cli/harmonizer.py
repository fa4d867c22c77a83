"""`dfpipe train-harmonizer`: a thin layer over `dfpipe.train.harmonizer_train.train_harmonizer`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from dfpipe.cli.common import console, fail
from dfpipe.cli.options import option

if TYPE_CHECKING:
    from dfpipe.train.harmonizer_train import TrainResult

TRAIN_HARMONIZER = "dfpipe.train.harmonizer_train:train_harmonizer"  # holds the defaults


def train_harmonizer(
    dataset: Path = typer.Argument(..., help="Dataset directory whose faces/ holds real face crops (from `dfpipe extract`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: best.pt, last.pt, metrics.csv, tb/, samples/."),
    size: int = option(TRAIN_HARMONIZER, "size", help="Training side in pixels; a multiple of 256 (default config) or 64 (--tiny)."),
    epochs: int = option(TRAIN_HARMONIZER, "epochs", help="Epochs over the training faces (raise it and re-run to continue)."),
    tiny: bool = option(TRAIN_HARMONIZER, "tiny", "--tiny", help="The small config (ngf 16, 6 downs, 64 px): CPU-sized."),
    device: str = option(TRAIN_HARMONIZER, "device", help="auto (CUDA when present), cpu, cuda or cuda:N."),
    batch_size: int = option(TRAIN_HARMONIZER, "batch_size", help="Faces per step."),
    lr: float = option(TRAIN_HARMONIZER, "lr", help="Adam learning rate of the generator and both discriminators."),
    val_fraction: float = option(TRAIN_HARMONIZER, "val_fraction", help="Fraction of videos held out for validation (when no split column says val)."),
    max_faces: Optional[int] = option(TRAIN_HARMONIZER, "max_faces", help="Use at most this many faces (a seeded random subset)."),
    seed: int = option(TRAIN_HARMONIZER, "seed", help="Seed of the split, the composites and the initial weights."),
    workers: int = option(TRAIN_HARMONIZER, "workers", help="DataLoader worker processes making composites."),
    max_minutes: Optional[float] = option(TRAIN_HARMONIZER, "max_minutes", help="Stop before an epoch that would end after this many minutes."),
    resume: bool = option(TRAIN_HARMONIZER, "resume", help="Continue from OUT/last.pt when it exists."),
    progress: bool = option(TRAIN_HARMONIZER, "progress", help="Show a progress bar."),
) -> None:
    """Train the DoveNet harmonizer on a dataset's own real faces.

    Each face region is recoloured from another face (rct, lct, histogram matching,
    brightness/contrast/gamma) and the network learns to restore it. The best checkpoint
    (lowest held-out fMSE) is OUT/best.pt, which `--blend dovenet` uses. Re-running the
    same command resumes from OUT/last.pt.
    """
    from dfpipe.train.harmonizer_data import HarmonizerDataError
    from dfpipe.train.harmonizer_train import HarmonizerTrainError, train_harmonizer

    try:
        result = train_harmonizer(dataset, out, size=size, epochs=epochs, tiny=tiny, device=device, batch_size=batch_size,
                                  lr=lr, val_fraction=val_fraction, max_faces=max_faces, seed=seed, workers=workers,
                                  max_minutes=max_minutes, resume=resume, progress=progress)
    except (HarmonizerDataError, HarmonizerTrainError) as exc:
        fail(str(exc))
    print_summary(result)


def print_summary(result: TrainResult) -> None:
    """Faces read and skipped, the split, and the best epoch's held-out metrics."""
    from rich.table import Table

    table = Table(title=f"train-harmonizer -> {result.out}", show_header=False)
    rep = result.load_report
    table.add_row("faces read", str(rep.n_rows))
    table.add_row("  skipped: fake", str(rep.n_fake))
    table.add_row("  skipped: no mask, no landmarks", str(rep.n_no_mask))
    table.add_row("train / held-out faces", f"{result.n_train} / {result.n_val}")
    table.add_row("generator parameters", f"{result.param_counts['generator'] / 1e6:.2f}M")
    table.add_row("epochs done / steps", f"{result.epochs_done} / {result.steps}")
    best = result.best_metrics
    if best:
        table.add_row("best epoch", str(result.best_epoch))
        for key, label in (("fmse", "held-out fMSE"), ("mse", "held-out MSE"), ("psnr", "held-out PSNR dB")):
            table.add_row(label, f"{best[key]:.2f} (composite {best[key + '_composite']:.2f}, rct {best[key + '_rct']:.2f})")
        table.add_row("checkpoint", str(result.out / "best.pt"))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("train-harmonizer")(train_harmonizer)
