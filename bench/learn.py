"""Learning check, split by identity: do M2TR and MAT learn the self-blend cue from the
reals of some people, and does it carry to other people and another fake method?

The data are real faces: the shared photos (../shared/data/faces, not for redistribution:
read in place) and the two public-domain portraits dfpipe ships, each filmed by a virtual
camera (a pan and a zoom, two clips per photo at two compressions), plus the shared FF++
c23 video and its NeuralTextures fake. Everything goes through dfpipe's user path:
`ingest list` (splits named per identity), `extract`, `synthesize --method swap` (mesh
swap), then `train DS1 DS2 --fakes sbi` and `evaluate`.

Identities, each on one side only:
- train: Biden, Kit Harington (two photos), Grace Hopper (dataset A), and the children of
  a group photo and the people of a crowd photo (dataset B). No fakes are stored: every
  sample is a real face or a fresh self-blend of one (`--fakes sbi`).
- val (picks best.pt): the astronaut Eileen Collins' reals and their self-blends.
- test: Obama (three photos), Rose Leslie (two), the FF++ presenter of video 004: their
  reals; fakes dfpipe made among them with another method, the mesh swap; and FF++'s
  NeuralTextures fake of 004 (a real deepfake, reported as it is).
Photos with a test identity beside a train one (two_people, kit_with_rose) are left out.

    OMP_NUM_THREADS=2 python bench/learn.py --out /tmp/learn-id

Defaults (30 epochs, Adam 1e-3, light augmentation, 128 px) are the recipe that learns the
cue from scratch on CPU; about 10 minutes per model on 2 cores.

Prints one table row per model and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("DFPIPE_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFPIPE_SHARED", REPO.parent / "shared"))
os.environ.setdefault("DFPIPE_WEIGHTS_DIR", os.pathsep.join([str(SHARED / "weights"), str(SHARED / "data" / "facemesh")]))
PHOTOS = SHARED / "data" / "faces"
VIDEOS = SHARED / "data" / "videos"

#: (photo, identity, dataset, split); "pkg:" names are the portraits shipped in packages
PEOPLE = [
    ("fr_biden2.jpg", "biden", "train_a", "train"),
    ("fr_john1.jpeg", "kit_harington", "train_a", "train"),
    ("fr_johnsnow_test1.jpg", "kit_harington", "train_a", "train"),
    ("pkg:grace_hopper", "grace_hopper", "train_a", "train"),
    ("fd1mb_kids_group.jpg", "kids_group", "train_b", "train"),
    ("prf_test_crowd.jpg", "crowd", "train_b", "train"),
    ("pkg:astronaut", "eileen_collins", "train_a", "val"),
    ("fr_obama_small.jpg", "obama", "test", "test"),
    ("fr_obama_partial_face.jpg", "obama", "test", "test"),
    ("fr_32bit_rgba.png", "obama", "test", "test"),
    ("fr_rose_leslie1.jpg", "rose_leslie", "test", "test"),
    ("fr_rose_leslie2.jpg", "rose_leslie", "test", "test"),
]
#: two virtual cameras per photo: (name, pan, zoom, crf)
CAMERAS = [("a", 0.6, 1.2, 23), ("b", 0.3, 1.5, 30)]
#: mesh swaps among the test people: (target clip, source clip), never one person twice.
#: Sources are frontal, fully visible faces (the partial face and Rose Leslie's turned
#: first photo give the swap too little of the face to carry over).
SWAPS = [
    ("fr_obama_small-a", "fr_rose_leslie2-a"),
    ("fr_rose_leslie2-b", "fr_obama_small-b"),
    ("fr_rose_leslie1-b", "fr_32bit_rgba-b"),
    ("fr_rose_leslie1-a", "fr_obama_small-a"),
    ("fr_obama_partial_face-a", "fr_rose_leslie2-b"),
    ("ffpp_real_004", "fr_32bit_rgba-a"),
]


def photo(name: str):
    """RGB uint8 of a shared photo or a shipped portrait."""
    import cv2

    if name.startswith("pkg:"):
        from dfpipe.media.faceclips import face_photo

        return face_photo(name[4:])
    image = cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(PHOTOS / name)
    return image[..., ::-1]


def render(name: str, out: Path, frames: int) -> list[Path]:
    """The photo's clips: its aspect kept, the long side 640 px, the camera on its centre."""
    from dfpipe.media.faceclips import camera_frames
    from dfpipe.pipeline.video.writing import write_video

    image = photo(name)
    h, w = image.shape[:2]
    scale = 640 / max(h, w)
    width, height = (round(w * scale / 2) * 2, round(h * scale / 2) * 2)
    paths = []
    for cam, pan, zoom, crf in CAMERAS:
        path = out / f"{Path(name.removeprefix('pkg:')).stem}-{cam}.mp4"
        if not path.exists():
            write_video(camera_frames(image, (w / 2, h / 2), frames, width, height, pan, zoom), path, fps=25, crf=crf)
        paths.append(path)
    return paths


