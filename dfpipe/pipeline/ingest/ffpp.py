"""FaceForensics++ (and its DeepFakeDetection part), as downloaded by the official script.

    ROOT/original_sequences/{youtube,actors}/<c0|c23|c40|raw>/videos/<id>.mp4
    ROOT/manipulated_sequences/<Method>/<c0|c23|c40|raw>/videos/<target>_<source>.mp4
    ROOT/manipulated_sequences/<Method>/masks/videos/<target>_<source>.mp4   (when present)
    ROOT/splits/{train,val,test}.json  (or beside ROOT; lists of [a, b] pairs; optional)

`<target>_<source>`: the frames of video <target> with the face of <source>. DeepFakeDetection
fakes are `<t>_<s>__<scene>__<tag>.mp4` over actors' `<t>__<scene>.mp4`.
"""

from __future__ import annotations

import re
from pathlib import Path

from dfpipe.pipeline.ingest.common import Entry, IngestError, IngestSummary, read_json, require_dir, write_entries

DATASET = "ff++"
COMPRESSIONS = ("raw", "c0", "c23", "c40")
#: the compressions ingested when none is named
DEFAULT_COMPRESSION = ("c23",)
METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
SPLIT_FILES = {"train": "train.json", "val": "val.json", "test": "test.json"}
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv")

_YOUTUBE_FAKE = re.compile(r"^(\d+)_(\d+)$")
_DFD_FAKE = re.compile(r"^(\d+)_(\d+)__(.+?)__[A-Za-z0-9]+$")


def _videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS)


def _pair_of(stem: str) -> tuple[str, str | None] | None:
    """(source real key, donor key) of a fake's file stem, None when the name is unknown."""
    if m := _YOUTUBE_FAKE.match(stem):
        return m.group(1), m.group(2)
    if m := _DFD_FAKE.match(stem):
        return f"{m.group(1)}__{m.group(3)}", None
    return None


def find_split_dir(root: Path, splits: Path | None) -> Path | None:
    """An explicit folder, else ROOT/splits or ROOT when they hold the official JSONs."""
    if splits is not None:
        require_dir(splits, "split JSONs")
        return splits
    for cand in (root / "splits", root):
        if any((cand / name).is_file() for name in SPLIT_FILES.values()):
            return cand
    return None


def read_splits(folder: Path) -> dict[str, str]:
    """Video id (e.g. '953') -> split, from the official [[a, b], ...] pair lists."""
    split_of: dict[str, str] = {}
    for split, name in SPLIT_FILES.items():
        path = folder / name
        if not path.is_file():
            raise IngestError(f"{path}: no such file (FF++ split folder {folder} must hold {', '.join(SPLIT_FILES.values())})")
        pairs = read_json(path)
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs
        ):
            raise IngestError(f"{path}: expected a JSON list of [target, source] string pairs")
        for pair in pairs:
            for vid in pair:
                if split_of.get(vid, split) != split:
                    raise IngestError(f"{path}: video {vid!r} is also in the {split_of[vid]} split")
                split_of[vid] = split
    return split_of


def _split(stem: str, split_of: dict[str, str] | None) -> str | None:
    if split_of is None:
        return None
    pair = _pair_of(stem)
    if pair is not None:  # a fake goes with both of its videos; they share a split pair
        return split_of.get(pair[0])
    return split_of.get(stem)


def list_ffpp(root: str | Path, compression: tuple[str, ...] = DEFAULT_COMPRESSION, splits: str | Path | None = None) -> list[Entry]:
    """Every video of the chosen compressions under an FF++ root."""
    root = Path(root)
    require_dir(root, "FaceForensics++ root")
    for c in compression:
        if c not in COMPRESSIONS:
            raise IngestError(f"FF++ compression {c!r} is not one of {', '.join(COMPRESSIONS)}")
    originals = require_dir(root / "original_sequences", "FF++ real videos")
    manipulated = root / "manipulated_sequences"
    split_dir = find_split_dir(root, Path(splits) if splits else None)
    split_of = read_splits(split_dir) if split_dir else None

    entries: list[Entry] = []
    for c in compression:
        for sub in sorted(p for p in originals.iterdir() if p.is_dir()):
            folder = sub / c / "videos"
            if not folder.is_dir():
                continue
            for path in _videos(folder):
                key = f"{c}/{path.stem}"
                entries.append(
                    Entry(key, path.resolve(), "real", None, c, split=_split(path.stem, split_of),
                          meta={"ffpp_id": path.stem, "ffpp_subset": sub.name})
                )
        if not manipulated.is_dir():
            continue
        for method_dir in sorted(p for p in manipulated.iterdir() if p.is_dir()):
            folder = method_dir / c / "videos"
            if not folder.is_dir():
                continue
            masks = method_dir / "masks" / "videos"
            for path in _videos(folder):
                pair = _pair_of(path.stem)
                meta: dict = {"ffpp_id": path.stem}
                if pair is None:
                    raise IngestError(f"{path}: FF++ fake names are <target>_<source>.mp4, got {path.name!r}")
                meta["ffpp_target"], meta["ffpp_source"] = pair
                mask = masks / path.name
                entries.append(
                    Entry(
                        f"{method_dir.name}/{c}/{path.stem}", path.resolve(), "fake", method_dir.name, c,
                        source_key=f"{c}/{pair[0]}",
                        target_key=f"{c}/{pair[1]}" if pair[1] is not None else None,
                        split=_split(path.stem, split_of),
                        mask_path=mask.resolve() if mask.is_file() else None,
                        meta=meta,
                    )
                )
    if not entries:
        raise IngestError(
            f"{root}: no FF++ videos for compression {', '.join(compression)} "
            "(expected original_sequences/<subset>/<c>/videos/*.mp4)"
        )
    return entries


def ingest_ffpp(
    root: str | Path, out: str | Path, compression: tuple[str, ...] = DEFAULT_COMPRESSION, splits: str | Path | None = None
) -> IngestSummary:
    return write_entries(list_ffpp(root, compression, splits), out, DATASET)
