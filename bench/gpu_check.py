"""One prepared run of dfpipe's CUDA figures, for docs/benchmarks.md.

Why: the project machine has no GPU, so the GPU side of the benchmarks is measured once, by
whoever gets a machine with one NVIDIA GPU, in a single command that cannot overrun
(`bench/gpu_check.sh` wraps this file in `timeout 480`). Every check has its own time cap
and prints its figures as it goes; one failing check prints FAIL and the others still run.

Checks (`--only NAME[,NAME]` picks some):
  retinaface  RetinaFace mobilenet0.25 frames/s at 720p and 1080p, CUDA against this CPU
  facemesh    Face Mesh faces/s on batched 192 x 192 crops, CUDA against this CPU
  extract     `extract` of a rendered real-face clip on CUDA gives the CPU's boxes (<= 1 px)
  m2tr, mat   AMP train steps at paper size: images/s, peak GPU memory, loss falling
  dovenet     DoveNet train steps at the default config: steps/s, peak GPU memory
  torchrun    `torchrun --nproc_per_node 1 -m dfpipe train` of a tiny M2TR on CUDA

All faces are real (scikit-image's astronaut, matplotlib's Grace Hopper, both public
domain and shipped inside installed packages); nothing is downloaded (DFPIPE_OFFLINE=1,
HF_HUB_OFFLINE=1, models built with pretrained=False). Without CUDA every check prints
`SKIP <check>: <reason>` and the run exits 0; the CPU baselines run only beside CUDA.

    bash bench/gpu_check.sh              # everything (about 6-7 minutes on one GPU)
    bash bench/gpu_check.sh --dry-run    # the plan, imports and weights; no work
    bash bench/gpu_check.sh --only retinaface,extract
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFPIPE_SHARED", REPO.parent / "shared"))
# never the network: weights from the cache / DFPIPE_WEIGHTS_DIR only, timm never asks the Hub
os.environ["DFPIPE_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
if "DFPIPE_WEIGHTS_DIR" not in os.environ and (SHARED / "weights").is_dir():
    os.environ["DFPIPE_WEIGHTS_DIR"] = os.pathsep.join([str(SHARED / "weights"), str(SHARED / "data" / "facemesh")])
if str(REPO) not in sys.path:  # run with a plain python3 from a clone that is not installed
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

GIB = 2**30


# --------------------------------------------------------------------------- the harness


class Skip(Exception):
    """The check cannot run on this machine (no CUDA): SKIP with this reason, not FAIL."""


class CheckTimeout(BaseException):
    """A check ran past its hard cap. BaseException, so no `except Exception` inside dfpipe
    (the stage runner turns exceptions into error rows) swallows it."""


@dataclass(frozen=True)
class Sizes:
    """How much work each check does: the real figures on CUDA, or a few seconds of the
    same code on the CPU (`--cpu-smoke`)."""

    det_frames: int  # distinct frames per resolution
    det_batch: int  # frames per detector batch on the device
    det_seconds: float  # timed seconds per configuration on the device (at least one pass)
    det_cpu_frames: int  # frames of the CPU baseline (one pass, after one warm-up frame)
    mesh_crops: int  # Face Mesh crops per device batch
    mesh_cpu_crops: int
    clip_frames: int  # frames of the extract clip (640 x 360)
    train_steps: int
    train_batch: int
    train_tiny: bool  # the models' 64-px test configs instead of the paper ones
    dove_steps: int
    dove_tiny: bool
    torchrun_steps: int


CUDA_SIZES = Sizes(det_frames=64, det_batch=32, det_seconds=4.0, det_cpu_frames=8, mesh_crops=256,
                   mesh_cpu_crops=32, clip_frames=40, train_steps=200, train_batch=32, train_tiny=False,
                   dove_steps=60, dove_tiny=False, torchrun_steps=5)
SMOKE_SIZES = Sizes(det_frames=2, det_batch=2, det_seconds=0.0, det_cpu_frames=1, mesh_crops=8, mesh_cpu_crops=4,
                    clip_frames=6, train_steps=60, train_batch=8, train_tiny=True, dove_steps=4, dove_tiny=True,
                    torchrun_steps=2)


@dataclass
class Ctx:
    """What a check gets: the device under test (CUDA, or the CPU in --cpu-smoke), sizes,
    a work folder, and its soft deadline (loops stop there and report what they measured)."""

    device: torch.device
    sizes: Sizes
    work: Path
    smoke: bool
    deadline: float = 0.0
    figures: list[str] = dataclasses.field(default_factory=list)

    @property
    def dev(self) -> str:
        return "cpu-smoke" if self.smoke else self.device.type

    def figure(self, line: str) -> None:
        print(f"  {line}", flush=True)
        self.figures.append(line)

    def left(self) -> float:
        return self.deadline - time.perf_counter()


@dataclass(frozen=True)
class Check:
    name: str
    what: str
    cap_s: int  # hard cap; loops stop at 85% of it
    fn: Callable[[Ctx], str]  # -> a short summary for the table; raises on failure


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def peak_memory(device: torch.device) -> str:
    """Peak GPU memory since the last reset, or the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return (f"peak {torch.cuda.max_memory_allocated(device) / GIB:.2f} GiB allocated "
                f"({torch.cuda.max_memory_reserved(device) / GIB:.2f} GiB reserved)")
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (cpu, no GPU memory)"


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def rate(run: Callable[[], int], device: torch.device, seconds: float, deadline: float, warmup: int = 1,
         max_calls: int = 1000) -> tuple[float, int]:
    """Items per second of `run` (which returns how many items it did): `warmup` untimed
    calls, then calls until `seconds` have passed (at least one), the deadline or `max_calls`."""
    for _ in range(warmup):
        run()
    sync(device)
    n, calls, t0 = 0, 0, time.perf_counter()
    while True:
        n += run()
        calls += 1
        now = time.perf_counter()
        if now - t0 >= seconds or now >= deadline or calls >= max_calls:
            break
    sync(device)
    return n / (time.perf_counter() - t0), n


