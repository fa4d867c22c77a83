"""A generic listing: a CSV or JSON file naming videos with their labels and pairs.

Columns (CSV header or JSON object keys): `path` (required, relative to the listing's
folder or absolute), `label` (required: real / fake / unknown), and optional `source`
(the path of the real video a fake was made from, as listed), `target` (identity donor),
`method`, `compression`, `split`, `dataset`, `identity` (who is in the video: training
keeps one identity's videos on one side of a split, as Celeb-DF's ids). A JSON listing is
a list of such objects.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dfpipe.pipeline.ingest.common import (
    Entry,
    IngestError,
    IngestSummary,
    check_label,
    check_split,
    read_json,
    write_entries,
)

DATASET = "custom"
COLUMNS = ("path", "label", "source", "target", "method", "compression", "split", "dataset", "identity")


def _read_records(path: Path) -> list[dict]:
    if not path.is_file():
        raise IngestError(f"{path}: no such file (the listing)")
    if path.suffix.lower() == ".json":
        data = read_json(path)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise IngestError(f"{path}: a JSON listing is a list of objects with 'path' and 'label'")
        return data
    if path.suffix.lower() in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
                raise IngestError(f"{path}: the header must name at least 'path' and 'label', got {reader.fieldnames}")
            return [{k: (v or None) for k, v in row.items()} for row in reader]
    raise IngestError(f"{path}: a listing is .csv, .tsv or .json, got {path.suffix!r}")


def list_listing(listing: str | Path) -> tuple[list[Entry], str]:
    """Entries of a listing file, and the dataset name it declares (default 'custom')."""
    listing = Path(listing)
    records = _read_records(listing)
    base = listing.resolve().parent
    entries, datasets = [], set()
    for no, rec in enumerate(records, 1):
        where = f"{listing} entry {no}"
        unknown = set(rec) - set(COLUMNS)
        if unknown:
            raise IngestError(f"{where}: unknown columns {sorted(unknown)}; known: {', '.join(COLUMNS)}")
        if not rec.get("path") or not rec.get("label"):
            raise IngestError(f"{where}: 'path' and 'label' are required")
        key = str(rec["path"])
        entries.append(
            Entry(
                key=key,
                path=(base / key).resolve(),
                label=check_label(str(rec["label"]).lower(), where),
                method=rec.get("method"),
                compression=rec.get("compression"),
                source_key=rec.get("source"),
                target_key=rec.get("target"),
                split=check_split(rec.get("split"), where),
                meta={"identity": str(rec["identity"])} if rec.get("identity") else {},
            )
        )
        datasets.add(rec.get("dataset") or DATASET)
    if not entries:
        raise IngestError(f"{listing}: lists no videos")
    if len(datasets) > 1:
        raise IngestError(f"{listing}: names several datasets {sorted(datasets)}; use one listing per dataset")
    listed = {e.key for e in entries}
    for e in entries:
        for link in (e.source_key, e.target_key):
            if link is not None and link not in listed:
                raise IngestError(f"{listing}: {e.key} names {link!r} as its pair, which is not listed")
    return entries, datasets.pop()


def ingest_listing(listing: str | Path, out: str | Path) -> IngestSummary:
    entries, dataset = list_listing(listing)
    return write_entries(entries, out, dataset)
