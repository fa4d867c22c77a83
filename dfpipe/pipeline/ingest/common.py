"""What every dataset adapter shares: the listing entry, pair resolution, the writer.

An adapter only reads its dataset's layout and returns `Entry` objects keyed by the
dataset's own names ("004", "004_982", "id0_0000"). This module turns them into `videos/`
rows: content-hash ids, pair links resolved from keys to ids, paths relative to the
dataset directory, `status="pending"` so `dfpipe extract DS` picks them up.

Pair links follow dfpipe's convention (docs/architecture.md): a fake's
`source_video_id` is the real video whose frames it was made from (same geometry and
timeline, so extract reuses its tracks and masks come from the difference), and
`target_video_id` is the identity donor when the dataset names one. FF++ calls these
the other way round (`<target>_<source>.mp4`: frames of <target>, face of <source>);
the raw names are kept in `meta`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from dfpipe.manifests.ids import video_content_id
from dfpipe.manifests.parts import part_keys, part_path, rows_to_table, write_part_atomic, write_rows
from dfpipe.manifests.schema import LABELS, SPLITS, VIDEOS_SCHEMA


class IngestError(ValueError):
    """A dataset's layout or metadata file is missing or malformed (the message names it)."""


@dataclass
class Entry:
    """One video as a dataset adapter sees it."""

    key: str  # the dataset's own name, unique within one ingest
    path: Path  # absolute
    label: str  # real / fake / unknown
    method: str | None = None
    compression: str | None = None
    source_key: str | None = None  # real video whose frames the fake was made from
    target_key: str | None = None  # identity donor
    split: str | None = None
    mask_path: Path | None = None  # a shipped mask video (absolute), stored in meta
    meta: dict = field(default_factory=dict)


@dataclass
class IngestSummary:
    dataset: str
    out: Path
    written: int = 0
    skipped_existing: int = 0
    updated: list[tuple[str, str]] = field(default_factory=list)  # (key, what changed)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    by_label: Counter = field(default_factory=Counter)
    by_method: Counter = field(default_factory=Counter)
    by_split: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


def _readable(path: Path) -> str | None:
    """Why `path` cannot be read, or None."""
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def duplicate_id(path: Path) -> str:
    """Id of the row recording a second path with already-listed content (as extract names it)."""
    return "dup-" + hashlib.blake2b(str(path.absolute()).encode(), digest_size=10).hexdigest()


def check_label(value: str, where: str) -> str:
    if value not in LABELS:
        raise IngestError(f"{where}: label {value!r} is not one of {', '.join(LABELS)}")
    return value


def check_split(value: str | None, where: str) -> str | None:
    if value is not None and value not in SPLITS:
        raise IngestError(f"{where}: split {value!r} is not one of {', '.join(SPLITS)}")
    return value


def read_json(path: Path) -> object:
    """A JSON file, with a clear error naming it when missing or malformed."""
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IngestError(f"{path}: not valid JSON ({exc})") from exc


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise IngestError(f"{path}: no such folder ({what})")
    return path


def _rel(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path, out)).as_posix()


