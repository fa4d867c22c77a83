"""DFDC (Deepfake Detection Challenge): folders of clips, each with a `metadata.json`.

    ROOT/<part>/metadata.json   {"abc.mp4": {"label": "FAKE", "split": "train", "original": "xyz.mp4"}, ...}
    ROOT/<part>/abc.mp4

Every `metadata.json` under ROOT is read (the training set comes in 50 parts). A fake's
`original` is its source real clip; DFDC does not name the method.
"""

from __future__ import annotations

from pathlib import Path

from dfpipe.pipeline.ingest.common import (
    Entry,
    IngestError,
    IngestSummary,
    check_split,
    read_json,
    require_dir,
    write_entries,
)

DATASET = "dfdc"
_LABELS = {"REAL": "real", "FAKE": "fake"}


def _entry(folder: Path, name: str, info: object, meta_path: Path) -> Entry:
    where = f"{meta_path} [{name!r}]"
    if not isinstance(info, dict) or "label" not in info:
        raise IngestError(f"{where}: expected an object with a 'label' (REAL or FAKE)")
    label = _LABELS.get(str(info["label"]).upper())
    if label is None:
        raise IngestError(f"{where}: label {info['label']!r} is neither REAL nor FAKE")
    original = info.get("original")
    if label == "fake" and not original:
        raise IngestError(f"{where}: a FAKE clip needs its 'original'")
    split = check_split(info.get("split"), where)
    return Entry(
        key=name,
        path=(folder / name).resolve(),
        label=label,
        method=None,
        source_key=original if label == "fake" else None,
        split=split,
        meta={"dfdc_part": folder.name},
    )


def list_dfdc(root: str | Path) -> list[Entry]:
    root = require_dir(Path(root), "DFDC root")
    meta_files = sorted(root.rglob("metadata.json"))
    if not meta_files:
        raise IngestError(f"{root}: no metadata.json found (DFDC parts hold one each)")
    entries = []
    for meta_path in meta_files:
        data = read_json(meta_path)
        if not isinstance(data, dict):
            raise IngestError(f"{meta_path}: expected a JSON object of clip name -> info")
        entries.extend(_entry(meta_path.parent, name, info, meta_path) for name, info in sorted(data.items()))
    return entries


def ingest_dfdc(root: str | Path, out: str | Path) -> IngestSummary:
    return write_entries(list_dfdc(root), out, DATASET)
