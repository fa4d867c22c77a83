"""Atomic part files and readers for the Parquet datasets of a dataset directory.

A part appears only complete: it is written under a hidden temporary name in the same
folder and renamed into place. Readers ignore hidden files, so a killed writer leaves
nothing a reader can see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from dfpipe.runtime.files import atomic_write


def part_path(root: str | Path, table: str, key: str) -> Path:
    """Where the part of `table` for work item `key` (a video id, a shard name) lives."""
    return Path(root) / table / f"part-{key}.parquet"


def rows_to_table(rows: Sequence[Mapping], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly `schema`'s columns; missing keys become nulls."""
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


def write_part_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write `table` to `path` so that it is visible only when complete."""
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=256)
    return Path(path)


def write_rows(root: str | Path, table: str, key: str, rows: Sequence[Mapping], schema: pa.Schema) -> Path:
    """Convenience: rows -> table -> atomic part file."""
    return write_part_atomic(rows_to_table(rows, schema), part_path(root, table, key))


def list_parts(root: str | Path, table: str) -> list[Path]:
    folder = Path(root) / table
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("part-*.parquet"))


def part_keys(root: str | Path, table: str) -> set[str]:
    """Work-item keys whose part of `table` exists (used to skip finished work)."""
    return {p.name[len("part-") : -len(".parquet")] for p in list_parts(root, table)}


def open_dataset(root: str | Path, table: str, schema: pa.Schema | None = None) -> pads.Dataset:
    """A lazy pyarrow dataset over the visible part files of `table`."""
    parts = [str(p) for p in list_parts(root, table)]
    return pads.dataset(parts, schema=schema, format="parquet")


def read_table(
    root: str | Path,
    table: str,
    schema: pa.Schema | None = None,
    columns: Iterable[str] | None = None,
    filter=None,
) -> pa.Table:
    """Read `table` (all parts) with column projection; empty table when none exist."""
    parts = list_parts(root, table)
    if not parts:
        if schema is None:
            return pa.table({})
        empty = schema.empty_table()
        return empty.select(list(columns)) if columns else empty
    ds = open_dataset(root, table, schema)
    return ds.to_table(columns=list(columns) if columns else None, filter=filter)
