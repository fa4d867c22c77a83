"""The ids and paths rows refer to each other by: what every stage writes and reads.

`video_id` is a content hash (the same file listed twice, or under another name, is one
video); `face_id` names one face of one frame of one video; paths inside manifests are
relative to the dataset root, so a dataset directory can be moved as a whole.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HASH_CHUNK = 4 << 20


def video_content_id(path: str | Path) -> str:
    """A content hash: blake2b of the size plus the first and last 4 MiB.

    Reading whole files would make listing a large dataset as slow as copying it; the two
    ends of a video (headers, index, first and last GOPs) already differ between any two
    encodes. Unreadable paths get an id from the path, so their error row is stable too.
    """
    p = Path(path)
    h = hashlib.blake2b(digest_size=10)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            h.update(str(size).encode())
            h.update(fh.read(_HASH_CHUNK))
            if size > 2 * _HASH_CHUNK:
                fh.seek(-_HASH_CHUNK, os.SEEK_END)
                h.update(fh.read(_HASH_CHUNK))
            elif size > _HASH_CHUNK:
                h.update(fh.read())
        return h.hexdigest()
    except OSError:
        h.update(b"path:" + str(p.resolve()).encode())
        return "nofile-" + h.hexdigest()


def path_id(path: str | Path, prefix: str) -> str:
    """An id from a path alone, for rows about a path rather than its content (duplicates)."""
    return prefix + hashlib.blake2b(str(Path(path).absolute()).encode(), digest_size=10).hexdigest()


def face_id(video_id: str, frame_index: int, track_id: int) -> str:
    """One face: sorts by video, then frame, then track."""
    return f"{video_id}-{int(frame_index):07d}-{int(track_id):03d}"


def relative_path(path: str | Path, root: str | Path) -> str:
    """`path` as a manifest stores it: relative to the dataset root `root`."""
    try:
        return os.path.relpath(Path(path).absolute(), Path(root).absolute())
    except ValueError:  # another drive on Windows
        return str(Path(path).absolute())
