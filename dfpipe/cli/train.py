"""`dfpipe train`, `dfpipe evaluate`, `dfpipe predict`: thin layers over `dfpipe.train`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, List, Optional

import typer

from dfpipe.cli.common import EXIT_INPUT_FAILED, console, fail
from dfpipe.cli.options import library_value, option
from dfpipe.models.registry import list_models

# the library functions whose signatures hold the defaults (read without importing torch)
TRAIN = "dfpipe.train.trainer:train"
EVALUATE = "dfpipe.train.evaluate:evaluate"
PREDICT = "dfpipe.train.predict:predict"
_RECIPES = library_value("dfpipe.train.trainer:OPTIMIZER_DEFAULTS")
_EVERY = library_value("dfpipe.train.predict:DEFAULT_EVERY")


def _per_model(key: str) -> str:
    """"M2TR 0.0005, MAT 0.001": each detector's own default of a recipe setting."""
    return ", ".join(f"{name.upper()} {recipe[key]}" for name, recipe in _RECIPES.items())


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def train(
    dataset_dir: List[Path] = typer.Argument(..., metavar="DATASET...", help="Dataset directory with faces/ (from `dfpipe extract`), or WebDataset shards from `dfpipe export --format webdataset` (a .tar, a folder of them, or a quoted glob); several are read as one dataset."),
    model: str = option(TRAIN, "model", "--model", "-m", help=f"Detector: {', '.join(list_models(kind='detector'))}."),
    out: Path = option(TRAIN, "out", "--out", "-o", help="Run folder: checkpoints, logs, metrics."),
    epochs: int = option(TRAIN, "epochs", help="Epochs (the schedule spans all of them)."),
    batch: int = option(TRAIN, "batch", help="Total batch per optimizer step, over all processes and --accum."),
    lr: Optional[float] = option(TRAIN, "lr", help=f"Learning rate (default: {_per_model('lr')})."),
    optimizer: Optional[str] = option(TRAIN, "optimizer", help=f"sgd, adam or adamw (default: {_per_model('optimizer')})."),
    weight_decay: Optional[float] = option(TRAIN, "weight_decay", help=f"Weight decay (default: {_per_model('weight_decay')})."),
    momentum: float = option(TRAIN, "momentum", help="SGD momentum."),
    schedule: str = option(TRAIN, "schedule", help="cosine, step (x --gamma every --step-size epochs) or constant."),
    step_size: int = option(TRAIN, "step_size", help="Epochs between decays of the step schedule."),
    gamma: float = option(TRAIN, "gamma", help="Decay factor of the step schedule."),
    accum: int = option(TRAIN, "accum", help="Gradient accumulation: micro-batches per optimizer step."),
    workers: int = option(TRAIN, "workers", help="DataLoader worker processes per training process."),
    tiny: bool = option(TRAIN, "tiny", "--tiny", help="The model's tiny config (64 px; tests and quick tries)."),
    pretrained: Optional[bool] = option(TRAIN, "pretrained", "--pretrained/--no-pretrained",
                                        help="ImageNet backbone weights (default: on unless offline or --tiny); "
                                             "offline from timm's Hugging Face cache only."),
    backbone_weights: Optional[Path] = option(TRAIN, "backbone_weights", metavar="FILE",
                                              help="Start the backbone from FILE: a timm checkpoint of its network "
                                                   "(.pth, .pt or .safetensors)."),
    backbone_sha256: Optional[str] = option(TRAIN, "backbone_sha256", metavar="HEX",
                                            help="Refuse --backbone-weights unless its sha256 is HEX."),
    model_cfg: Optional[List[str]] = option(TRAIN, "model_cfg", "--model-cfg", help="Model option KEY=VALUE, repeatable (e.g. depth=1)."),
    seed: int = option(TRAIN, "seed", help="Seed of splits, data order, augmentation and initialisation."),
    amp: bool = option(TRAIN, "amp", help="Mixed precision on CUDA (CPU runs stay float32)."),
    device: Optional[str] = option(TRAIN, "device", help="cpu, cuda, cuda:N (default: CUDA when present)."),
    gpus: Optional[int] = option(TRAIN, "gpus", help="Spawn N processes with DDP (one per GPU; gloo on CPU without CUDA)."),
    resume: bool = option(TRAIN, "resume", "--resume", help="Continue exactly from OUT/last.pt."),
    overwrite: bool = option(TRAIN, "overwrite", "--overwrite", help="Start over in an OUT that holds a run."),
    balance: bool = option(TRAIN, "balance", help="Oversample the minority class in training."),
    augment: str = option(TRAIN, "augment", help="full (flip, colour, blur, noise, JPEG), light (flip, colour) or none."),
    buffer: int = option(TRAIN, "buffer", help="Shuffle buffer (rows) per loader worker."),
    max_steps: Optional[int] = option(TRAIN, "max_steps", help="At most this many optimizer steps per epoch."),
    stop_after: Optional[int] = option(TRAIN, "stop_after", help="Leave after this many epochs (resume later with --resume)."),
    save_every: Optional[int] = option(TRAIN, "save_every", help="Also write last.pt every N optimizer steps."),
    log_every: int = option(TRAIN, "log_every", help="Write steps.csv / TensorBoard every N steps."),
    progress: bool = option(TRAIN, "progress", help="Show a progress bar."),
    fusion: str = option(TRAIN, "fusion", help="Video-level scores: mean (of frame probabilities), or vtf: also "
                                               "train M2TR's temporal fusion head on best.pt's frame features."),
    fusion_epochs: int = option(TRAIN, "fusion_epochs", help="Epochs of the VTF head (with --fusion vtf)."),
    fusion_clip: int = option(TRAIN, "fusion_clip", help="Frames per training clip of the VTF head."),
    fakes: str = option(TRAIN, "fakes", help="Fake samples: dataset (the stored fakes), sbi (a fresh self-blend of "
                                             "each real face every time it is read), or sbi+dataset."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train M2TR or MAT on DS/faces/. Works under `torchrun -m dfpipe train ...` too.

    Splits come from the manifests (faces, then videos), else are made by video group (a
    fake stays with its source real video, videos of one named identity stay together) and
    kept in DS/splits/ for `dfpipe evaluate`. A validation split without both real and fake
    faces is an error (exit 2). best.pt is chosen by validation AUC.
    """
    from dfpipe.train.trainer import train

    try:
        summary = train(
            dataset_dir, model=model, out=out, epochs=epochs, batch=batch, lr=lr, optimizer=optimizer,
            weight_decay=weight_decay, momentum=momentum, schedule=schedule, step_size=step_size, gamma=gamma,
            accum=accum, workers=workers, tiny=tiny, pretrained=pretrained, backbone_weights=backbone_weights,
            backbone_sha256=backbone_sha256, model_cfg=model_cfg, seed=seed, amp=amp,
            device=device, gpus=gpus, resume=resume, overwrite=overwrite, balance=balance, augment=augment, buffer=buffer, max_steps=max_steps,
            stop_after=stop_after, save_every=save_every, log_every=log_every, progress=progress, fusion=fusion,
            fusion_epochs=fusion_epochs, fusion_clip=fusion_clip, fakes=fakes,
        )
    except (ValueError, RuntimeError) as exc:
        fail(str(exc))
    if summary is None:  # a non-main process under torchrun: the main one reports
        return
    if json_output:
        _print_json(summary)
        return
    from rich.table import Table

    table = Table(title=f"train {model} -> {summary['out']}")
    for col in ("epoch", "train loss", "val AUC", "val ACC", "val EER", "val AP", "video AUC"):
        table.add_column(col)
    for r in summary["history"]:
        table.add_row(str(r["epoch"]), _fmt(r.get("train_loss")), _fmt(r.get("val_auc")), _fmt(r.get("val_acc")),
                      _fmt(r.get("val_eer")), _fmt(r.get("val_ap")), _fmt(r.get("val_video_auc")))
    console.print(table)
    console.print("splits (DS/splits/): " + "; ".join(
        f"{name} {c['videos']} videos, {c['real']} real + {c['fake']} fake faces" for name, c in summary["splits"].items()))
    best = summary["best"]
    console.print(f"{summary['num_params']:,} parameters, {summary['n_train']} training faces per epoch, "
                  f"{summary['n_val']} validation faces, {summary['seconds']:.1f} s")
    if best["epoch"] is None:
        console.print("[yellow]no best.pt: the validation split is empty or has one class[/]")
    else:
        console.print(f"best.pt: epoch {best['epoch']}, val AUC {best['auc']:.4f}")
    if summary.get("fusion"):
        fu = summary["fusion"]
        console.print(f"VTF head ({fu['num_params']:,} parameters, epoch {fu['best_epoch']} of {fu['epochs']}) in best.pt: "
                      f"val video AUC {_fmt(fu['val'].get('video_auc_vtf'))} (mean of frames "
                      f"{_fmt(fu['val'].get('video_auc_mean'))})")
    for note in summary.get("notes", []):
        console.print(f"note: {note}")


def evaluate(
    checkpoint: Path = typer.Argument(..., help="A checkpoint from `dfpipe train` (best.pt or last.pt)."),
    dataset_dir: List[Path] = typer.Argument(..., metavar="DATASET...", help="Dataset directory with faces/, or WebDataset shards (as train takes them); several are read as one."),
    split: str = option(EVALUATE, "split", help="train, val, test or all."),
    report: Optional[Path] = option(EVALUATE, "report", help="Folder for metrics.json, faces.parquet and roc.png."),
    batch: int = option(EVALUATE, "batch", help="Faces per forward pass."),
    workers: int = option(EVALUATE, "workers", help="DataLoader worker processes."),
    device: Optional[str] = option(EVALUATE, "device", help="cpu, cuda, cuda:N (default: CUDA when present)."),
    amp: bool = option(EVALUATE, "amp", help="Mixed precision on CUDA."),
    progress: bool = option(EVALUATE, "progress", help="Show a progress bar."),
    fusion: str = option(EVALUATE, "fusion", help="Video-level AUC: auto (mean of frames, and VTF when the "
                                                   "checkpoint has the head), mean, or vtf."),
    by: List[str] = option(EVALUATE, "by", "--by", help="A further breakdown (repeatable): perturbation = AUC per "
                                                       "perturbation kind and level of a `dfpipe perturb` dataset."),
    fakes: str = option(EVALUATE, "fakes", help="Fakes scored: dataset (the stored ones), sbi (a self-blend of each "
                                                "real face, the same every time), or sbi+dataset."),
    json_output: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Frame AUC, ACC at 0.5, EER, AP, video AUC (mean frame probability), per method and
    per compression; with --report also the per-face table and a ROC plot."""
    from dfpipe.train.evaluate import evaluate

    try:
        result = evaluate(checkpoint, dataset_dir, split=split, report=report, batch=batch, workers=workers,
                          device=device, amp=amp, progress=progress, by=by, fusion=fusion, fakes=fakes)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc))
    if json_output:
        _print_json(result)
        return
    print_evaluation(result, " + ".join(str(d) for d in dataset_dir), split)
    if report is not None:
        console.print(f"report: {report}/metrics.json, faces.parquet, roc.png")


