"""Files that appear only complete: written under a hidden name beside the target, flushed
to disk, then renamed into place.

A reader (or a resumed run) therefore sees either the old file or the whole new one, never
a half-written one, even after SIGKILL or a power cut. Every file dfpipe writes by rename
goes through `atomic_write`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder; on success fsync it, give it `mode` and
    rename it to `path`. On an exception the temporary file is removed and `path` is left
    as it was. Hidden names (`.tmp-...`) keep readers and part listings off it; the name
    ends in the target's own, so ffmpeg still picks the container from the extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`path` holds `text`, written atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)
