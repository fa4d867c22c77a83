"""Training DoveNet on a dataset's own real faces (`dfpipe train-harmonizer`).

Losses as the paper / spec: 100 x L1(harmonized, real) plus hinge adversarial terms from
the global and the domain-verification discriminators (1 : 1), each discriminator with a
gradient penalty of weight 10. Adam 2e-4, betas (0.5, 0.999). Mixed precision on CUDA.

Run folder `out/`:
  last.pt      full state after the latest epoch (model, optimizers, scalers, RNG, history),
               written by `dfpipe.runtime.checkpoint` as the detector trainer's (atomic,
               weights_only); a re-run of the same command resumes from it and ends where an
               uninterrupted run would
  best.pt      averaged (EMA) generator + config of the epoch with the lowest held-out fMSE (what
               `Harmonizer.from_checkpoint` and `--blend dovenet` read)
  metrics.csv  one row per epoch: train losses and held-out MSE / PSNR / fMSE for the
               harmonized output, the composite input and the `rct` baseline
  tb/          TensorBoard scalars
  samples/     epoch_XXXX.png grids, one held-out face per row: composite | harmonized | real
All checkpoints hold only tensors and plain Python values, so they load with
`torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from dfpipe.models.dovenet import MODEL_NAME, DoveNet, build_dovenet, load_dovenet_checkpoint, mask_tensor, to_tensor
from dfpipe.runtime.checkpoint import CheckpointError, plain, rng_state, save_checkpoint, set_rng_state
from dfpipe.runtime.device import DeviceError, resolve_device
from dfpipe.runtime.files import atomic_write
from dfpipe.runtime.progress import progress_bar
from dfpipe.train.harmonizer_data import HarmonizationDataset, LoadReport, load_faces, rct_baseline, split_by_video

log = logging.getLogger(__name__)

L1_WEIGHT, ADV_WEIGHT, GP_WEIGHT = 100.0, 1.0, 10.0
#: EMA decay per step, warmed up as min(EMA_DECAY, (1 + n) / (10 + n)) so early, fast-moving
#: weights do not linger (a plain 0.99 EMA lagged a CPU-budget run by ~100 steps)
EMA_DECAY = 0.999
#: composites per held-out face: more, different recolourings make steadier figures
VAL_REPEATS = 4


class HarmonizerTrainError(ValueError):
    """Bad arguments or a run folder that does not fit them."""


@dataclass
class TrainResult:
    out: Path
    epochs_done: int
    steps: int
    minutes: float
    n_train: int
    n_val: int
    best_epoch: int
    best_metrics: dict
    last_metrics: dict
    param_counts: dict
    load_report: LoadReport
    history: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------- losses


def gradient_penalty(d: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(||grad D(x)|| - 1)^2 at random points between real and harmonized images."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x, mask).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def _ema_fn(decay: float):
    def avg(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return averaged * d + current * (1.0 - d) if averaged.is_floating_point() else current

    return avg


def d_hinge(d: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - d(real, mask)).mean() + F.relu(1.0 + d(fake, mask)).mean()


# --------------------------------------------------------------------------- metrics


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def image_metrics(pred: np.ndarray, real: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """MSE and PSNR on 0..255 over the image, fMSE = MSE inside the mask (iHarmony4)."""
    err = ((pred.astype(np.float64) - real.astype(np.float64)) ** 2).mean(axis=-1)
    mse = float(err.mean())
    inside = mask > 127
    fmse = float(err[inside].mean()) if inside.any() else 0.0
    psnr = 10.0 * math.log10(255.0**2 / max(mse, 1e-10))
    return mse, psnr, fmse


class Validator:
    """Held-out figures for the model, the composite input and the `rct` baseline; the
    composites are fixed, so figures are comparable across epochs. `*_untouched` is the
    model run on the real image itself: what it damages in a face that already fits."""

    def __init__(self, data: HarmonizationDataset, batch_size: int, n_samples: int = 8) -> None:
        self.samples = [data.sample(i) for i in range(len(data))]
        self.batch_size = batch_size
        self.n_samples = n_samples
        self.baselines: dict[str, float] = {}
        for name, pick in (("composite", lambda s: s["composite"]),
                           ("rct", lambda s: rct_baseline(s["composite"], s["mask"]))):
            rows = np.array([image_metrics(pick(s), s["real"], s["mask"]) for s in self.samples])
            mse, psnr, fmse = (float(v) for v in rows.mean(0))  # plain floats: weights_only checkpoints
            self.baselines.update({f"mse_{name}": mse, f"psnr_{name}": psnr, f"fmse_{name}": fmse})

    @torch.no_grad()
    def __call__(self, generator: torch.nn.Module, device: torch.device) -> tuple[dict, np.ndarray]:
        generator.eval()
        rows, untouched, outputs = [], [], []
        for start in range(0, len(self.samples), self.batch_size):
            chunk = self.samples[start : start + self.batch_size]
            mask = torch.stack([mask_tensor(s["mask"]) for s in chunk]).to(device)
            for key, into in (("composite", rows), ("real", untouched)):
                x = torch.stack([to_tensor(s[key]) for s in chunk]).to(device)
                pred = to_uint8(generator(x, mask) * mask + x * (1 - mask))  # as DoveNet.forward
                for s, p in zip(chunk, pred):
                    into.append(image_metrics(p, s["real"], s["mask"]))
                    if key == "composite" and len(outputs) < self.n_samples:
                        outputs.append(p)
        generator.train()
        mse, psnr, fmse = np.array(rows).mean(0)
        mse_u, psnr_u, fmse_u = np.array(untouched).mean(0)
        grid = np.concatenate(
            [np.concatenate([s["composite"], p, s["real"]], axis=1) for s, p in zip(self.samples, outputs)], axis=0
        )
        return {"mse": float(mse), "psnr": float(psnr), "fmse": float(fmse), **self.baselines,
                "mse_untouched": float(mse_u), "psnr_untouched": float(psnr_u), "fmse_untouched": float(fmse_u)}, grid


# --------------------------------------------------------------------------- run-folder files


def _write_csv(history: list[dict], path: Path) -> None:
    if not history:
        return
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def _write_grid(grid: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


# --------------------------------------------------------------------------- the loop


class HarmonizerTrainer:
    """One optimisation step at a time; separate from I/O so tests can step it directly."""

    def __init__(self, model: DoveNet, device: torch.device, lr: float = 2e-4, ema_decay: float = EMA_DECAY) -> None:
        self.model = model.to(device)
        # validation, best.pt and inference use an exponential moving average of the
        # generator (weights and BatchNorm statistics): single GAN steps swing the output
        self.ema = AveragedModel(model.generator, avg_fn=_ema_fn(ema_decay), use_buffers=True)
        self.device = device
        self.amp = device.type == "cuda"
        self.opt_g = torch.optim.Adam(model.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        d_params = [*model.global_d.parameters(), *model.domain_d.parameters()]
        self.opt_d = torch.optim.Adam(d_params, lr=lr, betas=(0.5, 0.999))
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step_count = 0

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def step(self, batch: dict) -> dict[str, float]:
        m = self.model
        comp = batch["composite"].to(self.device, non_blocking=True)
        real = batch["real"].to(self.device, non_blocking=True)
        mask = batch["mask"].to(self.device, non_blocking=True)
        with self._autocast():
            fake = m(comp, mask)
        # discriminators: hinge on real vs harmonized, gradient penalty in fp32
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            loss_dg = d_hinge(m.global_d, real, fake.detach(), mask)
            loss_dd = d_hinge(m.domain_d, real, fake.detach(), mask)
        fake32 = fake.detach().float()
        gp = gradient_penalty(m.global_d, real, fake32, mask) + gradient_penalty(m.domain_d, real, fake32, mask)
        self.scaler_d.scale(loss_dg + loss_dd + GP_WEIGHT * gp).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        # generator: L1 to the real face + fool both discriminators
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            l1 = F.l1_loss(fake.float(), real)
            adv_g = -m.global_d(fake, mask).float().mean()
            adv_d = -m.domain_d(fake, mask).float().mean()
            loss_g = L1_WEIGHT * l1 + ADV_WEIGHT * (adv_g + adv_d)
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self.ema.update_parameters(m.generator)
        self.step_count += 1
        return {"l1": l1.item(), "g_adv_global": adv_g.item(), "g_adv_domain": adv_d.item(),
                "d_global": loss_dg.item(), "d_domain": loss_dd.item(), "gp": gp.item()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
                "ema": self.ema.state_dict(), "step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.ema.load_state_dict(state["ema"])
        if state.get("scaler_g"):
            self.scaler_g.load_state_dict(state["scaler_g"])
        if state.get("scaler_d"):
            self.scaler_d.load_state_dict(state["scaler_d"])
        self.step_count = int(state["step"])


def train_harmonizer(
    dataset: str | Path,
    out: str | Path,
    size: int = 256,
    epochs: int = 50,
    tiny: bool = False,
    device: str = "auto",
    batch_size: int = 8,
    lr: float = 2e-4,
    val_fraction: float = 0.15,
    max_faces: int | None = None,
    seed: int = 0,
    workers: int = 0,
    max_minutes: float | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train DoveNet on `dataset`'s real faces into the run folder `out` (see module doc).

    Re-running with the same arguments resumes from `out/last.pt`; `epochs` may be raised
    to continue a finished run. `max_minutes` stops before an epoch that would not finish
    within the budget (benchmarks; the checkpoint stays resumable).
    """
    if epochs < 1:
        raise HarmonizerTrainError(f"--epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise HarmonizerTrainError(f"--batch-size must be at least 1, got {batch_size}")
    if not 0.0 < val_fraction < 1.0:
        raise HarmonizerTrainError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    try:
        dev = resolve_device(device)
    except DeviceError as exc:
        raise HarmonizerTrainError(str(exc)) from exc
    out = Path(out)
    torch.manual_seed(seed)
    try:
        model = build_dovenet(tiny=tiny, img_size=size)
    except ValueError as exc:
        raise HarmonizerTrainError(f"--size {size}: {exc}") from exc
    args = {"size": size, "tiny": tiny, "batch_size": batch_size, "lr": lr, "val_fraction": val_fraction,
            "max_faces": max_faces if max_faces is not None else -1, "seed": seed}

    items, report = load_faces(dataset, max_faces=max_faces, seed=seed)
    train_idx, val_idx = split_by_video(items, val_fraction, seed)
    train_data = HarmonizationDataset(items, train_idx, size, train=True, seed=seed)
    val_data = HarmonizationDataset(items, val_idx, size, train=False, seed=seed, repeats=VAL_REPEATS)
    validator = Validator(val_data, batch_size)
    trainer = HarmonizerTrainer(model, dev, lr)

    out.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    start_epoch, best = 0, {"epoch": -1, "fmse": math.inf}
    last_path = out / "last.pt"
    if resume and last_path.exists():
        try:
            ckpt = load_dovenet_checkpoint(last_path)
        except CheckpointError as exc:
            raise HarmonizerTrainError(str(exc)) from exc
        if ckpt.get("train_args") != args:
            raise HarmonizerTrainError(
                f"{last_path} was written with {ckpt.get('train_args')}, not {args}; use another --out or --no-resume"
            )
        trainer.load_state_dict(ckpt)
        set_rng_state(ckpt["rng"])
        start_epoch, best, history = int(ckpt["epoch"]), dict(ckpt["best"]), list(ckpt["history"])
        log.info("resuming %s at epoch %d", out, start_epoch)

    from torch.utils.tensorboard import SummaryWriter

    t0 = time.perf_counter()
    epoch_times: list[float] = []
    with progress_bar(progress) as bar, closing(
        SummaryWriter(str(out / "tb"), purge_step=trainer.step_count if start_epoch else None)
    ) as tb:
        task = bar.add_task("training", total=epochs, completed=start_epoch)
        for epoch in range(start_epoch, epochs):
            elapsed = time.perf_counter() - t0
            if max_minutes is not None and epoch_times and elapsed + np.median(epoch_times) > 60 * max_minutes:
                break
            te = time.perf_counter()
            train_data.set_epoch(epoch)
            loader = DataLoader(
                train_data, batch_size=min(batch_size, len(train_data)), shuffle=True, drop_last=True,
                num_workers=workers, generator=torch.Generator().manual_seed(seed * 100_003 + epoch),
                pin_memory=dev.type == "cuda", persistent_workers=False,
            )
            sums: dict[str, float] = {}
            for batch in loader:
                losses = trainer.step(batch)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                    tb.add_scalar(f"train/{k}", v, trainer.step_count)
            n = max(1, len(loader))
            metrics, grid = validator(trainer.ema.module, dev)
            row = plain({"epoch": epoch + 1, "step": trainer.step_count,
                         **{k: v / n for k, v in sums.items()},
                         **{f"val_{k}": v for k, v in metrics.items()}})
            history.append(row)
            for k, v in metrics.items():
                tb.add_scalar(f"val/{k}", v, epoch + 1)
            _write_grid(grid, out / "samples" / f"epoch_{epoch + 1:04d}.png")
            if metrics["fmse"] < best["fmse"]:
                best = {"epoch": epoch + 1, "fmse": metrics["fmse"]}
                save_checkpoint({"model_name": MODEL_NAME, "config": model.config_dict(),
                                 "generator": trainer.ema.module.state_dict(), "epoch": epoch + 1,
                                 "metrics": metrics, "train_args": args}, out / "best.pt")
            save_checkpoint({"model_name": MODEL_NAME, "config": model.config_dict(),
                             **trainer.state_dict(), "epoch": epoch + 1, "best": best,
                             "history": history, "train_args": args, "rng": rng_state()}, last_path)
            _write_csv(history, out / "metrics.csv")
            epoch_times.append(time.perf_counter() - te)
            bar.update(task, advance=1, description=f"epoch {epoch + 1} val fMSE {metrics['fmse']:.1f}")

    by_epoch = {int(r["epoch"]): r for r in history}
    best_row = by_epoch.get(best["epoch"], {})
    strip = lambda r: {k[4:]: v for k, v in r.items() if k.startswith("val_")}  # noqa: E731
    return TrainResult(
        out=out, epochs_done=len(history), steps=trainer.step_count, minutes=(time.perf_counter() - t0) / 60,
        n_train=len(train_idx), n_val=len(val_idx), best_epoch=best["epoch"], best_metrics=strip(best_row),
        last_metrics=strip(history[-1]) if history else {}, param_counts=model.param_counts(),
        load_report=report, history=history,
    )