def print_evaluation(result: dict, dataset_dir: str | Path, split: str) -> None:
    """The metrics of `dfpipe evaluate`: all faces, then per method and per compression
    (method names wrap at their joints only, the numbers never)."""
    from rich.table import Table

    from dfpipe.cli.tables import Name, print_table

    table = Table(title=f"{result['model']} on {dataset_dir} ({split}): {result['n_faces']} faces, {result['n_videos']} videos")
    table.add_column("subset")
    for col in ("n", "AUC", "ACC", "EER", "AP", "video AUC"):
        table.add_column(col, justify="right", no_wrap=col != "video AUC")
    f, v = result["frame"], result["video"]
    table.add_row("all", str(f["n"]), _fmt(f["auc"]), _fmt(f["acc"]), _fmt(f["eer"]), _fmt(f["ap"]), _fmt(v["auc"]))
    if result.get("video_vtf"):
        vt = result["video_vtf"]
        table.add_row("videos by VTF", str(vt["n"]), _fmt(vt["auc"]), _fmt(vt["acc"]), _fmt(vt["eer"]), _fmt(vt["ap"]),
                      _fmt(vt["auc"]))
    singles = {f"{kind}-{level}" for kind, levels in result.get("robustness", {}).items() for level in levels}
    for group in ("per_method", "per_compression", "per_perturbation"):
        for name, m in result.get(group, {}).items():
            if group == "per_perturbation" and name in singles:
                continue  # in the kind x level table below
            table.add_row(Name(f"{group[4:]} {name}"), str(m["n"]), _fmt(m["auc"]), _fmt(m["acc"]), _fmt(m["eer"]),
                          _fmt(m["ap"]), _fmt(m["video_auc"]))
    print_table(table, console)
    if result.get("robustness"):
        print_robustness(result["robustness"], result.get("per_perturbation", {}).get("none"))


