"""A curator's own folders: labels (and optionally splits and methods) from the layout.

    ROOT/real/...                  real videos or images (any depth below)
    ROOT/fake/<method>/...         fakes, by method; files directly in fake/ have no method
    ROOT/{train,val,test}/real|fake/...   the same, one level down, to give splits

A fake is paired with the real video it was made from when their names say so: the same
file stem (`real/004.mp4`, `fake/Deepfakes/004.mp4`) or the real's stem followed by `_`
(`real/004.mp4`, `fake/Deepfakes/004_982.mp4`, as FF++ names them). Pairs let `dfpipe
masks` recover masks and keep a fake in its source's split.
"""

from __future__ import annotations

from pathlib import Path

from dfpipe.pipeline.faces import inputs
from dfpipe.pipeline.ingest.common import Entry, IngestError, IngestSummary, require_dir, write_entries

DATASET = "folders"
LABEL_DIRS = ("real", "fake")
SPLIT_DIRS = ("train", "val", "test")


def _label_roots(root: Path) -> list[tuple[Path, str, str | None]]:
    """(folder, label, split) for every real/ and fake/ folder of the layout."""
    found = [(root / d, d, None) for d in LABEL_DIRS if (root / d).is_dir()]
    for split in SPLIT_DIRS:
        found += [(root / split / d, d, split) for d in LABEL_DIRS if (root / split / d).is_dir()]
    if not found:
        raise IngestError(
            f"{root}: no real/ or fake/ folder (nor train|val|test/real|fake); "
            "put real videos under ROOT/real/ and fakes under ROOT/fake/<method>/"
        )
    return found


def _source_of(stem: str, real_stems: dict[str, str]) -> str | None:
    """The key of the real this fake was made from: same stem, or the longest real stem
    followed by '_'."""
    if stem in real_stems:
        return real_stems[stem]
    best = None
    for real_stem, key in real_stems.items():
        if stem.startswith(real_stem + "_") and (best is None or len(real_stem) > len(best[0])):
            best = (real_stem, key)
    return best[1] if best else None


def list_folders(root: str | Path) -> list[Entry]:
    """Entries of a real/ fake/ layout, keyed by their path relative to ROOT."""
    root = require_dir(Path(root), "the folder holding real/ and fake/").resolve()
    entries: list[Entry] = []
    for folder, label, split in _label_roots(root):
        for path in inputs.media_files(folder):
            rel = path.relative_to(folder)
            method = rel.parts[0] if label == "fake" and len(rel.parts) > 1 else None
            entries.append(Entry(path.relative_to(root).as_posix(), path, label, method=method, split=split))
    if not entries:
        exts = ", ".join(sorted(inputs.MEDIA_EXTENSIONS))
        raise IngestError(f"{root}: real/ and fake/ hold no video or image file (looked for {exts})")
    real_stems: dict[str, str] = {}
    for e in entries:
        if e.label == "real":
            if e.path.stem in real_stems:  # two reals of one name: pairing by name is ambiguous
                real_stems[e.path.stem] = ""
            else:
                real_stems[e.path.stem] = e.key
    for e in entries:
        if e.label == "fake":
            source = _source_of(e.path.stem, real_stems)
            e.source_key = source or None
    return entries


def ingest_folders(root: str | Path, out: str | Path) -> IngestSummary:
    entries = list_folders(root)
    summary = write_entries(entries, out, DATASET)
    unpaired = sum(1 for e in entries if e.label == "fake" and e.source_key is None)
    if unpaired:
        summary.warnings.append(
            f"{unpaired} fake(s) have no real of the same name (or name_ prefix): "
            "masks for them need a pair; they are split on their own"
        )
    return summary