# --------------------------------------------------------------------------- real faces


@functools.cache
def photo_faces() -> tuple[tuple[str, np.ndarray, np.ndarray], ...]:
    """(name, photo, 5 landmarks) of the largest face of each public-domain portrait, found
    once by RetinaFace on the CPU."""
    from dfpipe.media.faceclips import FACE_PHOTOS, face_photo
    from dfpipe.pipeline.faces.detect import load_detector

    det = load_detector(device="cpu", max_side=None)
    out = []
    for name in FACE_PHOTOS:
        photo = np.array(face_photo(name))  # a writable copy
        (d,) = det.detect([photo])
        if not len(d):
            raise RuntimeError(f"RetinaFace found no face in {name}")
        sides = (d.boxes[:, 2] - d.boxes[:, 0]) * (d.boxes[:, 3] - d.boxes[:, 1])
        out.append((name, photo, d.landmarks[int(np.argmax(sides))].astype(np.float64)))
    return tuple(out)


def real_frames(width: int, height: int, n: int) -> list[np.ndarray]:
    """`n` frames of a camera panning and zooming over both portraits side by side
    (dfpipe's own clip renderer), at any video size: real faces, two per frame."""
    from dfpipe.media.faceclips import camera_frames, compose_photos

    canvas, target = compose_photos(("astronaut", "grace_hopper"))
    return list(camera_frames(canvas, target, n, width, height, pan=0.4))


@dataclass
class FaceSet:
    """Aligned real crops and self-blended fakes of the same frames, with blend masks."""

    images: np.ndarray  # (N, S, S, 3) uint8, reals first then fakes
    labels: np.ndarray  # (N,) float32: 0 real, 1 fake
    masks: np.ndarray  # (N, S, S) uint8, 255 = blended (zeros for reals)
    landmarks: np.ndarray  # (N, 5, 2) in frame pixels
    matrices: np.ndarray  # (N, 2, 3) frame -> crop
    source: list[str]  # photo name of each face
    view: list[int]  # jittered view index of each face


@functools.cache
def face_set(size: int, views_per_photo: int, seed: int = 0) -> FaceSet:
    """Training faces: each portrait seen in `views_per_photo` jittered views (rotation,
    zoom and shift about the face), each view aligned to a `size` crop as extract aligns
    (5-point similarity, margin 0.4) as a real, and once more self-blended as a fake.

    The fake is dfpipe's self-blend (`SelfBlendGenerator`: SBI colour jitter, degradation,
    shift and scale of the face) with a visible RGB shift always on, pasted back with a
    blurred landmark-hull mask (`landmark_hull_mask` + `alpha_blend`), so a few hundred steps
    can learn it."""
    import cv2

    from dfpipe.pipeline.faces.align import align_matrix, transform_points, warp_crop
    from dfpipe.pipeline.masks.facemask import landmark_hull_mask
    from dfpipe.pipeline.synth.blend import alpha_blend
    from dfpipe.pipeline.synth.selfblend import SelfBlendGenerator

    rng = np.random.default_rng(seed)
    reals, fakes = [], []
    for name, photo, lm in photo_faces():
        h, w = photo.shape[:2]
        centre = tuple(float(v) for v in lm.mean(0))
        for v in range(views_per_photo):
            m = cv2.getRotationMatrix2D(centre, float(rng.uniform(-8, 8)), float(rng.uniform(1.0, 1.12)))
            m[:, 2] += rng.uniform(-0.03, 0.03, 2) * np.array([w, h])
            frame = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            pts = transform_points(lm, m)
            crop_m = align_matrix(pts, size)
            gen = SelfBlendGenerator(rng)
            shift = rng.uniform(12, 20, 3) * rng.choice([-1.0, 1.0], 3)
            gen.params = dataclasses.replace(gen.params, rgb_shift=tuple(float(s) for s in shift))
            moved, _ = gen(frame, 0, pts)
            hull = landmark_hull_mask(pts, frame.shape)
            k = 2 * max(1, int(0.04 * max(h, w))) + 1
            soft = cv2.GaussianBlur(hull, (k, k), 0)
            fake = alpha_blend(moved, frame, soft)
            reals.append((warp_crop(frame, crop_m, size), np.zeros((size, size), np.uint8), pts, crop_m, name, v))
            fakes.append((warp_crop(fake, crop_m, size), warp_crop(soft, crop_m, size), pts, crop_m, name, v))
    rows = reals + fakes
    return FaceSet(
        images=np.stack([r[0] for r in rows]),
        labels=np.array([0.0] * len(reals) + [1.0] * len(fakes), np.float32),
        masks=np.stack([r[1] for r in rows]),
        landmarks=np.stack([r[2] for r in rows]),
        matrices=np.stack([r[3] for r in rows]),
        source=[r[4] for r in rows],
        view=[r[5] for r in rows],
    )