def print_robustness(robustness: dict[str, dict[str, float]], clean: dict | None) -> None:
    """Frame AUC by perturbation kind (rows) and level (columns), DeeperForensics-1.0's
    table, with the clean AUC beside it for reference."""
    from rich.table import Table

    from dfpipe.cli.tables import print_table

    title = "AUC by perturbation and level" + (f" (clean: {_fmt(clean['auc'])})" if clean else "")
    table = Table(title=title)
    table.add_column("kind")
    for level in ("1", "2", "3", "4", "5"):
        table.add_column(level, justify="right")
    for kind, levels in robustness.items():
        table.add_row(kind, *(_fmt(levels[lv]) if lv in levels else "-" for lv in ("1", "2", "3", "4", "5")))
    print_table(table, console)


def predict(
    checkpoint: Path = typer.Argument(..., help="A checkpoint from `dfpipe train`."),
    videos: List[Path] = typer.Argument(..., help="Video files to score."),
    every: Optional[int] = option(PREDICT, "every", help=f"Score every Nth frame (default {_EVERY})."),
    count: Optional[int] = option(PREDICT, "count", help="Score N frames spread over each video."),
    keep: str = option(PREDICT, "keep", help="Face tracks to score: all, largest or main."),
    batch: int = option(PREDICT, "batch", help="Faces per forward pass."),
    device: Optional[str] = option(PREDICT, "device", help="cpu, cuda, cuda:N (default: CUDA when present)."),
    threshold: float = option(PREDICT, "threshold", help="Probability at which a video is called fake."),
    faces: bool = option(PREDICT, "faces", "--faces", help="Also list every face's probability."),
    output: Optional[Path] = option(PREDICT, "output", "--output", "-o", help="Write the result as a JSON file."),
    fusion: str = option(PREDICT, "fusion", help="A video's prob: auto (the VTF head when the checkpoint has "
                                                 "one, else the mean of frames), mean, or vtf."),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fake probability per video and per face track. Faces are cropped the way the
    checkpoint's training data was. Exit status 1 when a video could not be scored."""
    from dfpipe.train.predict import predict

    try:
        result = predict(checkpoint, videos, every=every, count=count, keep=keep, batch=batch, device=device,
                             threshold=threshold, faces=faces, output=output, fusion=fusion)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc))
    if json_output:
        _print_json(result)
    else:
        print_predictions(result)
    if result["n_errors"]:
        raise typer.Exit(EXIT_INPUT_FAILED)


def print_predictions(result: dict) -> None:
    """A row per video of `dfpipe predict`: its path as given, whole (wrapped at `/` and
    `_`), faces, tracks, probability, label, and why it failed."""
    from rich.table import Table

    from dfpipe.cli.tables import Name, print_table

    by_vtf = any(r.get("fusion") == "vtf" for r in result["videos"])
    table = Table(title=f"{result['model']}: fake probability" + (" (videos: VTF head; tracks: mean of frames)"
                                                                   if by_vtf else ""))
    table.add_column("video")
    for col in ("faces", "tracks", "prob"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("label", no_wrap=True)
    table.add_column("status")
    for r in result["videos"]:
        status = r["status"] if r["status"] == "ok" else f"{r['error_code']}: {r['error']}"
        if r.get("truncated"):
            status += f" (truncated: {r['truncated']})"
        table.add_row(Name(r["path"]), str(r["n_faces"]), str(len(r["tracks"])), _fmt(r["prob"]), r["label"] or "-", status)
    print_table(table, console)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)
