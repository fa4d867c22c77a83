"""The decord backend (optional extra): the same frames as PyAV, through decord's reader.

A file decord cannot open is decoded with PyAV instead, with a warning, so both backends
report the same error codes. (Named `decord_backend` so it never shadows the package.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from dfpipe.pipeline.video.probe import (
    DecodeError,
    Frame,
    VideoInfo,
    check_complete,
    cut_short,
    first_line,
    raise_broken,
    upright,
)
from dfpipe.pipeline.video.pyav_backend import iter_pyav
from dfpipe.pipeline.video.sampling import Sampling, Selector

_log = logging.getLogger(__name__)

# decord's automatic thread count let RSS creep up by ~200 MB over a 200-frame 1080p clip
# (its frame pool grows per thread); one thread kept it flat at no measurable speed cost.
_DECORD_THREADS = 1
# Frames per decord `get_batch` call: large enough to amortise the call, small enough to
# keep memory at a few frames (4 x 1080p RGB = 25 MB).
_DECORD_BATCH = 4


def import_decord():
    """decord is optional: fail when the backend is chosen, with what to do about it."""
    try:
        import decord
    except ImportError as exc:
        raise ImportError(
            "backend='decord' needs the decord package: pip install 'dfpipe[decord]' (or use backend='pyav')"
        ) from exc
    decord.logging.set_level(decord.logging.QUIET)  # its errors reach us as exceptions
    return decord


def iter_decord(path: Path, info: VideoInfo, sampling: Sampling, max_pixels: int | None) -> Iterator[Frame]:
    decord = import_decord()
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=_DECORD_THREADS)
    except decord.DECORDError as exc:
        _log.warning("decord cannot open %s (%s); decoding it with PyAV", path, first_line(exc))
        yield from iter_pyav(path, info, sampling, max_pixels)
        return
    n = len(reader)
    selector = Selector(sampling, n, info.fps)
    if sampling.fps is not None:
        wanted = selector.indices(reader.get_frame_timestamp(range(n))[:, 0]) if n else []
    elif sampling.count is not None:
        wanted = list(selector.wanted or [])
    else:
        wanted = list(range(0, n, sampling.every or 1))
    decoded = 0
    try:
        for start in range(0, len(wanted), _DECORD_BATCH):
            chunk = wanted[start : start + _DECORD_BATCH]
            images = reader.get_batch(chunk).asnumpy()
            stamps = reader.get_frame_timestamp(chunk)[:, 0]
            for i, image, ts in zip(chunk, images, stamps):
                decoded = i + 1
                yield Frame(index=int(i), timestamp=float(ts), image=_decord_upright(image, info))
    except decord.DECORDError as exc:
        # probe() decoded frame 0, so at least one frame decodes even if none was yielded yet
        raise_broken(path, max(decoded, 1), exc, cut=cut_short(path, info))
    if not wanted:
        raise DecodeError("truncated", f"{path}: no frame could be decoded")
    if sampling.count is None and (sampling.every or 1) == 1 and sampling.fps is None:
        check_complete(path, info, n)


def _decord_upright(image: np.ndarray, info: VideoInfo) -> np.ndarray:
    """decord applies the display matrix itself; rotate only if this build did not."""
    h, w = image.shape[:2]
    if (w, h) == (info.width, info.height) or info.rotation == 0:
        return image
    return upright(image, info.rotation)
