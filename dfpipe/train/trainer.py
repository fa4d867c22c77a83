"""The training loop shared by M2TR and MAT.

The trainer knows models only through the contract in docs/architecture.md: it calls
`model(x, target=y, mask=m)` and back-propagates `out["loss"]`, so DDP wraps every model
the same way and each model keeps its own losses. One optimizer step is `accum`
micro-batches; `batch` is the total batch of one step across all processes.

A run folder holds `config.json`, `last.pt` (written at every epoch end, and every
`save_every` steps), `best.pt` (best validation AUC; the test split is never looked
at), `metrics.csv` (one row per epoch), `steps.csv` (one row per `log_every` steps) and
TensorBoard events under `tb/`. `resume=True` continues from `last.pt` exactly: model,
optimizer, scheduler, scaler, RNG states, epoch, step and position inside the epoch.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from dfpipe.models.registry import CATALOGUE, count_parameters, list_models
from dfpipe.runtime.checkpoint import load_checkpoint, plain, rng_state, save_checkpoint, set_rng_state
from dfpipe.runtime.progress import progress_bar
from dfpipe.runtime.runinfo import read_run
from dfpipe.train import distributed as ddp
from dfpipe.train.augment import preset
from dfpipe.train.data import (
    FaceIndex,
    FaceStream,
    ImageSpec,
    StreamConfig,
    dataset_dirs,
    load_index,
    make_loader,
    with_self_blends,
)
from dfpipe.train.shards import one_or_many, readable_datasets
from dfpipe.train.sbi import check_fakes
from dfpipe.train.splits import split_counts
from dfpipe.train.inference import autocast, score_stream
from dfpipe.train.metrics import evaluate_scores

#: Each model's training recipe (M2TR: official code; MAT: the paper).
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "m2tr": {"optimizer": "sgd", "lr": 5e-4, "weight_decay": 0.0},
    "mat": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6},
}
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")


class TrainError(ValueError):
    """Bad training arguments, caught before any work starts."""


def check_validation(index: FaceIndex) -> None:
    """Refuse to train without a validation split holding both classes: no best.pt could be
    chosen, and an exit 0 without a model misleads. Says what the splits hold and what to do."""
    val = index.select("val")
    classes = set(val["label"]) & {"real", "fake"}
    if len(classes) == 2:
        return
    counts = split_counts(index.select(None))
    held = "; ".join(f"{name}: {c['videos']} videos ({c['real']} real, {c['fake']} fake faces)"
                     for name, c in counts.items())
    what = "is empty" if val.empty else f"holds only {classes.pop() if classes else 'unlabelled'} faces"
    raise TrainError(
        f"{index.name}: the validation split {what}, so no model could be chosen ({held}). "
        "Add videos (splits are made by source group: each needs real and fake videos from several "
        "sources), or name the splits yourself: a `split` column (train/val/test) in a listing for "
        "`dfpipe ingest list`, or val/ and test/ folders for `dfpipe ingest folders`"
    )


@dataclass
class TrainConfig:
    """Everything that decides what a run computes (saved as config.json and in checkpoints).
    Built by `train`, whose signature holds the defaults."""

    dataset_dir: str | list[str]  # one dataset directory, or several read as one
    model: str
    out: str
    epochs: int
    batch: int
    lr: float | None
    optimizer: str | None
    weight_decay: float | None
    momentum: float
    schedule: str
    step_size: int  # epochs, for schedule="step"
    gamma: float
    accum: int
    workers: int
    tiny: bool
    pretrained: bool
    model_cfg: dict[str, Any]
    seed: int
    amp: bool
    device: str | None
    balance: bool
    augment: str  # full (M2TR recipe), light (flip + colour), none
    buffer: int
    max_steps: int | None  # optimizer steps per epoch at most (quick tries, tests)
    stop_after: int | None  # leave after this many epochs of this invocation (job time limits)
    save_every: int | None  # also write last.pt every N optimizer steps
    log_every: int
    progress: bool
    fakes: str = "dataset"  # dataset (stored fakes), sbi (fresh self-blends of the reals), sbi+dataset
    backbone_weights: str | None = None  # the trunk's starting weights: a local file (dfpipe.train.backbone)
    backbone_sha256: str | None = None  # that file's sha256 as read (checked against --backbone-sha256)

    def model_name(self) -> str:
        return self.model.removesuffix("_tiny")

    def datasets(self) -> list[Path]:
        return dataset_dirs(self.dataset_dir)

    def model_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.model_cfg)
        if self.tiny or self.model.endswith("_tiny"):
            kwargs["tiny"] = True
        return kwargs

    def recipe(self) -> dict[str, Any]:
        """Optimizer name, lr and weight decay: the given ones, else the model's."""
        base = OPTIMIZER_DEFAULTS.get(self.model_name(), OPTIMIZER_DEFAULTS["m2tr"])
        return {
            "optimizer": self.optimizer or base["optimizer"],
            "lr": self.lr if self.lr is not None else base["lr"],
            "weight_decay": self.weight_decay if self.weight_decay is not None else base["weight_decay"],
        }

    def check(self) -> None:
        detectors = list_models(kind="detector")
        if self.model not in detectors:
            what = f"a {CATALOGUE[self.model].kind}" if self.model in CATALOGUE else "an unknown model"
            raise TrainError(f"--model {self.model!r} is {what}; train one of the detectors: {', '.join(detectors)}")
        for d in self.datasets():
            if not d.is_dir():
                raise TrainError(f"{d}: no such dataset directory")
        try:
            check_fakes(self.fakes)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        for name in ("epochs", "batch", "accum", "buffer", "log_every"):
            if getattr(self, name) < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "stop_after", "save_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise TrainError(f"--workers must be >= 0, got {self.workers}")
        if self.recipe()["optimizer"] not in OPTIMIZERS:
            raise TrainError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        preset(self.augment)
        if self.schedule not in SCHEDULES:
            raise TrainError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")


