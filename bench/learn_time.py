"""Learning benchmark: do M2TR and MAT (tiny configs, CPU) learn to tell real from fake
faces they have not seen?

Builds a dataset from the shared FF++ c23 real video and its NeuralTextures fake with
dfpipe's own extract path (every 2nd frame, RetinaFace, 5-point alignment; the fake reuses
its source's frames and crop matrices), splits it by time so no frame is on two sides,
trains each model with `dfpipe.train` and evaluates `best.pt` (chosen on val) on the
held-out test frames.

Two time splits:
- `--split contiguous` (default): train frames < 200, val 200-229, test >= 230.
- `--split blocks`: blocks of `--block` frames assigned by the fixed repeating pattern
  `--pattern` (train, val, train, test), with the first `--guard` frames of every block
  dropped, so a test frame is at least `--guard` frames from any training frame. One
  12-second clip changes pose and expression over time; interleaving lets every split see
  the whole range of it while the guard gaps keep near-duplicate frames apart.

    python bench/learn_time.py --out /tmp/learn
    python bench/learn_time.py --out /tmp/learn-blocks --split blocks
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("DFPIPE_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFPIPE_SHARED", REPO.parent / "shared"))
os.environ.setdefault("DFPIPE_WEIGHTS_DIR", os.pathsep.join([str(SHARED / "weights"), str(SHARED / "data" / "facemesh")]))

REAL = SHARED / "data" / "videos" / "ffpp_real_004.mp4"
FAKE = SHARED / "data" / "videos" / "ffpp_fake_NeuralTextures_004_982.mp4"


def split_of(frame: int, train_end: int, test_start: int) -> str:
    """The contiguous split: one train range, then val, then test."""
    return "train" if frame < train_end else "val" if frame < test_start else "test"


def block_split_of(frame: int, block: int, guard: int, pattern: list[str]) -> str | None:
    """The interleaved split: block `frame // block` takes `pattern[k % len(pattern)]`; the
    first `guard` frames of each block are dropped (None) so blocks never touch."""
    k, offset = divmod(frame, block)
    return None if offset < guard else pattern[k % len(pattern)]


def build_dataset(root: Path, every: int, size: int, assign) -> dict:
    """Faces of both videos with labels and time splits, written as dfpipe parts."""
    from dfpipe.manifests.parts import part_keys, part_path, rows_to_table, write_part_atomic
    from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
    from dfpipe.pipeline.faces import ExtractConfig, process_video
    from dfpipe.runtime.runinfo import record_stage

    if {"real004", "nt004"} <= part_keys(root, "faces"):
        return {"reused": True}
    cfg = ExtractConfig(every=every, size=size, keep="largest")
    t0 = time.perf_counter()
    real_row, real = process_video(REAL, cfg, root, row={"video_id": "real004", "label": "real", "compression": "c23"})
    # the fake reuses the real's tracks and crop matrices once the real's row is on disk
    write_part_atomic(rows_to_table([real_row], VIDEOS_SCHEMA), part_path(root, "videos", "real004"))
    fake_row, fake = process_video(
        FAKE, cfg, root, source_faces=rows_to_table(real, FACES_SCHEMA),
        row={"video_id": "nt004", "label": "fake", "method": "NeuralTextures", "compression": "c23",
             "source_video_id": "real004"},
    )
    for video_row, rows in ((real_row, real), (fake_row, fake)):
        if video_row["status"] != "ok" or not rows:
            raise SystemExit(f"extract failed on {video_row['path']}: {video_row.get('error')}")
        for r in rows:
            r["split"] = assign(r["frame_index"])
        rows = [r for r in rows if r["split"] is not None]
        write_part_atomic(rows_to_table(rows, FACES_SCHEMA), part_path(root, "faces", video_row["video_id"]))
        write_part_atomic(rows_to_table([video_row], VIDEOS_SCHEMA), part_path(root, "videos", video_row["video_id"]))
    record_stage(root, "extract", cfg.output_params())
    return {"reused": False, "seconds": time.perf_counter() - t0, "n_real": len(real), "n_fake": len(fake)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/dfpipe-learn"))
    ap.add_argument("--models", nargs="+", default=["m2tr", "mat"])
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--size", type=int, default=128, help="crop size written by extract")
    ap.add_argument("--input-size", type=int, default=None, help="model input (default: the tiny config's)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", nargs="*", default=[], metavar="MODEL=LR",
                    help="learning rate per model (default: each model's recipe)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", default="full", help="full, light or none (see dfpipe train --help)")
    ap.add_argument("--masks", action="store_true",
                    help="add pair masks (dfpipe masks) so M2TR's segmentation loss is supervised")
    ap.add_argument("--train-end", type=int, default=200)
    ap.add_argument("--test-start", type=int, default=230)
    ap.add_argument("--split", choices=["contiguous", "blocks"], default="contiguous")
    ap.add_argument("--block", type=int, default=40, help="frames per block (--split blocks)")
    ap.add_argument("--guard", type=int, default=10, help="frames dropped at the start of each block")
    ap.add_argument("--pattern", default="train,val,train,test", help="splits of consecutive blocks, repeated")
    args = ap.parse_args()
    if args.split == "blocks":
        pattern = args.pattern.split(",")
        if not set(pattern) <= {"train", "val", "test"} or not {"train", "val", "test"} <= set(pattern):
            raise SystemExit(f"--pattern must name train, val and test only: {args.pattern!r}")
        if not 0 <= args.guard < args.block:
            raise SystemExit("--guard must be at least 0 and less than --block")
        assign = lambda f: block_split_of(f, args.block, args.guard, pattern)  # noqa: E731
        split_tag = f"blocks-{args.block}-{args.guard}-{'-'.join(p[:2] for p in pattern)}"
    else:
        assign = lambda f: split_of(f, args.train_end, args.test_start)  # noqa: E731
        split_tag = f"contiguous-{args.train_end}-{args.test_start}"

    lrs = {k: float(v) for k, v in (item.split("=", 1) for item in args.lr)}
    from dfpipe.train.data import load_index
    from dfpipe.train.evaluate import evaluate
    from dfpipe.train.trainer import train

    ds = args.out / f"dataset-{split_tag}-every{args.every}-{args.size}px"
    info = build_dataset(ds, args.every, args.size, assign)
    if args.masks:
        from dfpipe.pipeline.masks import masks

        summary = masks(ds, workers=0, progress=False)
        info["masks"] = {"n_fakes": summary.n_items, "notes": summary.notes[:3]}
    counts = load_index(ds).table.groupby(["split", "label"]).size().to_dict()
    print(f"dataset {ds}: {json.dumps({f'{s}/{l}': int(n) for (s, l), n in counts.items()})} {info}")
    results = []
    for name in args.models:
        run = args.out / f"run-{name}"
        cfg = {"input_size": args.input_size} if args.input_size else None
        t0 = time.perf_counter()
        summary = train(ds, model=name, tiny=True, out=run, epochs=args.epochs, batch=args.batch, lr=lrs.get(name),
                        workers=args.workers, seed=args.seed, model_cfg=cfg, pretrained=False, progress=False,
                        augment=args.augment, overwrite=True)
        seconds = time.perf_counter() - t0
        test = evaluate(run / "best.pt", ds, split="test", report=run / "eval", workers=0, progress=False)
        row = {
            "model": name, "lr": lrs.get(name), "params": summary["num_params"], "epochs": summary["epochs"], "train_s": round(seconds, 1),
            "best_epoch": summary["best"]["epoch"], "val_auc": summary["best"]["auc"],
            "test_auc": test["frame"]["auc"], "test_acc": test["frame"]["acc"], "test_eer": test["frame"]["eer"],
            "test_ap": test["frame"]["ap"], "n_test": test["n_faces"],
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    print("\n| model | params | epochs | train s | best epoch | val AUC | test AUC | test ACC | test EER | test AP | test faces |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} (tiny) | {r['params']:,} | {r['epochs']} | {r['train_s']} | {r['best_epoch']} | "
              f"{r['val_auc']:.4f} | {r['test_auc']:.4f} | {r['test_acc']:.4f} | {r['test_eer']:.4f} | {r['test_ap']:.4f} | "
              f"{r['n_test']} |")


if __name__ == "__main__":
    main()
