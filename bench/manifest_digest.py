"""Run extract, masks, synthesize (swap and self-blend) and score-quality on the shared real
data through the CLI, then print a content digest of every Parquet table.

Used to show that a refactor leaves the manifests as they were: run it with two checkouts
(`PYTHONPATH=OLD python bench/manifest_digest.py --work /tmp/a`, then the new tree) and
compare the printed digests. A table's digest is the sha256 of its rows sorted by their
key, every column included (image and mask bytes too), except the values that record when
or how fast a run went (`meta.extract_seconds`, run times), which differ between any two
runs. Only the CLI is called, so the script works on both sides of a module move.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFPIPE_SHARED", REPO.parent / "shared"))
#: per-run timings inside the `meta` JSON: not part of what a stage produces
VOLATILE_META = ["extract_seconds", "seconds", "synth_seconds"]


#: `--tree OLD` runs the dfpipe package of another checkout (ahead of the installed one)
_RUN_TREE = (
    "import runpy, sys; tree = sys.argv.pop(1); "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(f)]; sys.path.insert(0, tree); "
    "runpy.run_module('dfpipe', run_name='__main__', alter_sys=True)"
)
TREE: str | None = None


def dfpipe(*args: str) -> None:
    cmd = [sys.executable, "-m", "dfpipe", *args] if TREE is None else [sys.executable, "-c", _RUN_TREE, TREE, *args]
    print("$ dfpipe", " ".join(args), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        print(done.stdout, done.stderr, sep="\n")
        raise SystemExit(f"dfpipe {args[0]} exited {done.returncode}")


def _clean(value):
    if isinstance(value, str) and value.startswith("{"):
        try:
            meta = json.loads(value)
        except ValueError:
            return value
        if isinstance(meta, dict):
            return json.dumps({k: v for k, v in meta.items() if k not in VOLATILE_META}, sort_keys=True)
    return value


def table_digest(folder: Path) -> tuple[int, str]:
    parts = sorted(str(p) for p in folder.glob("part-*.parquet"))
    if not parts:
        return 0, "-"
    rows = pads.dataset(parts, format="parquet").to_table().to_pylist()
    keyed = []
    for r in rows:
        r = {k: _clean(v) for k, v in sorted(r.items())}
        keyed.append(repr(r))
    h = hashlib.sha256()
    for line in sorted(keyed):
        h.update(line.encode())
    return len(rows), h.hexdigest()[:16]


def digests(root: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for folder in sorted({p.parent for p in root.rglob("part-*.parquet")}):
        out[str(folder.relative_to(root))] = table_digest(folder)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench_out/digest"))
    parser.add_argument("--tree", help="run the dfpipe of this checkout instead of the installed one")
    parser.add_argument("--ignore-meta", action="append", default=[],
                        help="also leave this `meta` key out of the digests (one a change added on purpose)")
    parser.add_argument("--digest-only", action="store_true", help="digest an existing --work folder, run nothing")
    args = parser.parse_args()
    VOLATILE_META.extend(args.ignore_meta)
    global TREE
    TREE = str(Path(args.tree).absolute()) if args.tree else None
    if TREE:
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(f)]
        sys.path.insert(0, TREE)
    work = args.work.absolute()
    if args.digest_only:
        return print_digests(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    videos = SHARED / "data" / "videos"
    listing = work / "listing.csv"
    listing.write_text(
        "path,label,source,method\n"
        f"{videos / 'ffpp_real_004.mp4'},real,,\n"
        f"{videos / 'ffpp_fake_NeuralTextures_004_982.mp4'},fake,{videos / 'ffpp_real_004.mp4'},NeuralTextures\n"
    )
    # a second real identity (a public-domain face) for the swap
    from dfpipe.media.faceclips import make_demo_videos

    clips = make_demo_videos(work / "clips")
    ds, fakes = work / "ds", work / "fakes"
    dfpipe("ingest", "list", str(listing), "--out", str(ds))
    dfpipe("extract", str(ds), "--every", "10", "--workers", "0", "--no-progress")
    dfpipe("extract", str(clips[0]), "--out", str(ds), "--every", "10", "--workers", "0", "--no-progress")
    dfpipe("masks", str(ds), "--workers", "0")
    dfpipe("score-quality", str(ds), "--metrics", "mask_ssim,ewarp", "--workers", "0")
    dfpipe("synthesize", str(ds), "--out", str(fakes), "--method", "swap", "--pairs", "2", "--per-video", "6",
           "--workers", "0", "--no-progress")
    dfpipe("synthesize", str(ds), "--out", str(work / "sbi"), "--method", "self-blend", "--per-video", "6",
           "--workers", "0", "--no-progress")
    dfpipe("score-quality", str(fakes), "--metrics", "mask_ssim,ewarp", "--workers", "0")
    return print_digests(work)


def print_digests(work: Path) -> int:
    for name in ("ds", "fakes", "sbi"):
        for table, (n, digest) in digests(work / name).items():
            print(f"{name}/{table}: {n} rows {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