def parse_model_cfg(items: Sequence[str] | dict | None) -> dict[str, Any]:
    """`["input_size=96", "depth=2", "freq=fft-filter"]` -> dict; values are JSON when they parse."""
    if items is None:
        return {}
    if isinstance(items, dict):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TrainError(f"--model-cfg expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def offline() -> bool:
    return os.environ.get("DFPIPE_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


# --------------------------------------------------------------------------- building blocks


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    r = cfg.recipe()
    params = [p for p in model.parameters() if p.requires_grad]
    if r["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=r["lr"], momentum=cfg.momentum, weight_decay=r["weight_decay"])
    if r["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=r["lr"], weight_decay=r["weight_decay"])
    return torch.optim.AdamW(params, lr=r["lr"], weight_decay=r["weight_decay"])


class LRFactor:
    """Learning-rate factor per optimizer step (a picklable callable for LambdaLR)."""

    def __init__(self, schedule: str, total_steps: int, steps_per_epoch: int, step_size: int, gamma: float) -> None:
        self.schedule, self.total, self.per_epoch = schedule, max(total_steps, 1), max(steps_per_epoch, 1)
        self.step_size, self.gamma = step_size, gamma

    def __call__(self, step: int) -> float:
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, self.total) / self.total))
        if self.schedule == "step":
            return self.gamma ** ((step // self.per_epoch) // self.step_size)
        return 1.0


def micro_batches_per_epoch(stream: FaceStream, micro: int, workers: int) -> int:
    """Batches the DataLoader yields per epoch on this rank (each worker ends with a partial one)."""
    return sum(-(-len(c) // micro) for c in np.array_split(np.arange(len(stream)), max(workers, 1)))


class CsvLog:
    """Append rows to a CSV whose header is fixed by the first row written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if path.is_file():
            with open(path, newline="") as fh:
                self.fields = next(csv.reader(fh), None)

    def write(self, row: dict[str, Any]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


# --------------------------------------------------------------------------- the run


class _Run:
    """One process's share of a training run."""

    def __init__(self, cfg: TrainConfig, info: ddp.DistInfo, resume: bool = False) -> None:
        self.cfg, self.info = cfg, info
        self.out = Path(cfg.out)
        self.device = info.device
        self.use_amp = cfg.amp and self.device.type == "cuda"
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_everything(cfg.seed)
        from dfpipe.train.backbone import build_model

        self.model = build_model(cfg, resume).to(self.device)  # resume: last.pt holds every weight
        self.spec = ImageSpec.from_default_cfg(self.model.default_cfg)
        self.extract_params = plain(read_run(cfg.datasets()[0]).get("stages", {}).get("extract", {}).get("params", {}))
        self.index: FaceIndex = with_self_blends(load_index(cfg.datasets(), seed=cfg.seed, keep_splits=info.main),
                                                 cfg.fakes)
        check_validation(self.index)
        per_step = info.world_size * cfg.accum
        if cfg.batch % per_step:
            raise TrainError(f"--batch {cfg.batch} must be divisible by processes x --accum = {per_step}")
        self.micro = cfg.batch // per_step
        self.train_stream = FaceStream(
            self.index,
            StreamConfig("train", self.spec, train=True, balance=cfg.balance, shuffle=True, buffer=cfg.buffer, seed=cfg.seed,
                         augment=preset(cfg.augment)),
            info.rank, info.world_size,
        )
        self.val_stream = FaceStream(self.index, StreamConfig("val", self.spec), info.rank, info.world_size)  # checked above
        n_mb = micro_batches_per_epoch(self.train_stream, self.micro, cfg.workers)
        if cfg.max_steps is not None:
            n_mb = min(n_mb, cfg.max_steps * cfg.accum)
        self.n_mb = n_mb
        self.steps_per_epoch = -(-n_mb // cfg.accum)
        self.net: nn.Module = self.model
        if info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=True)
        self.optimizer = build_optimizer(self.model, cfg)
        self.lr_factor = LRFactor(cfg.schedule, self.steps_per_epoch * cfg.epochs, self.steps_per_epoch, cfg.step_size,
                                  cfg.gamma)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch, self.step, self.mb_done = 0, 0, 0
        self.best: dict[str, Any] = {"auc": None, "epoch": None}
        self.history: list[dict[str, Any]] = []
        torch.manual_seed(cfg.seed * 1000 + info.rank)  # dropout / AGDA differ per rank

    # -- checkpoints -----------------------------------------------------------

    def payload(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "model_name": self.cfg.model_name(),
            "model_kwargs": plain(self.cfg.model_kwargs()),
            "default_cfg": plain(dict(self.model.default_cfg)),
            "config": plain(asdict(self.cfg)),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,  # one state per rank
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.mb_done,
            "world_size": self.info.world_size,
            "best": dict(self.best),
            "history": plain(self.history),
            "num_params": count_parameters(self.model),
            "extract": self.extract_params,  # how the training crops were made (predict repeats it)
        }

    def save(self, name: str) -> None:
        """Collective: every rank hands in its RNG state, the main process writes."""
        rng = ddp.gather_objects(rng_state(), self.info)
        if self.info.main:
            save_checkpoint(self.payload(rng), self.out / name)

    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt["model_name"] != self.cfg.model_name() or ckpt["model_kwargs"] != plain(self.cfg.model_kwargs()):
            raise TrainError(f"{path} is a {ckpt['model_name']} {ckpt['model_kwargs']} run, not {self.cfg.model_name()} "
                             f"{plain(self.cfg.model_kwargs())}; use another --out or the same model options")
        if ckpt["world_size"] != self.info.world_size and ckpt["batch_in_epoch"]:
            raise TrainError(f"{path} stopped mid-epoch with {ckpt['world_size']} processes; resume with the same number")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scheduler.lr_lambdas = [self.lr_factor]  # this invocation's --epochs / --schedule decide
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step, self.mb_done = ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"]
        self.best = dict(ckpt["best"])
        self.history = list(ckpt["history"])
        # the weights that started the run, whatever this invocation names (config.json keeps them)
        self.cfg.backbone_weights = ckpt["config"].get("backbone_weights")
        self.cfg.backbone_sha256 = ckpt["config"].get("backbone_sha256")
        states = ckpt["rng"]
        if len(states) == self.info.world_size:
            set_rng_state(states[self.info.rank])
        else:  # another process count: fresh per-rank streams from the saved one
            set_rng_state(states[0])
            torch.manual_seed(int(torch.randint(0, 2**31, (1,)).item()) + self.info.rank)

    # -- one epoch -------------------------------------------------------------

    def train_epoch(self, progress: Callable[[float], None]) -> dict[str, float]:
        """One epoch from where the last one stopped; `progress(loss)` after each optimizer step."""
        cfg = self.cfg
        self.net.train()
        self.train_stream.set_epoch(self.epoch, skip_batches=self.mb_done, batch_size=self.micro)
        loader = make_loader(self.train_stream, self.micro, cfg.workers, pin_memory=self.device.type == "cuda")
        sums: dict[str, float] = {}
        seen = 0
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(loader, start=self.mb_done):
            if i >= self.n_mb:
                break
            group_start = (i // cfg.accum) * cfg.accum
            group_len = min(cfg.accum, self.n_mb - group_start)
            last_in_group = i == group_start + group_len - 1
            x = batch["image"].to(self.device, non_blocking=True)
            y = batch["label"].to(self.device)
            mask = batch["mask"].to(self.device)
            mask[~batch["mask_known"].to(self.device)] = float("nan")  # unknown masks (see models)
            sync = self.net.no_sync() if (self.info.distributed and not last_in_group) else nullcontext()
            with sync:
                with autocast(self.device, self.use_amp):
                    out = self.net(x, target=y, mask=mask)
                loss = out["loss"].float()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at epoch {self.epoch} step {self.step}")
                self.scaler.scale(loss / group_len).backward()
            for k, v in {"loss": loss.detach(), **out.get("losses", {})}.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(y)
            seen += len(y)
            if last_in_group:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.step += 1
                self.mb_done = i + 1
                progress(float(loss.detach()))
                if self.step % cfg.log_every == 0:
                    self.log_step(loss, out)
                if cfg.save_every and self.step % cfg.save_every == 0 and self.mb_done < self.n_mb:
                    self.save("last.pt")
        del loader
        return {k: v / max(seen, 1) for k, v in sums.items()}

    def log_step(self, loss: torch.Tensor, out: dict) -> None:
        if not self.info.main:
            return
        row = {"epoch": self.epoch, "step": self.step, "lr": self.scheduler.get_last_lr()[0], "loss": float(loss.detach())}
        row.update({k: float(v) for k, v in out.get("losses", {}).items()})
        self.steps_log.write(row)
        for k, v in row.items():
            if k not in ("epoch", "step"):
                self.tb.add_scalar(f"train/{k}", v, self.step)

    def validate(self) -> dict[str, Any]:
        rows, probs = score_stream(self.model, self.val_stream, self.micro * self.cfg.accum, self.device,
                                   workers=self.cfg.workers, amp=self.use_amp)
        parts = ddp.gather_objects((rows, probs), self.info)
        rows = np.concatenate([p[0] for p in parts])
        probs = np.concatenate([p[1] for p in parts])
        table = self.index.table.loc[rows, ["video_id", "y", "method", "compression"]].rename(columns={"y": "label"})
        table["prob"] = probs
        return evaluate_scores(table.reset_index(drop=True))

    # -- the whole run ---------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        main = self.info.main
        if main:
            from torch.utils.tensorboard import SummaryWriter

            self.out.mkdir(parents=True, exist_ok=True)
            # the values used: the model's recipe where the user left optimizer, lr or decay out
            (self.out / "config.json").write_text(json.dumps(plain({**asdict(cfg), **cfg.recipe()}), indent=2) + "\n")
            self.tb = SummaryWriter(str(self.out / "tb"))
            self.steps_log = CsvLog(self.out / "steps.csv")
            self.epochs_log = CsvLog(self.out / "metrics.csv")
        started = time.perf_counter()
        bar = _EpochBar(cfg.progress and main, self.steps_per_epoch, cfg.epochs)
        last_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, self.epoch + cfg.stop_after)
        try:
            while self.epoch < last_epoch:
                t0 = time.perf_counter()
                bar.start(self.epoch, self.step - self.epoch * self.steps_per_epoch)
                train_stats = self.train_epoch(bar.advance)
                on_end = getattr(self.model, "on_epoch_end", None)
                if callable(on_end):
                    on_end()
                metrics = self.validate()
                self.epoch += 1
                self.mb_done = 0
                record = self.epoch_record(train_stats, metrics, time.perf_counter() - t0)
                self.history.append(record)
                improved = self.is_better(record)
                if improved:
                    self.best = {"auc": record["val_auc"], "logloss": record["val_logloss"], "epoch": self.epoch}
                self.save("last.pt")
                if improved:
                    self.save("best.pt")
                if main:
                    self.epochs_log.write(record)
                    for k, v in record.items():
                        if k != "epoch" and v is not None and not (isinstance(v, float) and math.isnan(v)):
                            self.tb.add_scalar(f"epoch/{k}", v, self.epoch)
                    bar.epoch_done(record)
                ddp.barrier(self.info)
        finally:
            bar.stop()
            if main:
                self.tb.close()
        return {
            "out": str(self.out),
            "epochs": self.epoch,
            "steps": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "best": self.best,
            "history": self.history,
            "seconds": time.perf_counter() - started,
            "num_params": count_parameters(self.model),
            "n_train": len(self.train_stream) * self.info.world_size,
            "n_val": int(len(self.index.select("val"))),
            "splits": split_counts(self.index.select(None)),
        }

    def is_better(self, record: dict[str, Any]) -> bool:
        """Higher validation AUC; on a tie (a small validation set saturates at 1.0) the
        lower validation log loss."""
        auc = record.get("val_auc")
        if auc is None or math.isnan(auc):
            return False
        if self.best["auc"] is None or auc > self.best["auc"]:
            return True
        return auc == self.best["auc"] and record["val_logloss"] < self.best.get("logloss", math.inf)

    def epoch_record(self, train_stats: dict[str, float], metrics: dict, seconds: float) -> dict[str, Any]:
        rec: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "lr": self.scheduler.get_last_lr()[0]}
        rec.update({f"train_{k}": v for k, v in train_stats.items()})
        rec.update({f"val_{k}": metrics["frame"][k] for k in ("auc", "acc", "eer", "ap", "logloss")})
        rec["val_video_auc"] = metrics["video"]["auc"]
        rec["seconds"] = seconds
        return rec


class _EpochBar:
    """One `runtime.progress` bar per epoch with the running loss, and a line per finished
    epoch, on the main process only."""

    def __init__(self, enabled: bool, total: int, epochs: int) -> None:
        self.enabled, self.total, self.epochs = enabled, total, epochs
        self.bar = progress_bar(enabled)
        self.task = None
        self.title = ""

    def start(self, epoch: int, done: int) -> None:
        self.bar.start()  # no-op once started
        self.title = f"epoch {epoch + 1}/{self.epochs}"
        self.task = self.bar.add_task(self.title, total=self.total, completed=done)

    def advance(self, loss: float) -> None:
        self.bar.update(self.task, advance=1, description=f"{self.title} loss {loss:.4f}")

    def epoch_done(self, record: dict[str, Any]) -> None:
        if self.enabled and "val_auc" in record:
            self.bar.console.print(
                f"epoch {record['epoch']}: train loss {record.get('train_loss', float('nan')):.4f}  "
                f"val AUC {record['val_auc']:.4f}  ACC {record['val_acc']:.4f}"
            )

    def stop(self) -> None:
        self.bar.stop()


def _run_process(cfg_dict: dict[str, Any], resume: bool, result_path: str | None = None) -> dict[str, Any] | None:
    """One process of a run (torchrun, spawn, or the only one); the summary on the main one."""
    cfg = TrainConfig(**cfg_dict)
    info = ddp.init(cfg.device)
    try:
        run = _Run(cfg, info, resume)
        last = Path(cfg.out) / "last.pt"
        if resume:
            if not last.is_file():
                raise TrainError(f"--resume: {last} does not exist")
            run.restore(last)
        summary = run.run()
        if not info.main:
            return None
        if result_path:
            Path(result_path).write_text(json.dumps(plain(summary)))
        return summary
    finally:
        ddp.shutdown()


#: how a video's score is made from its frames: their mean, or the VTF head beside it
FUSIONS = ("mean", "vtf")


def train(
    dataset_dir: str | Path | Sequence[str | Path],
    model: str = "m2tr",
    out: str | Path = "runs/train",
    epochs: int = 20,
    batch: int = 32,
    lr: float | None = None,
    optimizer: str | None = None,
    weight_decay: float | None = None,
    momentum: float = 0.9,
    schedule: str = "cosine",
    step_size: int = 5,
    gamma: float = 0.5,
    accum: int = 1,
    workers: int = 2,
    tiny: bool = False,
    pretrained: bool | None = None,
    backbone_weights: str | Path | None = None,
    backbone_sha256: str | None = None,
    model_cfg: Sequence[str] | dict | None = None,
    seed: int = 0,
    amp: bool = True,
    device: str | None = None,
    gpus: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    balance: bool = True,
    augment: str = "full",
    buffer: int = 512,
    max_steps: int | None = None,
    stop_after: int | None = None,
    save_every: int | None = None,
    log_every: int = 10,
    progress: bool = True,
    fusion: str = "mean",
    fusion_epochs: int = 30,
    fusion_clip: int = 16,
    fakes: str = "dataset",
) -> dict[str, Any] | None:
    """Train `model` on the faces of `dataset_dir` (a dataset directory, or WebDataset shards
    of `dfpipe export`: a .tar, a folder of them or a glob; or a list of these, read as one
    dataset: `dfpipe.train.data.load_index`); returns a summary (the epochs are also
    in `out/metrics.csv`), or None on the non-main processes of a torchrun launch.

    `fakes`: where the fake samples come from. `dataset` (the default) reads the stored
    fakes; `sbi` self-blends every real face afresh each time it is read and ignores the
    stored fakes (SBI's recipe, `dfpipe.train.sbi`); `sbi+dataset` does both. Validation
    then holds each val real's self-blend too (drawn once, the same every epoch).

    `pretrained=None` means ImageNet weights unless offline (`DFPIPE_OFFLINE=1` or
    `HF_HUB_OFFLINE=1`), tiny or given `backbone_weights`; offline, `pretrained=True` reads
    them from timm's cache and never downloads. `backbone_weights` starts the trunk from a
    local timm checkpoint of its network instead, verified against `backbone_sha256` when
    that is given; the file's hash is kept in config.json (`dfpipe.train.backbone`). Runs from
    random weights (the offline default) check the plumbing, not results.

    `gpus=N` spawns N processes (on CUDA one per GPU; on a machine without CUDA they run on
    the CPU with gloo). Under `torchrun` each process calls this function and joins the
    process group from the environment.

    `fusion="vtf"` then trains M2TR's video-level temporal fusion head (VTF) on the frozen
    frame features of `best.pt`'s tracks (`fusion_epochs`, clips of `fusion_clip` frames) and
    stores it in `best.pt` (`dfpipe.train.fusion`); "mean" (the default) scores a video by
    the mean of its frame probabilities only.
    """
    if fusion not in FUSIONS:
        raise TrainError(f"--fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    tiny = tiny or model.endswith("_tiny")
    dirs, notes = readable_datasets(dataset_dir)  # WebDataset shards are indexed once into a cached directory
    if pretrained is None:
        pretrained = not (offline() or tiny or backbone_weights is not None)
        if offline() and not tiny and backbone_weights is None:
            notes.append("offline (DFPIPE_OFFLINE / HF_HUB_OFFLINE): the backbone starts from random weights, not "
                         "ImageNet, which checks the plumbing but gives no results; --pretrained reads timm's "
                         "weights from the Hugging Face cache, --backbone-weights FILE a local checkpoint")
    cfg = TrainConfig(
        dataset_dir=one_or_many(dirs), model=model, out=str(out), epochs=epochs, batch=batch, lr=lr, optimizer=optimizer,
        weight_decay=weight_decay, momentum=momentum, schedule=schedule, step_size=step_size, gamma=gamma, accum=accum,
        workers=workers, tiny=tiny, pretrained=pretrained, model_cfg=parse_model_cfg(model_cfg), seed=seed, amp=amp,
        device=device, balance=balance, augment=augment, buffer=buffer, max_steps=max_steps, stop_after=stop_after, save_every=save_every, log_every=log_every,
        progress=progress, fakes=fakes,
        backbone_weights=None if backbone_weights is None else str(backbone_weights), backbone_sha256=backbone_sha256,
    )
    cfg.check()
    if resume and not (Path(out) / "last.pt").is_file():
        raise TrainError(f"--resume: {Path(out) / 'last.pt'} does not exist")
    if not resume and (Path(out) / "last.pt").is_file():
        if not overwrite:
            raise TrainError(f"{out} already holds a run (last.pt): continue it with --resume, "
                             "start over with --overwrite, or choose another --out")
        for name in ("last.pt", "best.pt", "metrics.csv", "steps.csv"):
            (Path(out) / name).unlink(missing_ok=True)
    from dfpipe.train.backbone import check_backbone

    notes += check_backbone(cfg, resume)  # file, pin and fit, or offline --pretrained's cache: before any work
    cfg_dict = asdict(cfg)
    if gpus is not None and gpus > 1 and "WORLD_SIZE" not in os.environ:
        if torch.cuda.is_available() and torch.cuda.device_count() < gpus:
            raise TrainError(f"--gpus {gpus}: only {torch.cuda.device_count()} CUDA devices")
        result = Path(out) / ".summary.json"
        Path(out).mkdir(parents=True, exist_ok=True)
        ddp.spawn(_run_process, gpus, cfg_dict=cfg_dict, resume=resume, result_path=str(result))
        summary = json.loads(result.read_text())
        result.unlink()
    else:
        summary = _run_process(cfg_dict, resume)
    if summary is not None:
        summary["notes"] = notes
        if fusion == "vtf" and summary["best"]["epoch"] is None:
            notes.append("--fusion vtf: no best.pt to fuse (the validation split is empty or has one class)")
        elif fusion == "vtf":  # the main process only: the frame model is trained and saved
            from dfpipe.train.fusion import train_fusion

            summary["fusion"] = train_fusion(Path(out) / "best.pt", dirs, clip=fusion_clip, epochs=fusion_epochs,
                                             seed=seed, device=device, amp=amp, workers=workers, progress=progress)
    return summary