def dfpipe(*args: str) -> None:
    """Run one dfpipe command as a user would (its own process, no progress bars)."""
    cmd = [sys.executable, "-m", "dfpipe", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def build(work: Path, frames: int, every: int, size: int) -> dict[str, Path]:
    """Clips, listings, the three datasets and the mesh-swap fakes of the test people."""
    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    listings: dict[str, list[dict]] = {"train_a": [], "train_b": [], "test": []}
    for name, identity, ds, split in PEOPLE:
        for path in render(name, clips, frames):
            listings[ds].append({"path": str(path), "label": "real", "split": split, "identity": identity})
    listings["test"] += [
        {"path": str(VIDEOS / "ffpp_real_004.mp4"), "label": "real", "split": "test", "identity": "ffpp_004"},
        {"path": str(VIDEOS / "ffpp_fake_NeuralTextures_004_982.mp4"), "label": "fake", "split": "test",
         "method": "NeuralTextures", "source": str(VIDEOS / "ffpp_real_004.mp4"), "identity": "ffpp_004"},
    ]
    dirs = {}
    for ds, rows in listings.items():
        root = work / ds
        listing = work / f"{ds}.csv"
        with open(listing, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["path", "label", "split", "method", "source", "identity"])
            writer.writeheader()
            writer.writerows(rows)
        dfpipe("ingest", "list", str(listing), "--out", str(root))
        dfpipe("extract", str(root), "--every", str(every), "--size", str(size), "--min-face", "40", "--no-progress")
        dirs[ds] = root
    ids = _video_ids(dirs["test"])
    pairs = work / "swaps.csv"
    with open(pairs, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["target_video_id", "source_video_id"])
        writer.writerows([(ids[t], ids[s]) for t, s in SWAPS])
    dirs["swap"] = work / "test_swap"
    dfpipe("synthesize", str(dirs["test"]), "--method", "swap", "--pairs-file", str(pairs), "--out", str(dirs["swap"]),
           "--no-include-reals", "--no-progress")
    return dirs


def _video_ids(root: Path) -> dict[str, str]:
    """Clip stem -> video id of a dataset's videos."""
    from dfpipe.manifests.parts import read_table
    from dfpipe.manifests.schema import VIDEOS_SCHEMA

    t = read_table(root, "videos", VIDEOS_SCHEMA, columns=["video_id", "path"]).to_pandas()
    return {Path(p).stem: v for v, p in zip(t["video_id"], t["path"])}


def counts(dirs: dict[str, Path]) -> dict[str, dict]:
    from dfpipe.train.data import load_index

    out = {}
    for name, root in dirs.items():
        t = load_index(root).table
        out[name] = {"faces": int(len(t)), "videos": int(t["video_id"].nunique()),
                     "by_split_label": {f"{s}/{l}": int(n) for (s, l), n in t.groupby(["split", "label"]).size().items()}}
    return out


def write_report(args, build_s: float, started: float, data: dict, results: list[dict]) -> dict:
    """OUT/results.json, rewritten after each model so a cut run keeps what it finished."""
    report = {"build_s": round(build_s, 1), "total_s": round(time.perf_counter() - started, 1), "data": data,
              "args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["m2tr", "mat"])
    ap.add_argument("--frames", type=int, default=32, help="frames per clip")
    ap.add_argument("--every", type=int, default=4, help="extract every Nth frame")
    ap.add_argument("--size", type=int, default=128, help="stored crop side")
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--optimizer", default="adam", help="from scratch, Adam learns the cue; SGD stalls at chance")
    ap.add_argument("--augment", default="light", help="flip + colour: blur, noise and JPEG would hide the cue "
                    "from a model this small")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not PHOTOS.is_dir() or not VIDEOS.is_dir():
        raise SystemExit(f"needs the shared photos and videos ({SHARED}/data): set DFPIPE_SHARED")
    from dfpipe.train.evaluate import evaluate
    from dfpipe.train.trainer import train

    started = time.perf_counter()
    dirs = build(args.out / "data", args.frames, args.every, args.size)
    build_s = time.perf_counter() - started
    data = counts(dirs)
    results = []
    for name in args.models:
        run = args.out / f"{name}-seed{args.seed}"
        t0 = time.perf_counter()
        summary = train([dirs["train_a"], dirs["train_b"]], model=name, tiny=True, out=run, epochs=args.epochs,
                        batch=args.batch, lr=args.lr, optimizer=args.optimizer, augment=args.augment,
                        workers=args.workers, seed=args.seed,
                        model_cfg={"input_size": args.input_size}, pretrained=False, progress=False, overwrite=True,
                        fakes="sbi")
        train_s = time.perf_counter() - t0
        best = run / "best.pt"
        val = evaluate(best, [dirs["train_a"], dirs["train_b"]], split="val", fakes="sbi", workers=0, progress=False)
        test = evaluate(best, [dirs["test"], dirs["swap"]], split="test", report=run / "eval-test", workers=0,
                        progress=False)
        methods = test.get("per_method", {})
        results.append({
            "model": name, "params": summary["num_params"], "epochs": summary["epochs"], "train_s": round(train_s, 1),
            "best_epoch": summary["best"]["epoch"], "n_train": summary["n_train"],
            "val_sbi_auc": val["frame"]["auc"], "val_faces": val["n_faces"],
            "test_auc": test["frame"]["auc"], "test_video_auc": test["video"]["auc"], "test_faces": test["n_faces"],
            "per_method": {m: {"auc": v.get("auc"), "n": v.get("n")} for m, v in methods.items()},
        })
        report = write_report(args, build_s, started, data, results)
    print(json.dumps(data, indent=1))
    print(f"build {build_s:.0f} s, total {report['total_s']:.0f} s")
    print("| model | params | epochs | train s | best epoch | val AUC (held-out identity, fresh SBI) | "
          "test AUC (all) | mesh swap AUC | NeuralTextures AUC | test video AUC |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        pm = r["per_method"]
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {r['model']} (tiny) | {r['params']:,} | {r['epochs']} | {r['train_s']:.0f} | {r['best_epoch']} | "
              f"{fmt(r['val_sbi_auc'])} | {fmt(r['test_auc'])} | {fmt(pm.get('swap', {}).get('auc'))} | "
              f"{fmt(pm.get('NeuralTextures', {}).get('auc'))} | {fmt(r['test_video_auc'])} |")


if __name__ == "__main__":
    main()