def write_entries(entries: Iterable[Entry], out: str | Path, dataset: str) -> IngestSummary:
    """Hash, link and write `entries` as pending `videos/` rows under `out`.

    A video whose row already exists keeps what extract found (status, counts): re-running
    ingest on a dataset that was extracted since must not reset it to pending. When the
    listing now says something else about it (label, method, compression, split, pair),
    the row is updated, and so are the label and split of its extracted faces; each update
    is listed in `summary.updated`.
    """
    out = Path(out).resolve()
    summary = IngestSummary(dataset=dataset, out=out)
    entries = list(entries)
    keys = Counter(e.key for e in entries)
    dup_keys = [k for k, n in keys.items() if n > 1]
    if dup_keys:
        raise IngestError(f"{dataset}: names listed more than once: {', '.join(sorted(dup_keys)[:10])}")

    ids: dict[str, str] = {}
    first_key_of_id: dict[str, str] = {}
    problem: dict[str, str | None] = {}
    for e in entries:
        problem[e.key] = _readable(e.path)
        if problem[e.key] is not None:
            summary.errors.append((str(e.path), problem[e.key]))
        ids[e.key] = video_content_id(e.path)  # extract's id; a stable path-based one when unreadable
        first_key_of_id.setdefault(ids[e.key], e.key)

    existing = part_keys(out, "videos")
    for e in entries:
        vid = ids[e.key]
        first = first_key_of_id[vid]
        if first != e.key:  # same bytes listed twice: one row, plus an error row for the copy
            vid = duplicate_id(e.path)
            summary.warnings.append(f"{e.path} has the same content as {first}; listed once")
        if vid in existing:
            change = _update_existing(out, vid, e, ids)
            if change:
                summary.updated.append((e.key, change))
            else:
                summary.skipped_existing += 1
            continue
        if first != e.key:
            row = {
                "video_id": vid, "path": _rel(e.path, out), "label": e.label, "dataset": dataset,
                "status": "error", "error_code": "duplicate",
                "error": f"same content as {first} (video {ids[first]})",
                "meta": json.dumps({"key": e.key}),
            }
            write_rows(out, "videos", vid, [row], VIDEOS_SCHEMA)
            summary.written += 1
            continue
        row = {
            "video_id": vid,
            "path": _rel(e.path, out),
            "label": e.label,
            "dataset": dataset,
            "method": e.method,
            "compression": e.compression,
            "split": e.split,
            "status": "pending",
            "meta": json.dumps(
                {"key": e.key, **e.meta, **({"mask_path": _rel(e.mask_path, out)} if e.mask_path else {})},
                sort_keys=True,
            ),
        }
        for link, column in ((e.source_key, "source_video_id"), (e.target_key, "target_video_id")):
            if link is None:
                continue
            if link in ids:
                row[column] = ids[link]
            else:
                summary.warnings.append(f"{e.key}: {column[:-9]} video {link!r} is not in the dataset")
        if problem[e.key] is not None:
            row.update(status="error", error_code="unreadable", error=f"{e.path}: {problem[e.key]}")
        write_rows(out, "videos", vid, [row], VIDEOS_SCHEMA)
        summary.written += 1
        summary.by_label[e.label] += 1
        summary.by_method[e.method or "-"] += 1
        summary.by_split[e.split or "-"] += 1
    return summary


def _update_existing(out: Path, vid: str, e: Entry, ids: dict[str, str]) -> str:
    """Bring an existing row in line with the listing; '' when nothing changed, else what did
    ("label unknown -> fake")."""
    path = part_path(out, "videos", vid)
    rows = pq.read_table(path).to_pylist()
    if not rows or rows[0].get("status") == "error" and rows[0].get("error_code") == "duplicate":
        return ""
    row = rows[0]
    wanted = {"label": e.label, "method": e.method, "compression": e.compression, "split": e.split,
              "source_video_id": ids.get(e.source_key) if e.source_key else None,
              "target_video_id": ids.get(e.target_key) if e.target_key else None}
    changed = {k: (row.get(k), v) for k, v in wanted.items() if row.get(k) != v}
    if not changed:
        return ""
    row.update({k: v for k, (_, v) in changed.items()})
    write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), path)
    if {"label", "split"} & set(changed):
        _relabel_faces(out, vid, row["label"], row["split"])
    return ", ".join(f"{k.replace('_video_id', '')} {old or '-'} -> {new or '-'}" for k, (old, new) in changed.items())


def _relabel_faces(out: Path, vid: str, label: str, split: str | None) -> None:
    """Set the label and split of a video's extracted faces (their crops stay as they are)."""
    path = part_path(out, "faces", vid)
    if not path.is_file():
        return
    table = pq.read_table(path)
    n = table.num_rows
    for name, value in (("label", label), ("split", split)):
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, table.schema.field(name), pa.array([value] * n, type=pa.string()))
    write_part_atomic(table, path)
