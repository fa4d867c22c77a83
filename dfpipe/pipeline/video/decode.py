"""Decode videos into upright RGB frames, one at a time.

The contract (docs/architecture.md): `probe(path) -> VideoInfo` and
`iter_frames(path, sampling, backend) -> Iterator[Frame]`; every failure is a
`DecodeError` whose `code` is one of `dfpipe.manifests.schema.ERROR_CODES`, so the extract
stage can write an error row instead of a traceback.

Memory is bounded by one frame whatever the video length: frames are streamed from the
decoder. Frames the sampling skips are never converted to RGB, which nearly doubles
throughput at `every=10` on the FF++ clip. They are still decoded when a later frame
depends on them (H.264); across a long gap that holds a keyframe the PyAV backend seeks
instead, and otherwise it asks FFmpeg to drop the unsampled frames nothing depends on (most
B-frames of H.264 and HEVC). Both take true indices from the container's packet timestamps
(read without decoding), and decode through whenever that index cannot be trusted.

Backends. `pyav` (required) and `decord` (optional extra) both wrap FFmpeg and give the
same pixels. `auto` means PyAV, by benchmark (bench/decode.py, docs/benchmarks.md): decord
ran at 0.77x PyAV's speed on the 720p FF++ clip and 0.35x on a 1080p clip decoding every
frame, and 0.93-0.97x with every 10th frame; PyAV also kept RSS growth to a few MiB where
decord's frame pool took 50-110 MiB, is always installed, and reads files decord refuses
(a half-copied MP4). `backend="decord"` falls back to PyAV, with a warning, for a file
decord cannot open, so both backends report the same error codes.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from dfpipe.manifests.schema import ERROR_CODES

_log = logging.getLogger(__name__)

Backend = Literal["pyav", "decord", "auto"]
BACKENDS = ("pyav", "decord", "auto")

# Image formats FFmpeg opens as a one-frame "video": a still photo is not a video here.
_STILL_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe"}
# A shortfall of more than this many frames (or this fraction) against an exact container
# frame count means the file stopped early; smaller gaps are normal encoder slack.
_TRUNCATION_SLACK_FRAMES = 2
_TRUNCATION_SLACK_FRACTION = 0.02


class DecodeError(Exception):
    """A video could not be decoded; `code` is a stable key of `ERROR_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown decode error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class VideoInfo:
    """What a videos/ row needs to know about a file, read without decoding it all.

    `width`/`height` are of the upright picture (after rotation metadata). `rotation` is
    the clockwise turn, in degrees (0, 90, 180, 270), that makes the stored picture
    upright (the convention of the legacy `rotate` tag; a portrait phone clip is usually
    90). `n_frames` is the container's count when it has one (`n_frames_exact`), else an
    estimate from duration x fps.
    """

    width: int
    height: int
    rotation: int
    fps: float
    n_frames: int
    duration: float
    codec: str
    has_audio: bool
    n_frames_exact: bool = True


@dataclass(frozen=True)
class Frame:
    """One decoded frame: true stream index, presentation time (s), upright RGB pixels."""

    index: int
    timestamp: float
    image: np.ndarray


@dataclass(frozen=True)
class Sampling:
    """Which frames to keep: at most one of `every`, `count`, `fps`; none = every frame.

    - `every=N`: frames 0, N, 2N, ...
    - `count=N`: N frames spread evenly from the first to the last frame (fewer when
      the video is shorter).
    - `fps=R`: about R frames per second of video, by timestamp: for each multiple of
      1/R s, the first frame no more than half a frame before it (so 25 fps at R=5 keeps
      0, 5, 10, ...); a rate at or above the video's keeps every frame.
    """

    every: int | None = None
    count: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("every", "count", "fps") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"choose one frame sampling, not {' and '.join(given)}")
        for name in ("every", "count"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"sampling {name} must be a whole number >= 1, got {value!r}")
        if self.fps is not None:
            number = isinstance(self.fps, (int, float)) and not isinstance(self.fps, bool)
            if not number or not math.isfinite(self.fps) or self.fps <= 0:
                raise ValueError(f"sampling fps must be a positive number, got {self.fps!r}")

    def describe(self) -> str:
        if self.every is not None:
            return f"every {self.every}th frame" if self.every > 1 else "every frame"
        if self.count is not None:
            return f"{self.count} frames spread over the video"
        if self.fps is not None:
            return f"{self.fps:g} frames per second"
        return "every frame"


class _Selector:
    """Decides frame by frame whether `Sampling` keeps it, and when nothing is left."""

    def __init__(self, sampling: Sampling, n_frames: int, fps: float) -> None:
        self.sampling = sampling
        self.wanted: list[int] | None = None
        if sampling.count is not None:
            n = max(int(n_frames), 0)
            k = min(sampling.count, n)
            self.wanted = sorted({int(round(x)) for x in np.linspace(0, n - 1, k)}) if k else []
            self._pos = 0
        # Half a source frame of tolerance so 25 fps -> 5 fps keeps 0, 5, 10, ... despite
        # timestamps being rounded to the stream's time base.
        self._eps = 0.5 / fps if fps > 0 else 1e-3
        self._k = 0  # the next multiple of 1/fps still waiting for a frame

    def take(self, index: int, timestamp: float) -> bool:
        s = self.sampling
        if self.wanted is not None:
            if self._pos < len(self.wanted) and index == self.wanted[self._pos]:
                self._pos += 1
                return True
            return False
        if s.every is not None:
            return index % s.every == 0
        if s.fps is not None:
            # k / fps, not a running sum: summed steps drift and flip ties at half a frame
            if timestamp + self._eps >= self._k / s.fps - 1e-9:
                while self._k / s.fps - 1e-9 <= timestamp + self._eps:
                    self._k += 1
                return True
            return False
        return True

    def done(self) -> bool:
        """True once every wanted frame was taken (only `count` knows its end)."""
        return self.wanted is not None and self._pos >= len(self.wanted)

    def indices(self, timestamps: np.ndarray) -> list[int]:
        """All kept indices for a stream whose frame timestamps are known up front."""
        return [i for i, t in enumerate(timestamps) if self.take(i, float(t))]


# ----------------------------------------------------------------------------- opening


def _set_threads(stream) -> None:
    """FFmpeg frame threads: automatic, or `$DFPIPE_DECODE_THREADS` (Dask workers set 1:
    one process per core, one thread each)."""
    stream.thread_type = "AUTO"
    n = int(os.environ.get("DFPIPE_DECODE_THREADS", "0") or 0)
    if n > 0:
        stream.thread_count = n


def _check_path(path: Path) -> None:
    if not path.exists():
        raise DecodeError("unreadable", f"{path}: no such file")
    if path.is_dir():
        raise DecodeError("unreadable", f"{path}: is a directory, not a video file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(1)
    except OSError as exc:
        raise DecodeError("unreadable", f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise DecodeError("empty_file", f"{path}: the file is empty (0 bytes)")


def _looks_like_cut_container(path: Path) -> bool:
    """An MP4/MOV/Matroska header that FFmpeg still refuses: a file cut short.

    MP4s written without `faststart` keep their index (moov) at the end, so a partial copy
    has a valid `ftyp` box and no index at all.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
    return head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3"


def _open(path: Path):
    """Open with PyAV; return (container, video stream) or raise a classified DecodeError."""
    import av

    _check_path(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except PermissionError as exc:
        raise DecodeError("unreadable", f"{path}: permission denied") from exc
    except av.error.FFmpegError as exc:
        if isinstance(exc, av.error.InvalidDataError) and _looks_like_cut_container(path):
            raise DecodeError(
                "truncated",
                f"{path}: an MP4/MKV header without a readable index; the file was probably cut short ({exc})",
            ) from exc
        raise DecodeError("not_video", f"{path}: not a video FFmpeg can read ({exc})") from exc
    except OSError as exc:
        raise DecodeError("unreadable", f"{path}: cannot be opened ({exc})") from exc
    try:
        if container.format.name in _STILL_IMAGE_FORMATS:
            raise DecodeError("not_video", f"{path}: a still image ({container.format.name}), not a video")
        streams = [s for s in container.streams.video if not s.disposition & _attached_pic()]
        if not streams:
            kinds = sorted({"cover art" if s.disposition & _attached_pic() else s.type for s in container.streams})
            kinds = kinds or ["nothing"]
            raise DecodeError("no_video_stream", f"{path}: no video stream (holds {', '.join(kinds)})")
    except BaseException:
        container.close()
        raise
    return container, streams[0]


def _attached_pic() -> int:
    """Cover art in audio files is a 'video' stream of one still; it does not count."""
    import av

    return int(av.stream.Disposition.attached_pic)


def _rotation_clockwise(frame, stream) -> int:
    """Clockwise degrees to make the picture upright, from the display matrix or tag."""
    ccw = getattr(frame, "rotation", 0) or 0  # FFmpeg display matrix: counter-clockwise
    if not ccw:
        tag = stream.metadata.get("rotate")  # legacy tag: already clockwise
        if tag:
            try:
                return int(round(float(tag) / 90.0)) * 90 % 360
            except ValueError:
                return 0
    return int(round(-float(ccw) / 90.0)) * 90 % 360


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a stored picture `rotation` degrees clockwise (contiguous for OpenCV)."""
    if rotation == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=-(rotation // 90)))


def _timestamp(frame, stream, index: int, fps: float) -> float:
    if frame.pts is None:
        return index / fps if fps > 0 else 0.0
    start = stream.start_time or 0
    return float((frame.pts - start) * stream.time_base)


# ----------------------------------------------------------------------------- probe


def probe(path: str | Path) -> VideoInfo:
    """Read a video's geometry, rate, length and codec (decodes only its first frame).

    The first frame is decoded because rotation lives in per-frame display-matrix side
    data in FFmpeg 7+, and because a file whose first frame does not decode is
    `truncated` however good its header looks.
    """
    import av

    path = Path(path)
    container, stream = _open(path)
    try:
        _set_threads(stream)
        first = None
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise DecodeError("truncated", f"{path}: the first frame does not decode ({exc})") from exc
        if first is None:
            raise DecodeError("truncated", f"{path}: the video stream holds no decodable frame")
        rotation = _rotation_clockwise(first, stream)
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        exact = bool(stream.frames and stream.frames > 0)
        n_frames = int(stream.frames) if exact else max(1, int(round(duration * fps)))
        if duration <= 0 and fps > 0:
            duration = n_frames / fps
        return VideoInfo(
            width=int(w),
            height=int(h),
            rotation=rotation,
            fps=fps,
            n_frames=n_frames,
            duration=duration,
            codec=stream.codec_context.name,
            has_audio=len(container.streams.audio) > 0,
            n_frames_exact=exact,
        )
    finally:
        container.close()


# ----------------------------------------------------------------------------- frames


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
        _import_decord()
    path = Path(path)
    info = probe(path)
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise DecodeError(
            "too_large",
            f"{path}: frames are {info.width}x{info.height} = {info.width * info.height} pixels, "
            f"over max_pixels={max_pixels}",
        )
    if backend == "decord":
        return _iter_decord(path, info, sampling, max_pixels)
    return _iter_pyav(path, info, sampling, max_pixels)


def _iter_pyav(path: Path, info: VideoInfo, sampling: Sampling, max_pixels: int | None) -> Iterator[Frame]:
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


def _to_frame(path: Path, frame, index: int, ts: float, rotation: int, max_pixels: int | None) -> Frame:
    """A sampled PyAV frame as an upright RGB `Frame` (size checked: it may change mid-stream)."""
    if max_pixels is not None and frame.width * frame.height > max_pixels:
        raise DecodeError(
            "too_large", f"{path}: frame {index} is {frame.width}x{frame.height}, over max_pixels={max_pixels}"
        )
    return Frame(index=index, timestamp=ts, image=_upright(frame.to_ndarray(format="rgb24"), rotation))


def _iter_pyav_linear(
    path: Path, info: VideoInfo, sampling: Sampling, max_pixels: int | None, after: int = -1
) -> Iterator[Frame]:
    """Decode every frame in order and convert the sampled ones (those past `after`)."""
    import av

    selector = _Selector(sampling, info.n_frames, info.fps)
    container, stream = _open(path)
    _set_threads(stream)
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
            _raise_broken(path, index + 1, exc, cut=packet_end >= path.stat().st_size)
        _check_complete(path, info, index + 1)
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
    every second; FF++ every 250 frames). The plan trusts the container only when demuxing (cheap, no decoding) finds exactly the
    promised number of frames with distinct timestamps, so its indices are the true ones.
    """
    import av

    if sampling == Sampling() or sampling.every == 1 or not info.n_frames_exact:
        return None
    container, stream = _open(path)
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
    selector = _Selector(sampling, info.n_frames, info.fps)
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
    container, stream = _open(path)
    _set_threads(stream)
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
        raise _SeekMismatch(_first_line(exc)) from exc  # decoding through classifies it
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
    container, stream = _open(path)
    _set_threads(stream)
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
        raise _SeekMismatch(_first_line(exc)) from exc  # decoding through classifies it
    finally:
        container.close()
        _log.debug("%s: decoded %d of %d frames for %d sampled", path, decoded, len(plan.pts), len(plan.wanted))


def _cut_short(path: Path, info: VideoInfo) -> bool:
    """Whether the file holds fewer video packets than its index promises (demuxing only,
    cheap): a file cut short rather than corrupted in the middle."""
    container, stream = _open(path)
    try:
        n_packets = sum(1 for packet in container.demux(stream) if packet.size)
    except Exception:
        return True
    finally:
        container.close()
    return info.n_frames_exact and n_packets < info.n_frames - _slack(info.n_frames)


def _import_decord():
    """decord is optional: fail when the backend is chosen, with what to do about it."""
    try:
        import decord
    except ImportError as exc:
        raise ImportError(
            "backend='decord' needs the decord package: pip install 'dfpipe[decord]' (or use backend='pyav')"
        ) from exc
    decord.logging.set_level(decord.logging.QUIET)  # its errors reach us as exceptions
    return decord


def _iter_decord(path: Path, info: VideoInfo, sampling: Sampling, max_pixels: int | None) -> Iterator[Frame]:
    decord = _import_decord()
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=_DECORD_THREADS)
    except decord.DECORDError as exc:
        _log.warning("decord cannot open %s (%s); decoding it with PyAV", path, _first_line(exc))
        yield from _iter_pyav(path, info, sampling, max_pixels)
        return
    n = len(reader)
    selector = _Selector(sampling, n, info.fps)
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
        _raise_broken(path, max(decoded, 1), exc, cut=_cut_short(path, info))
    if not wanted:
        raise DecodeError("truncated", f"{path}: no frame could be decoded")
    if sampling.count is None and (sampling.every or 1) == 1 and sampling.fps is None:
        _check_complete(path, info, n)


# Codecs whose FFmpeg decoders mark the frames no other frame references, so unsampled
# ones can be dropped undecoded (skip_frame=NONREF); others are decoded through.
_NONREF_CODECS = {"h264", "hevc"}

# Seek to a keyframe only when that skips decoding at least this many frames: a seek costs
# a decoder flush and restart, about as much as decoding a couple of dozen frames.
_SEEK_MIN_SKIP = 24
# decord's automatic thread count let RSS creep up by ~200 MB over a 200-frame 1080p clip
# (its frame pool grows per thread); one thread kept it flat at no measurable speed cost.
_DECORD_THREADS = 1
# Frames per decord `get_batch` call: large enough to amortise the call, small enough to
# keep memory at a few frames (4 x 1080p RGB = 25 MB).
_DECORD_BATCH = 4


def _decord_upright(image: np.ndarray, info: VideoInfo) -> np.ndarray:
    """decord applies the display matrix itself; rotate only if this build did not."""
    h, w = image.shape[:2]
    if (w, h) == (info.width, info.height) or info.rotation == 0:
        return image
    return _upright(image, info.rotation)


def _raise_broken(path: Path, n_decoded: int, exc: Exception, cut: bool) -> None:
    """FFmpeg failed mid-stream: `truncated` if the file ends inside a packet or nothing
    decoded at all, else `decode_error` (corrupt data in the middle)."""
    detail = _first_line(exc)
    if n_decoded == 0:
        raise DecodeError("truncated", f"{path}: no frame could be decoded ({detail})") from exc
    if cut:
        raise DecodeError(
            "truncated", f"{path}: the file ends inside frame data after frame {n_decoded - 1}; it was cut short"
        ) from exc
    raise DecodeError("decode_error", f"{path}: FFmpeg failed after frame {n_decoded - 1} ({detail})") from exc


def _first_line(exc: Exception) -> str:
    """An exception's message without decord's `[hh:mm:ss] file.cc:123: ` prefixes."""
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _slack(n_frames: int) -> int:
    return max(_TRUNCATION_SLACK_FRAMES, int(_TRUNCATION_SLACK_FRACTION * n_frames))


def _check_complete(path: Path, info: VideoInfo, n_decoded: int) -> None:
    """After a full pass: nothing decoded, or well short of an exact count, is `truncated`."""
    if n_decoded == 0:
        raise DecodeError("truncated", f"{path}: no frame could be decoded")
    if info.n_frames_exact and n_decoded < info.n_frames - _slack(info.n_frames):
        raise DecodeError("truncated", f"{path}: decoding stopped at frame {n_decoded} of {info.n_frames}")


__all__ = [
    "BACKENDS",
    "DecodeError",
    "Frame",
    "Sampling",
    "VideoInfo",
    "iter_frames",
    "probe",
]
