"""Benchmark: does a small DoveNet, trained on CPU for a bounded time on real faces, restore
held-out composites better than leaving them alone (and than Reinhard transfer)?

Data: aligned crops of every face RetinaFace finds in ../shared/data/faces/*.jpg|png,
frames of the real FF++ video, and two public-domain portraits (scikit-image's astronaut,
matplotlib's Grace Hopper), written as a `faces/` table. Validation faces come from
held-out photos/videos (`split_by_video`). The run trains the tiny config within the
time budget, then prints fMSE / MSE / PSNR of the harmonized output, the composite input
and the `rct` baseline, and the fMSE cut against the composite.

    OMP_NUM_THREADS=2 .venv/bin/python bench/harmonizer.py --minutes 18 --out /tmp/harm-bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from dfpipe.manifests.codec import encode_image, read_image_file
from dfpipe.manifests.parts import write_rows
from dfpipe.manifests.schema import FACES_SCHEMA
from dfpipe.pipeline.faces.align import align_matrix, warp_crop
from dfpipe.pipeline.faces.detect import FaceDetector
from dfpipe.pipeline.video.decode import Sampling, iter_frames

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFPIPE_SHARED", REPO.parent / "shared"))


def public_domain_faces() -> dict[str, np.ndarray]:
    import matplotlib.cbook
    import skimage.data

    hopper = str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": read_image_file(hopper)}


def sources(every: int) -> dict[str, list[tuple[int, np.ndarray]]]:
    """video id -> [(frame index, RGB frame)]: one 'video' per photo, frames of the real clip."""
    out: dict[str, list[tuple[int, np.ndarray]]] = {}
    for path in sorted((SHARED / "data" / "faces").iterdir()):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            out[path.stem] = [(0, read_image_file(str(path)))]
    for name, img in public_domain_faces().items():
        out[name] = [(0, img)]
    video = SHARED / "data" / "videos" / "ffpp_real_004.mp4"
    out["ffpp_real_004"] = [(f.index, f.image) for f in iter_frames(video, Sampling(every=every))]
    return out


#: held out for validation (split=val): a group photo and three single portraits
VAL_SOURCES = ("fd1mb_kids_group", "astronaut", "fr_rose_leslie2", "fr_obama_small")


def build_faces(root: Path, size: int = 256, every: int = 10, min_face: int = 40) -> int:
    """Detect, align and write `root/faces/` (one part per source); returns the face count."""
    detector = FaceDetector(weights=SHARED / "weights" / "retinaface" / "mobilenet0.25_Final.pth", max_side=1024)
    n = 0
    for name, frames in sources(every).items():
        video_id = hashlib.sha1(name.encode()).hexdigest()[:16]
        rows = []
        for (index, frame), det in zip(frames, detector.detect([f for _, f in frames])):
            for k in range(len(det)):
                x1, y1, x2, y2 = det.boxes[k]
                if min(x2 - x1, y2 - y1) < min_face:
                    continue
                matrix = align_matrix(det.landmarks[k], size)
                rows.append({
                    "face_id": f"{video_id}-{index}-{k}", "video_id": video_id, "frame_index": index,
                    "track_id": k, "score": float(det.scores[k]), "x1": float(x1), "y1": float(y1),
                    "x2": float(x2), "y2": float(y2), "landmarks": det.landmarks[k].reshape(-1).tolist(),
                    "matrix": matrix.reshape(-1).tolist(), "crop": "align", "size": size, "image_format": "png",
                    "image": encode_image(warp_crop(frame, matrix, size)), "label": "real",
                    "split": "val" if name in VAL_SOURCES else "train",
                })
        if rows:
            write_rows(root, "faces", video_id, rows, FACES_SCHEMA)
            n += len(rows)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/harm-bench"))
    ap.add_argument("--minutes", type=float, default=18.0, help="training time budget (the issue allows 20)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from dfpipe.train.harmonizer_train import train_harmonizer

    ds = args.out / "ds"
    if not (ds / "faces").is_dir():
        t0 = time.perf_counter()
        n = build_faces(ds)
        print(f"built {n} face crops in {time.perf_counter() - t0:.0f}s -> {ds}")
    result = train_harmonizer(
        ds, args.out / "run", size=args.size, epochs=10_000, tiny=True, device="cpu", batch_size=args.batch_size,
        seed=args.seed, max_minutes=args.minutes, progress=False,
    )
    hist = result.history
    last5 = {k[4:]: float(np.median([h[k] for h in hist[-5:]])) for k in hist[-1] if k.startswith("val_")}
    print(json.dumps({"epochs": result.epochs_done, "steps": result.steps, "minutes": round(result.minutes, 1),
                      "n_train": result.n_train, "n_val_faces": result.n_val, "best_epoch": result.best_epoch},
                     indent=1))
    # best: the epoch best.pt keeps (chosen on the held-out set, so slightly optimistic);
    # last5: median over the last five epochs, no selection
    for name, m in (("best", result.best_metrics), ("last5", last5)):
        cut = 1.0 - m["fmse"] / m["fmse_composite"]
        print(f"[{name}] held-out fMSE: composite {m['fmse_composite']:.1f}  rct {m['fmse_rct']:.1f}  "
              f"dovenet {m['fmse']:.1f}  -> cut vs composite {100 * cut:.1f}%, "
              f"vs rct {100 * (1 - m['fmse'] / m['fmse_rct']):.1f}%")
        print(f"[{name}] held-out MSE: composite {m['mse_composite']:.1f}  rct {m['mse_rct']:.1f}  "
              f"dovenet {m['mse']:.1f};  PSNR: composite {m['psnr_composite']:.2f}  rct {m['psnr_rct']:.2f}  "
              f"dovenet {m['psnr']:.2f} dB")
        print(f"[{name}] untouched real faces in, fMSE out: {m['fmse_untouched']:.1f} "
              f"(0 = left alone; PSNR {m['psnr_untouched']:.2f} dB)")


if __name__ == "__main__":
    main()
