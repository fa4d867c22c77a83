"""Celeb-DF (v1 and v2).

    ROOT/Celeb-real/id<t>_<n>.mp4            real celebrity interviews
    ROOT/YouTube-real/<n>.mp4                real, other people
    ROOT/Celeb-synthesis/id<t>_id<s>_<n>.mp4 video n of identity t with the face of identity s
    ROOT/List_of_testing_videos.txt          "<1 real | 0 fake> <folder>/<file>.mp4" per line

Listed videos are the test split, the others train (Celeb-DF has no validation split).
ROOT may also be a folder holding several versions (`Celeb-DF`, `Celeb-DF-v2`).
"""

from __future__ import annotations

import re
from pathlib import Path

from dfpipe.pipeline.ingest.common import Entry, IngestError, IngestSummary, require_dir, write_entries

DATASET = "celebdf"
METHOD = "celeb-synthesis"
REAL_DIRS = ("Celeb-real", "YouTube-real")
FAKE_DIR = "Celeb-synthesis"
TEST_LIST = "List_of_testing_videos.txt"
_FAKE = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")


def read_test_list(path: Path) -> dict[str, str]:
    """'<folder>/<file>' -> label from the official test list."""
    labels = {}
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise IngestError(f"{path}:{no}: expected '<1|0> <folder>/<file>.mp4', got {line!r}")
        labels[parts[1]] = "real" if parts[0] == "1" else "fake"
    return labels


def _version_roots(root: Path) -> list[tuple[Path, str]]:
    if any((root / d).is_dir() for d in (*REAL_DIRS, FAKE_DIR)):
        return [(root, DATASET + ("-v2" if "v2" in root.name.lower() else ""))]
    found = [
        (p, DATASET + ("-v2" if "v2" in p.name.lower() else "-v1"))
        for p in sorted(root.iterdir())
        if p.is_dir() and any((p / d).is_dir() for d in (*REAL_DIRS, FAKE_DIR))
    ]
    if not found:
        raise IngestError(f"{root}: no Celeb-DF folders ({', '.join((*REAL_DIRS, FAKE_DIR))}) here or one level down")
    return found


def list_celebdf_version(root: Path) -> list[Entry]:
    test_path = root / TEST_LIST
    test = read_test_list(test_path) if test_path.is_file() else None
    entries = []
    for folder in (*REAL_DIRS, FAKE_DIR):
        if not (root / folder).is_dir():
            continue
        for path in sorted((root / folder).glob("*.mp4")):
            rel = f"{folder}/{path.name}"
            label = "fake" if folder == FAKE_DIR else "real"
            if test is not None and rel in test and test[rel] != label:
                raise IngestError(f"{test_path}: {rel} is listed as {test[rel]} but sits in {folder}")
            entry = Entry(rel, path.resolve(), label, split=None if test is None else ("test" if rel in test else "train"))
            if label == "fake":
                m = _FAKE.match(path.stem)
                if m is None:
                    raise IngestError(f"{path}: Celeb-synthesis names are id<t>_id<s>_<n>.mp4, got {path.name!r}")
                entry.method = METHOD
                entry.source_key = f"Celeb-real/{m.group(1)}_{m.group(3)}.mp4"
                entry.meta = {"donor_identity": m.group(2), "identity": m.group(1)}
            elif folder == "Celeb-real":  # id<t>_<n>: all of one person's videos split together
                entry.meta = {"identity": path.stem.split("_")[0]}
            entries.append(entry)
    if test is not None:  # listed but absent: an error row each (unreadable), never dropped
        present = {e.key for e in entries}
        for rel in sorted(set(test) - present):
            entries.append(Entry(rel, (root / rel).resolve(), test[rel], split="test"))
    return entries


def ingest_celebdf(root: str | Path, out: str | Path) -> list[IngestSummary]:
    """One summary per version found (v1 and v2 are separate datasets)."""
    root = require_dir(Path(root), "Celeb-DF root")
    return [write_entries(list_celebdf_version(r), out, name) for r, name in _version_roots(root)]