def write_face_dataset(root: Path, size: int = 256, views_per_photo: int = 16) -> Path:
    """A dataset directory (`faces/` + `videos/`, dfpipe's schemas) of `face_set` faces:
    every 4 views of a portrait are one real 'video' and its self-blended fake; views 0-7
    train, 8-11 val, 12-15 test, so `train` finds both classes in train and val."""
    from dfpipe.manifests.codec import encode_image, encode_mask
    from dfpipe.manifests.parts import write_rows
    from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA

    if (root / "faces").is_dir():
        return root
    fs = face_set(size, views_per_photo)
    faces: dict[str, list[dict]] = {}
    videos: dict[str, dict] = {}
    for i in range(len(fs.labels)):
        fake = bool(fs.labels[i])
        clip, view = fs.view[i] // 4, fs.view[i]
        real_id = f"{fs.source[i]}_c{clip}"
        vid = f"sbi_{real_id}" if fake else real_id
        split = "train" if view < 8 else "val" if view < 12 else "test"
        faces.setdefault(vid, []).append({
            "face_id": f"{vid}-{view:04d}", "video_id": vid, "frame_index": view, "track_id": 0, "score": 1.0,
            "landmarks": fs.landmarks[i].reshape(-1).tolist(), "matrix": fs.matrices[i].reshape(-1).tolist(),
            "crop": "align", "size": size, "image_format": "png", "image": encode_image(fs.images[i]),
            "mask": encode_mask(fs.masks[i]) if fake else None, "mask_source": "synth" if fake else None,
            "label": "fake" if fake else "real", "split": split,
        })
        videos[vid] = {"video_id": vid, "path": f"{vid}.mp4", "label": "fake" if fake else "real", "status": "ok",
                       "method": "self-blend" if fake else None, "source_video_id": real_id if fake else None,
                       "split": split}
    for vid, rows in faces.items():
        write_rows(root, "faces", vid, rows, FACES_SCHEMA)
        write_rows(root, "videos", vid, [videos[vid]], VIDEOS_SCHEMA)
    return root


# --------------------------------------------------------------------------- 1. detection and mesh


