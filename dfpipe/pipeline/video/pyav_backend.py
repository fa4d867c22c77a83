"""The PyAV backend: decode through, seek over long gaps, or drop unneeded frames.

Memory is bounded by one frame whatever the video length: frames are streamed from the
decoder. Frames the sampling skips are never converted to RGB, which nearly doubles
throughput at `every=10` on the FF++ clip. They are still decoded when a later frame
depends on them (H.264); across a long gap that holds a keyframe this backend seeks
instead, and otherwise it asks FFmpeg to drop the unsampled frames nothing depends on (most
B-frames of H.264 and HEVC). Both take true indices from the container's packet timestamps
(read without decoding), and decode through whenever that index cannot be trusted.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

from dfpipe.pipeline.video.probe import (
    DecodeError,
    Frame,
    VideoInfo,
    check_complete,
    first_line,
    open_video,
    raise_broken,
    set_threads,
    upright,
)
from dfpipe.pipeline.video.sampling import Sampling, Selector

_log = logging.getLogger(__name__)

# Codecs whose FFmpeg decoders mark the frames no other frame references, so unsampled
# ones can be dropped undecoded (skip_frame=NONREF); others are decoded through.
_NONREF_CODECS = {"h264", "hevc"}
# Seek to a keyframe only when that skips decoding at least this many frames: a seek costs
# a decoder flush and restart, about as much as decoding a couple of dozen frames.
_SEEK_MIN_SKIP = 24


def iter_pyav(path: Path, info: VideoInfo, sampling: Sampling, max_pixels: int | None) -> Iterator[Frame]:
    """Seek over long gaps between sampled frames when the file allows, else decode through
    (skipping the unsampled frames no other frame needs, where the codec says which)."""
    plan = _seek_plan(path, info, sampling)
    if plan is None:
        yield from _iter_pyav_linear(path, info, sampling, max_pixels)
        return
    if any(key is not None for key in plan.seek_to):
        planned, what = _iter_pyav_seeking(path, info, plan, max_pixels), "seeking"
    elif info.codec in _NONREF_CODECS:
        planned, what = _iter_pyav_skipping(path, info, plan, max_pixels), "skipping frames"
    else:
        yield from _iter_pyav_linear(path, info, sampling, max_pixels)
        return
    last = -1
    try:
        for frame in planned:
            last = frame.index
            yield frame
    except _SeekMismatch as exc:
        _log.warning("%s: %s went wrong (%s); decoding through instead", path, what, exc)
        yield from _iter_pyav_linear(path, info, sampling, max_pixels, after=last)


def _timestamp(frame, stream, index: int, fps: float) -> float:
    if frame.pts is None:
        return index / fps if fps > 0 else 0.0
    start = stream.start_time or 0
    return float((frame.pts - start) * stream.time_base)


def _to_frame(path: Path, frame, index: int, ts: float, rotation: int, max_pixels: int | None) -> Frame:
    """A sampled PyAV frame as an upright RGB `Frame` (size checked: it may change mid-stream)."""
    if max_pixels is not None and frame.width * frame.height > max_pixels:
        raise DecodeError(
            "too_large", f"{path}: frame {index} is {frame.width}x{frame.height}, over max_pixels={max_pixels}"
        )
    return Frame(index=index, timestamp=ts, image=upright(frame.to_ndarray(format="rgb24"), rotation))


def _iter_pyav_linear(
    path: Path, info: VideoInfo, sampling: Sampling, max_pixels: int | None, after: int = -1
) -> Iterator[Frame]:
    """Decode every frame in order and convert the sampled ones (those past `after`)."""
    import av

    selector = Selector(sampling, info.n_frames, info.fps)
    container, stream = open_video(path)
    set_threads(stream)
    index = -1
    packet_end = 0  # byte offset where the last demuxed packet ends: tells cut from corrupt
    try:
        try:
            for packet in container.demux(stream):
                if packet.pos is not None and packet.pos >= 0:
                    packet_end = packet.pos + packet.size
                for frame in packet.decode():  # the final empty packet flushes the decoder
                    index += 1
                    ts = _timestamp(frame, stream, index, info.fps)
                    if not selector.take(index, ts) or index <= after:
                        continue
                    yield _to_frame(path, frame, index, ts, info.rotation, max_pixels)
                    if selector.done():
                        return
        except av.error.FFmpegError as exc:
            raise_broken(path, index + 1, exc, cut=packet_end >= path.stat().st_size)
        check_complete(path, info, index + 1)
    finally:
        container.close()


class _SeekMismatch(Exception):
    """The packet index did not describe the decoded frames; decode through instead."""


@dataclass(frozen=True)
class _SeekPlan:
    """Sampled frames (true indices), whether to seek to the keyframe before each one, and
    the presentation timestamps (stream time base) of every frame, in order."""

    wanted: list[int]
    seek_to: list[int | None]
    pts: list[int] = field(repr=False)

    @cached_property
    def position(self) -> dict[int, int]:
        """Frame index of each presentation timestamp."""
        return {p: i for i, p in enumerate(self.pts)}


def _seek_plan(path: Path, info: VideoInfo, sampling: Sampling) -> _SeekPlan | None:
    """The sampled frames' true indices from the packet index, and a seek over each gap of
    at least `_SEEK_MIN_SKIP` frames; None (decode through) when the index cannot be trusted.

    Frames between sampled ones that later frames reference must be decoded unless a
    keyframe lies between them, so a seek pays only across long gaps with keyframes
    inside: sparse sampling of long videos with short GOPs (phone clips keyframe about
    every second; FF++ every 250 frames). The plan trusts the container only when
    demuxing (cheap, no decoding) finds exactly the promised number of frames with
    distinct timestamps, so its indices are the true ones.
    """
    import av

    if sampling == Sampling() or sampling.every == 1 or not info.n_frames_exact:
        return None
    container, stream = open_video(path)
    try:
        pts, key_pts = [], []
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            if packet.is_keyframe:
                key_pts.append(packet.pts)
        start = stream.start_time or 0
        time_base = float(stream.time_base)
    except av.error.FFmpegError:
        return None
    finally:
        container.close()
    pts.sort()
    if len(pts) != info.n_frames or len(set(pts)) != len(pts):
        return None
    keys = sorted(bisect.bisect_left(pts, p) for p in key_pts)  # pts: sorted and distinct
    selector = Selector(sampling, info.n_frames, info.fps)
    wanted = selector.indices([(p - start) * time_base for p in pts])
    seek_to: list[int | None] = []
    decoded = -1  # the decoder's position after the previous sampled frame
    for w in wanted:
        k = bisect.bisect_right(keys, w) - 1
        key = keys[k] if k >= 0 else None
        seek_to.append(key if key is not None and key - decoded > _SEEK_MIN_SKIP else None)
        decoded = w
    return _SeekPlan(wanted, seek_to, pts)


def _iter_pyav_seeking(
    path: Path, info: VideoInfo, plan: _SeekPlan, max_pixels: int | None
) -> Iterator[Frame]:
    """Follow a `_SeekPlan`: seek to a keyframe, decode forward to the sampled frame."""
    import av

    position = plan.position
    container, stream = open_video(path)
    set_threads(stream)
    try:
        frames = container.decode(stream)
        for wanted, key in zip(plan.wanted, plan.seek_to):
            if key is not None:
                container.seek(plan.pts[key], stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
            for frame in frames:
                index = position.get(frame.pts)
                if index is None or index > wanted:
                    raise _SeekMismatch(f"frame with pts {frame.pts} where frame {wanted} was expected")
                if index < wanted:
                    continue
                ts = _timestamp(frame, stream, index, info.fps)
                yield _to_frame(path, frame, index, ts, info.rotation, max_pixels)
                break
            else:
                raise _SeekMismatch(f"the stream ended before frame {wanted}")
    except av.error.FFmpegError as exc:
        raise _SeekMismatch(first_line(exc)) from exc  # decoding through classifies it
    finally:
        container.close()


def _iter_pyav_skipping(
    path: Path, info: VideoInfo, plan: _SeekPlan, max_pixels: int | None
) -> Iterator[Frame]:
    """Decode through, telling the decoder to drop the frames that are neither sampled nor
    referenced by another frame (FFmpeg's `skip_frame=NONREF`, set packet by packet).

    The sampled frames come out with the same pixels as decoding everything; on x264
    files with B-frames about 40% of the frames are never decoded (bench/decode.py
    --nonref-only). Indices come from the plan's timestamps, since skipped frames leave no
    trace in the decoder's output."""
    import av

    position = plan.position
    wanted_pts = {plan.pts[i] for i in plan.wanted}
    container, stream = open_video(path)
    set_threads(stream)
    codec = stream.codec_context
    remaining = len(plan.wanted)
    decoded = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                codec.skip_frame = "DEFAULT" if packet.pts in wanted_pts else "NONREF"
            for frame in packet.decode():
                decoded += 1
                index = position.get(frame.pts)
                if index is None:
                    raise _SeekMismatch(f"a frame with pts {frame.pts}, which the index does not hold")
                if frame.pts not in wanted_pts:
                    continue
                yield _to_frame(path, frame, index, _timestamp(frame, stream, index, info.fps), info.rotation, max_pixels)
                remaining -= 1
                if not remaining:
                    return
        raise _SeekMismatch(f"the stream ended with {remaining} sampled frames not decoded")
    except av.error.FFmpegError as exc:
        raise _SeekMismatch(first_line(exc)) from exc  # decoding through classifies it
    finally:
        container.close()
        _log.debug("%s: decoded %d of %d frames for %d sampled", path, decoded, len(plan.pts), len(plan.wanted))
