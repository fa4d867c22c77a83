"""Frames at chosen indices, streamed, converted to RGB only when wanted.

Ewarp needs frames t and t+1 at a handful of sampled t; `decode.iter_frames` samples by
rule (every / count / fps) and converts each kept frame. Here the stream is decoded in
order (indices as `decode` counts them: decoded frames from 0) and only the wanted
frames pay for the YUV -> RGB conversion, which is most of the cost at 720p.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from dfpipe.pipeline.video.probe import DecodeError, probe, upright
from dfpipe.pipeline.video.still import read_image


def frames_at(path: str | Path, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(index, upright RGB frame) for each wanted index present in the video, in order."""
    import av

    if not wanted:
        return
    path = Path(path)
    info = probe(path)  # classified DecodeError for missing / non-video files
    if info.kind == "image":
        if 0 in wanted:
            yield 0, read_image(path)
        return
    last = max(wanted)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            index = -1
            for frame in container.decode(stream):
                index += 1
                if index in wanted:
                    yield index, upright(frame.to_ndarray(format="rgb24"), info.rotation)
                if index >= last:
                    return
    except av.error.FFmpegError as exc:
        raise DecodeError("decode_error", f"{path}: FFmpeg failed after frame {index} ({exc})") from exc
