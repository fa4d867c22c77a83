"""Decode videos into upright RGB frames, one at a time: the entry point that picks a backend.

The contract (docs/architecture.md): `probe(path) -> VideoInfo` and
`iter_frames(path, sampling, backend) -> Iterator[Frame]`; every failure is a
`DecodeError` whose `code` is one of `dfpipe.manifests.schema.ERROR_CODES`, so the extract
stage can write an error row instead of a traceback. The parts live beside this module
(`probe`, `sampling`, `pyav_backend`, `decord_backend`); callers import them from here.

Still images (`video/still.py`) are one-frame inputs: `probe` gives `kind="image"` and
`iter_frames` yields the picture as frame 0.

Backends. `pyav` (required) and `decord` (optional extra) both wrap FFmpeg and give the
same pixels. `auto` means PyAV, by benchmark (bench/decode.py, docs/benchmarks.md): decord
ran at 0.77x PyAV's speed on the 720p FF++ clip and 0.35x on a 1080p clip decoding every
frame, and 0.93-0.97x with every 10th frame; PyAV also kept RSS growth to a few MiB where
decord's frame pool took 50-110 MiB, is always installed, and reads files decord refuses
(a half-copied MP4). `backend="decord"` falls back to PyAV, with a warning, for a file
decord cannot open, so both backends report the same error codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Literal

from dfpipe.pipeline.video.decord_backend import import_decord, iter_decord
from dfpipe.pipeline.video.probe import DecodeError, Frame, VideoInfo, probe
from dfpipe.pipeline.video.pyav_backend import iter_pyav
from dfpipe.pipeline.video.sampling import Sampling
from dfpipe.pipeline.video.still import iter_image

Backend = Literal["pyav", "decord", "auto"]
BACKENDS = ("pyav", "decord", "auto")


def iter_frames(
    path: str | Path,
    sampling: Sampling | None = None,
    backend: Backend = "auto",
    max_pixels: int | None = None,
) -> Iterator[Frame]:
    """Yield the sampled frames of `path` in order, upright RGB, one at a time.

    Raises `DecodeError` before the first frame for bad files and frames over
    `max_pixels` (`too_large`). A stream that stops early (or fails mid-way) yields the
    frames it has and then raises `truncated` (or `decode_error`), so callers can choose
    to keep the partial frames or drop the video.
    """
    sampling = sampling or Sampling()
    if backend not in BACKENDS:
        raise ValueError(f"unknown decode backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if backend == "decord":
        import_decord()
    path = Path(path)
    info = probe(path)
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise DecodeError(
            "too_large",
            f"{path}: frames are {info.width}x{info.height} = {info.width * info.height} pixels, "
            f"over max_pixels={max_pixels}",
        )
    if info.kind == "image":
        return iter_image(path, max_pixels)
    if backend == "decord":
        return iter_decord(path, info, sampling, max_pixels)
    return iter_pyav(path, info, sampling, max_pixels)


__all__ = [
    "BACKENDS",
    "DecodeError",
    "Frame",
    "Sampling",
    "VideoInfo",
    "iter_frames",
    "probe",
]