def _by_x(boxes: np.ndarray) -> np.ndarray:
    """Boxes ordered left to right, so two detectors' faces of one frame line up."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return boxes[np.argsort(boxes[:, 0], kind="stable")]


def check_retinaface(ctx: Ctx) -> str:
    """Frames/s of `FaceDetector.detect` (resize to max_side, network, decoding, NMS) on
    real frames, at the extract default max_side 640 and at full resolution."""
    from dfpipe.pipeline.faces.detect import FaceDetector

    s, summary = ctx.sizes, []
    torch.manual_seed(0)
    for label, (w, h) in (("720p", (1280, 720)), ("1080p", (1920, 1080))):
        frames = real_frames(w, h, s.det_frames)
        for max_side in (640, None):
            on_dev = FaceDetector(device=str(ctx.device), max_side=max_side, batch_size=s.det_batch)
            on_cpu = FaceDetector(device="cpu", max_side=max_side, batch_size=8)
            found = on_dev.detect(frames)
            if any(len(d) < 2 for d in found):
                raise AssertionError(f"{label}: a frame with fewer than the 2 faces shown "
                                     f"({[len(d) for d in found]})")
            cpu_frames = frames[: s.det_cpu_frames]
            cpu_found = on_cpu.detect(cpu_frames)
            if [len(d) for d in cpu_found] != [len(d) for d in found[: len(cpu_frames)]]:
                raise AssertionError(f"{label}: {ctx.dev} and cpu find different face counts")
            worst = max(float(np.abs(_by_x(a.boxes) - _by_x(b.boxes)).max()) for a, b in zip(found, cpu_found))
            budget = max(0.5, min(s.det_seconds, ctx.left() / 6))
            dev_fps, _ = rate(lambda: len(on_dev.detect(frames)), ctx.device, budget, ctx.deadline)
            cpu_fps, _ = rate(lambda: len(on_cpu.detect(cpu_frames)), torch.device("cpu"), 0.0, ctx.deadline,
                              warmup=0, max_calls=1)
            ms = "max_side 640" if max_side else "full-res"
            ctx.figure(f"retinaface {label} {ms} {ctx.dev}: {dev_fps:.1f} frames/s (cpu {cpu_fps:.1f} frames/s, "
                       f"{dev_fps / cpu_fps:.1f}x; batch {s.det_batch} vs 8; boxes vs cpu within {worst:.3f} px)")
            summary.append(f"{label} {'640' if max_side else 'full'} {dev_fps:.0f} f/s {dev_fps / cpu_fps:.1f}x")
            del on_dev, on_cpu
            free(ctx.device)
    return "; ".join(summary)


def check_facemesh(ctx: Ctx) -> str:
    """Faces/s of the Face Mesh network on batched 192 x 192 crops of real faces (made by
    `FaceMesher.crops` from RetinaFace boxes, as extract makes them), CUDA against the CPU."""
    from dfpipe.pipeline.faces.detect import load_detector
    from dfpipe.pipeline.faces.mesh import FaceMesher

    s = ctx.sizes
    frames = real_frames(1280, 720, max(2, min(32, s.mesh_crops // 2)))
    dets = load_detector(device="cpu").detect(frames)
    on_dev, on_cpu = FaceMesher(device=ctx.device), FaceMesher(device="cpu")
    crops = np.concatenate([on_cpu.crops(f, d.boxes, d.landmarks)[0] for f, d in zip(frames, dets)])
    batch = np.resize(crops, (s.mesh_crops, *crops.shape[1:]))  # repeats the real crops to fill the batch
    cpu_batch = batch[: s.mesh_cpu_crops]

    def forward(mesher: FaceMesher, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            t = mesher.model.preprocess(x).contiguous(memory_format=torch.channels_last)
            points, scores = mesher.model(t)
        return points.float().cpu(), scores.float().cpu()

    dev_pts, dev_scores = forward(on_dev, cpu_batch)
    cpu_pts, _ = forward(on_cpu, cpu_batch)
    if float(dev_scores.min()) < 0.5:
        raise AssertionError(f"Face Mesh presence score {float(dev_scores.min()):.2f} on a real face crop")
    diff = float((dev_pts[..., :2] - cpu_pts[..., :2]).abs().max())
    dev_rate, _ = rate(lambda: (forward(on_dev, batch), len(batch))[1], ctx.device, max(0.5, min(3.0, ctx.left() / 3)),
                       ctx.deadline, warmup=2)
    cpu_rate, _ = rate(lambda: (forward(on_cpu, cpu_batch), len(cpu_batch))[1], torch.device("cpu"), 0.0,
                       ctx.deadline, warmup=1, max_calls=2)
    ctx.figure(f"facemesh 192px {ctx.dev}: {dev_rate:.0f} faces/s at batch {len(batch)} (cpu {cpu_rate:.0f} faces/s at "
               f"batch {len(cpu_batch)}, {dev_rate / cpu_rate:.1f}x; points vs cpu within {diff:.3f} px)")
    # the whole per-frame path extract runs: crops (CPU warps), one forward per batch, points back to frames
    n_frames = min(len(frames), 16)
    mesh_fps, _ = rate(lambda: (on_dev.mesh_frames(frames[:n_frames], [d.boxes for d in dets[:n_frames]],
                                                   [d.landmarks for d in dets[:n_frames]]), n_frames)[1],
                       ctx.device, max(0.3, min(2.0, ctx.left() / 3)), ctx.deadline)
    ctx.figure(f"facemesh mesh_frames 720p {ctx.dev}: {mesh_fps:.1f} frames/s of 2 faces (crop warps, network, "
               "points back to the frame)")
    return f"{dev_rate:.0f} faces/s {dev_rate / cpu_rate:.1f}x; mesh_frames {mesh_fps:.0f} f/s"


# --------------------------------------------------------------------------- 2. extract, CUDA = CPU


def _boxes_by_frame(root: Path) -> dict[int, np.ndarray]:
    from dfpipe.manifests.parts import read_table
    from dfpipe.manifests.schema import FACES_SCHEMA

    t = read_table(root, "faces", FACES_SCHEMA, columns=["frame_index", "x1", "y1", "x2", "y2"]).to_pandas()
    return {int(f): g[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)[np.argsort(g["x1"].to_numpy())]
            for f, g in t.groupby("frame_index")}


def check_extract(ctx: Ctx) -> str:
    """The same clip through `extract` on the CPU and on CUDA: same faces, boxes within 1 px."""
    from dfpipe.media.faceclips import render_clip
    from dfpipe.pipeline.faces import ExtractConfig, extract

    clip = render_clip(ctx.work / "extract" / "public.mp4", n_frames=ctx.sizes.clip_frames, width=640, height=360,
                       faces=("astronaut", "grace_hopper"), pan=0.4)
    boxes, seconds = {}, {}
    for name, device in (("cpu", "cpu"), (ctx.dev, str(ctx.device))):
        out = ctx.work / "extract" / f"ds-{name}"
        t0 = time.perf_counter()
        summary = extract([clip], out, ExtractConfig(device=device), workers=0, progress=False)
        seconds[name] = time.perf_counter() - t0
        if summary.n_ok != 1 or summary.n_errors:
            raise AssertionError(f"extract on {device}: {summary.n_ok} ok, {summary.n_errors} errors")
        boxes[name] = _boxes_by_frame(out)
    a, b = boxes["cpu"], boxes[ctx.dev]
    if sorted(a) != sorted(b) or any(len(a[f]) != len(b[f]) for f in a):
        raise AssertionError(f"different faces: cpu {sum(map(len, a.values()))} in {len(a)} frames, "
                             f"{ctx.dev} {sum(map(len, b.values()))} in {len(b)} frames")
    n = sum(map(len, a.values()))
    worst = max(float(np.abs(a[f] - b[f]).max()) for f in a)
    frames = ctx.sizes.clip_frames
    ctx.figure(f"extract {frames} frames 640x360 ({n} faces, mesh on) {ctx.dev}: {seconds[ctx.dev]:.1f} s "
               f"({frames / seconds[ctx.dev]:.1f} frames/s incl. model load), cpu {seconds['cpu']:.1f} s; "
               f"max box difference {worst:.3f} px")
    if worst > 1.0:
        raise AssertionError(f"boxes differ by {worst:.3f} px (> 1 px) between cpu and {ctx.dev}")
    return f"{n} faces, max box diff {worst:.3f} px"


# --------------------------------------------------------------------------- 3. M2TR and MAT train steps


#: steps a train check needs before its loss trend counts (first-20 against last-20 means)
MIN_LOSS_STEPS = 60


def train_steps(ctx: Ctx, name: str) -> str:
    """`name` (paper config, random init) trained as `dfpipe.train.trainer` trains it (the
    model's own optimizer recipe, AMP on CUDA with a GradScaler, `model(x, target=y,
    mask=m)["loss"]`) on a fixed set of real crops and self-blends held on the device; no
    data loader, no LR schedule, so the figure is the model step alone."""
    from dfpipe.models.registry import create_model
    from dfpipe.train.data import ImageSpec, to_tensor
    from dfpipe.train.inference import autocast
    from dfpipe.train.trainer import OPTIMIZER_DEFAULTS, build_optimizer, seed_everything

    s, dev = ctx.sizes, ctx.device
    seed_everything(0)
    model = create_model(name, pretrained=False, **({"tiny": True} if s.train_tiny else {})).to(dev)
    spec = ImageSpec.from_default_cfg(model.default_cfg)
    size = spec.height
    fs = face_set(size, views_per_photo=max(8, s.train_batch // 2))  # 2 photos x views, real + fake
    x = torch.stack([to_tensor(im, spec) for im in fs.images]).to(dev)
    y = torch.from_numpy(fs.labels).to(dev)
    m = torch.from_numpy(fs.masks.astype(np.float32) / 255.0)[:, None].to(dev)
    # the recipe `train` uses for this model (SGD 5e-4 momentum 0.9 for M2TR, Adam 1e-3 for MAT)
    recipe = OPTIMIZER_DEFAULTS[name]
    opt = build_optimizer(model, SimpleNamespace(recipe=lambda: recipe, momentum=0.9))
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    order = torch.Generator().manual_seed(0)
    model.train()
    reset_peak(dev)
    losses: list[torch.Tensor] = []
    warm, t0 = min(10, s.train_steps // 4), time.perf_counter()
    for step in range(s.train_steps):
        if step == warm:
            sync(dev)
            t0 = time.perf_counter()
        idx = torch.randperm(len(y), generator=order)[: s.train_batch].to(dev)
        with autocast(dev, use_amp):
            out = model(x[idx], target=y[idx], mask=m[idx])
        loss = out["loss"].float()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.detach())
        if ctx.left() < 0:
            break
    sync(dev)
    done = len(losses)
    timed = done - warm
    if timed < 1:
        raise AssertionError(f"only {done} steps within the cap")
    step_s = (time.perf_counter() - t0) / timed
    curve = torch.stack(losses).cpu().numpy()
    if not np.isfinite(curve).all():
        raise AssertionError(f"non-finite loss at step {int(np.argmin(np.isfinite(curve)))}")
    k = 20 if done >= 60 else max(1, done // 3)
    first, last = float(curve[:k].mean()), float(curve[-k:].mean())
    amp = "amp fp16" if use_amp else "fp32"
    ctx.figure(f"{name} {size}px batch {s.train_batch} {amp} {ctx.dev}: {s.train_batch / step_s:.1f} images/s "
               f"({step_s * 1000:.0f} ms/step over {timed} steps), {peak_memory(dev)}, "
               f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params")
    ctx.figure(f"{name} loss: first-{k} mean {first:.4f} -> last-{k} mean {last:.4f} over {done} steps "
               f"({recipe['optimizer']} lr {recipe['lr']}, {len(y)} fixed faces, half self-blended)")
    if done < s.train_steps:
        ctx.figure(f"{name}: stopped at the time cap after {done} of {s.train_steps} steps")
    del model, opt, x, m
    free(dev)
    if done < MIN_LOSS_STEPS:
        raise AssertionError(f"only {done} steps within the cap: too few to tell whether the loss falls")
    if not last < first:
        raise AssertionError(f"loss did not fall: {first:.4f} -> {last:.4f}")
    return f"{s.train_batch / step_s:.0f} img/s, loss {first:.3f}->{last:.3f}"


def check_m2tr(ctx: Ctx) -> str:
    return train_steps(ctx, "m2tr")


def check_mat(ctx: Ctx) -> str:
    return train_steps(ctx, "mat")


# --------------------------------------------------------------------------- 4. DoveNet


def check_dovenet(ctx: Ctx) -> str:
    """`HarmonizerTrainer.step` (generator, two discriminators, gradient penalties, AMP on
    CUDA) at the default DoveNet config and `train-harmonizer`'s default size and batch, on
    composites `HarmonizationDataset` makes from real crops (made before timing)."""
    from torch.utils.data import DataLoader

    from dfpipe.models.dovenet import build_dovenet
    from dfpipe.train.harmonizer_data import HarmonizationDataset, load_faces, split_by_video
    from dfpipe.train.harmonizer_train import HarmonizerTrainer, train_harmonizer

    s, dev = ctx.sizes, ctx.device
    defaults = {k: p.default for k, p in inspect.signature(train_harmonizer).parameters.items()}
    size = 64 if s.dove_tiny else defaults["size"]
    batch = 4 if s.dove_tiny else defaults["batch_size"]
    torch.manual_seed(0)
    model = build_dovenet(tiny=s.dove_tiny, img_size=size)
    items, _ = load_faces(write_face_dataset(ctx.work / "faces-ds"))
    train_idx, _ = split_by_video(items)
    data = HarmonizationDataset(items, train_idx, size, train=True, seed=0)
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True, num_workers=0,
                        generator=torch.Generator().manual_seed(0))
    batches = [b for b, _ in zip(loader, range(4))]
    trainer = HarmonizerTrainer(model, dev)
    reset_peak(dev)
    warm = min(5, s.dove_steps // 2)
    l1, t0 = [], time.perf_counter()
    for step in range(s.dove_steps):
        if step == warm:
            sync(dev)
            t0 = time.perf_counter()
        l1.append(trainer.step(batches[step % len(batches)])["l1"])  # .item() inside: synchronised per step
        if ctx.left() < 0:
            break
    timed = len(l1) - warm
    if timed < 1:
        raise AssertionError(f"only {len(l1)} steps within the cap")
    step_s = (time.perf_counter() - t0) / timed
    if not np.isfinite(l1).all():
        raise AssertionError("non-finite L1 loss")
    counts = model.param_counts()
    cfg = "tiny" if s.dove_tiny else "default"
    ctx.figure(f"dovenet {cfg} config {size}px batch {batch} {'amp fp16' if trainer.amp else 'fp32'} {ctx.dev}: "
               f"{1 / step_s:.2f} steps/s ({batch / step_s:.1f} images/s, {timed} timed steps), {peak_memory(dev)}, "
               f"params {json.dumps(counts)}; l1 {l1[0]:.3f} -> {l1[-1]:.3f}")
    del model, trainer, batches
    free(dev)
    return f"{1 / step_s:.1f} steps/s"


# --------------------------------------------------------------------------- 5. torchrun


def check_torchrun(ctx: Ctx) -> str:
    """`torchrun --standalone --nproc_per_node 1 -m dfpipe train` (env:// variables, rank 0
    alone: dfpipe joins no process group for one process) of a tiny M2TR on the device."""
    ds = write_face_dataset(ctx.work / "faces-ds")
    out = ctx.work / "torchrun-run"
    steps = ctx.sizes.torchrun_steps
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           "-m", "dfpipe", "train", str(ds), "--model", "m2tr", "--tiny", "--no-pretrained", "--epochs", "1",
           "--batch", "8", "--workers", "0", "--max-steps", str(steps), "--device", str(ctx.device),
           "--out", str(out), "--no-progress", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "4")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=max(5.0, ctx.left()))
    except (subprocess.TimeoutExpired, CheckTimeout):
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and the worker it started, nothing else
        proc.communicate()
        raise
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise AssertionError(f"torchrun exited {proc.returncode}: {stderr.strip()[-1500:]}")
    summary = json.loads(stdout[stdout.index("{"):])
    if summary["steps"] != steps or not (out / "last.pt").is_file():
        raise AssertionError(f"{summary['steps']} steps (expected {steps}), last.pt: {(out / 'last.pt').is_file()}")
    ctx.figure(f"torchrun --nproc_per_node 1 train m2tr --tiny {ctx.dev}: exit 0 in {seconds:.1f} s "
               f"({steps} steps + validation + checkpoint, process start and imports included)")
    return f"exit 0 in {seconds:.1f} s"


# --------------------------------------------------------------------------- plan and running


CHECKS = [
    Check("retinaface", "RetinaFace mobilenet0.25 frames/s (resize, network, NMS) at 720p and 1080p, max_side 640 "
          "and full-res, batch 32, against this machine's CPU (batch 8, 8 frames)", 70, check_retinaface),
    Check("facemesh", "Face Mesh faces/s on 256 batched 192x192 real-face crops against the CPU (32), and "
          "mesh_frames frames/s", 35, check_facemesh),
    Check("extract", "extract of a 40-frame 640x360 clip of public-domain faces on cpu and on cuda: same faces, "
          "boxes within 1 px", 70, check_extract),
    Check("m2tr", "M2TR paper config 320px, batch 32, AMP: images/s, peak GPU memory, loss falling over 200 steps",
          70, check_m2tr),
    Check("mat", "MAT paper config 380px, batch 32, AMP: images/s, peak GPU memory, loss falling over 200 steps",
          70, check_mat),
    Check("dovenet", "DoveNet default config (256px, train-harmonizer's batch), AMP: steps/s, peak GPU memory",
          40, check_dovenet),
    Check("torchrun", "torchrun --nproc_per_node 1 -m dfpipe train (tiny M2TR, 5 steps) on cuda: exit 0, seconds",
          60, check_torchrun),
]
BY_NAME = {c.name: c for c in CHECKS}


def cuda_reason() -> str | None:
    """Why the CUDA checks cannot run here, or None when they can."""
    if torch.version.cuda is None:
        return f"no CUDA device: torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return "no CUDA device: torch.cuda.is_available() is False"
    return None


def machine_line() -> str:
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    parts = []
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        parts.append(f"GPU {p.name} ({p.total_memory / GIB:.1f} GiB, sm_{p.major}{p.minor}, "
                     f"{torch.cuda.device_count()} visible)")
        if shutil.which("nvidia-smi"):
            try:
                drv = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                     capture_output=True, text=True, timeout=10).stdout.split()
                parts.append(f"driver {drv[0]}" if drv else "driver ?")
            except (OSError, subprocess.SubprocessError):
                pass
    else:
        parts.append("GPU none")
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    parts += [f"torch {torch.__version__}", f"CUDA {torch.version.cuda or 'none (CPU build)'}",
              f"cuDNN {cudnn or 'none'}", f"{cpus} CPUs ({usable} usable, torch threads {torch.get_num_threads()})",
              f"Python {platform.python_version()}", platform.platform(terse=True)]
    return "machine: " + ", ".join(parts)


def dry_run(checks: list[Check]) -> int:
    """The plan, and what a run needs (imports, weights, ffmpeg, torchrun) checked: no work."""
    total = sum(c.cap_s for c in checks)
    print(f"plan: {len(checks)} check(s), caps {total} s in all (bench/gpu_check.sh stops everything at 470-480 s)")
    for c in checks:
        print(f"  PLAN {c.name:<10} cap {c.cap_s:>3} s  {c.what}")
    reason = cuda_reason()
    print(f"  on this machine: {'every check SKIPs (' + reason + ')' if reason else 'CUDA present, checks run'}")
    problems = []
    modules = ["skimage.data", "matplotlib.cbook", "pyarrow", "cv2", "timm", "torch.distributed.run",
               "dfpipe.media.faceclips", "dfpipe.pipeline.faces.detect", "dfpipe.pipeline.faces.mesh",
               "dfpipe.pipeline.faces", "dfpipe.pipeline.synth.selfblend", "dfpipe.pipeline.masks.facemask",
               "dfpipe.models.retinaface", "dfpipe.models.facemesh", "dfpipe.models.m2tr", "dfpipe.models.mat",
               "dfpipe.models.dovenet", "dfpipe.train.trainer", "dfpipe.train.harmonizer_train", "dfpipe.cli.main"]
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # report them all, not the first
            problems.append(f"import {name}: {type(exc).__name__}: {exc}")
    print(f"  imports: {len(modules) - len(problems)}/{len(modules)} ok")
    from dfpipe.runtime.weights import WeightsError, resolve_weights

    for key in ("retinaface_mobilenet0.25", "facemesh", "facemesh_canonical"):
        try:
            print(f"  weights {key}: {resolve_weights(key)}")
        except WeightsError as exc:
            problems.append(f"weights {key}: {str(exc).splitlines()[0]}")
    try:
        from dfpipe.pipeline.video.writing import ffmpeg_exe

        print(f"  ffmpeg: {ffmpeg_exe()}")
    except Exception as exc:
        problems.append(f"ffmpeg: {exc}")
    for p in problems:
        print(f"  MISSING {p}")
    print("dry run: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


_TERMINATED = False


def _on_alarm(signum: int, frame: object) -> None:
    raise CheckTimeout()


def _on_term(signum: int, frame: object) -> None:
    """`timeout` (bench/gpu_check.sh) ends the run: stop the current check, print the summary."""
    global _TERMINATED
    _TERMINATED = True
    raise CheckTimeout()


def run_checks(checks: list[Check], device: torch.device | None, smoke: bool, work: Path,
               skip_reason: str | None) -> int:
    sizes = SMOKE_SIZES if smoke else CUDA_SIZES
    rows = []
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)
    for c in checks:
        if _TERMINATED:
            rows.append((c.name, "FAIL", 0.0, "not run: the run was terminated (time limit)"))
            continue
        if skip_reason is not None:
            print(f"SKIP {c.name}: {skip_reason}", flush=True)
            rows.append((c.name, "SKIP", 0.0, skip_reason))
            continue
        print(f"== {c.name} (cap {c.cap_s} s): {c.what}", flush=True)
        ctx = Ctx(device=device, sizes=sizes, work=work, smoke=smoke)
        t0 = time.perf_counter()
        ctx.deadline = t0 + 0.85 * c.cap_s
        signal.alarm(c.cap_s)
        try:
            summary = c.fn(ctx)
            status = "PASS"
        except Skip as exc:
            status, summary = "SKIP", str(exc)
        except CheckTimeout:
            why = "terminated by the run's time limit" if _TERMINATED else f"ran past its {c.cap_s} s cap"
            status, summary = "FAIL", why
        except Exception as exc:
            status, summary = "FAIL", f"{type(exc).__name__}: {exc}"
            traceback.print_exc(limit=6)
        finally:
            signal.alarm(0)
        seconds = time.perf_counter() - t0
        print(f"{status} {c.name}: {summary} ({seconds:.1f} s)", flush=True)
        rows.append((c.name, status, seconds, summary))
        if device is not None:
            free(device)
    print("\nsummary" + (" (--cpu-smoke: the CUDA code paths run on the CPU, tiny sizes; no GPU figures)" if smoke else ""))
    print(f"  {'check':<11} {'status':<6} {'seconds':>7}  figure")
    for name, status, seconds, summary in rows:
        print(f"  {name:<11} {status:<6} {seconds:>7.1f}  {summary}")
    failed = [r[0] for r in rows if r[1] == "FAIL"]
    print(f"{len(rows) - len(failed)} of {len(rows)} without FAIL" + (f"; FAIL: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def parse_only(value: str) -> list[Check]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown check(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(BY_NAME)}")
    return [c for c in CHECKS if c.name in names]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="checks: " + ", ".join(BY_NAME))
    ap.add_argument("--dry-run", action="store_true", help="print the plan, check imports and weights, do no work")
    ap.add_argument("--only", type=parse_only, default=list(CHECKS), metavar="NAME[,NAME]",
                    help="run only these checks")
    ap.add_argument("--work", type=Path, default=None, help="keep the work files here (default: a temporary folder)")
    ap.add_argument("--cpu-smoke", action="store_true", help=argparse.SUPPRESS)  # the CUDA bodies on the CPU, tiny
    args = ap.parse_args(argv)
    print(machine_line(), flush=True)
    if args.dry_run:
        return dry_run(args.only)
    reason = None if args.cpu_smoke else cuda_reason()
    device = torch.device("cpu") if args.cpu_smoke else (torch.device("cuda") if reason is None else None)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        return run_checks(args.only, device, args.cpu_smoke, args.work, reason)
    with tempfile.TemporaryDirectory(prefix="dfpipe-gpu-check-") as tmp:
        return run_checks(args.only, device, args.cpu_smoke, Path(tmp), reason)


if __name__ == "__main__":
    sys.exit(main())
