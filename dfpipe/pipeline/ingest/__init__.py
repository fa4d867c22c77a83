"""Ingest: turn a public dataset's layout into pending `videos/` rows (one module each).

`ingest(kind, root, out)` is what the CLI calls; `dfpipe extract DS` then extracts the
pending rows, reals first, fakes reusing their source's tracks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dfpipe.pipeline.ingest.common import Entry, IngestError, IngestSummary, write_entries
from dfpipe.pipeline.ingest.ffpp import DEFAULT_COMPRESSION, ingest_ffpp

KINDS = ("ff++", "dfdc", "celebdf", "folders", "list")


def ingest(
    kind: str,
    root: str | Path,
    out: str | Path,
    compression: Sequence[str] | None = None,
    splits: str | Path | None = None,
) -> list[IngestSummary]:
    """Ingest dataset `root` of `kind` into dataset directory `out`; one summary per dataset.

    `compression` (default `ffpp.DEFAULT_COMPRESSION`) and `splits` apply to FF++ only.
    """
    if kind not in KINDS:
        raise IngestError(f"unknown dataset kind {kind!r}; one of {', '.join(KINDS)}")
    if kind != "ff++" and (compression or splits):
        raise IngestError("--compression and --splits apply to ff++ only")
    if kind == "ff++":
        return [ingest_ffpp(root, out, tuple(compression or DEFAULT_COMPRESSION), splits)]
    if kind == "dfdc":
        from dfpipe.pipeline.ingest.dfdc import ingest_dfdc

        return [ingest_dfdc(root, out)]
    if kind == "celebdf":
        from dfpipe.pipeline.ingest.celebdf import ingest_celebdf

        return ingest_celebdf(root, out)
    if kind == "folders":
        from dfpipe.pipeline.ingest.folders import ingest_folders

        return [ingest_folders(root, out)]
    from dfpipe.pipeline.ingest.listing import ingest_listing

    return [ingest_listing(root, out)]


__all__ = ["KINDS", "Entry", "IngestError", "IngestSummary", "ingest", "write_entries"]
