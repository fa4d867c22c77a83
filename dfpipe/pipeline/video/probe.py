"""Open and probe a video file, and name what went wrong with it.

Everything here is shared by the backends: opening a file with PyAV (or a classified
`DecodeError`), probing it, turning its pictures upright, and the rules that tell a file cut
short (`truncated`) from corrupt data in the middle (`decode_error`). Every failure is a
`DecodeError` whose `code` is one of `dfpipe.manifests.schema.ERROR_CODES`, so a stage can
write an error row instead of a traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfpipe.manifests.schema import ERROR_CODES
from dfpipe.pipeline.video.still import is_image, probe_image
from dfpipe.runtime.stage import ItemError

# Image formats FFmpeg opens as a one-frame "video": a still photo is not a video here.
_STILL_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe"}
# A shortfall of more than this many frames (or this fraction) against an exact container
# frame count means the file stopped early; smaller gaps are normal encoder slack.
_TRUNCATION_SLACK_FRAMES = 2
_TRUNCATION_SLACK_FRACTION = 0.02


class DecodeError(ItemError):
    """A video could not be decoded; `code` is a stable key of `ERROR_CODES`, which the
    stage runner keeps in the video's error row."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown decode error code {code!r}")
        super().__init__(code, message)

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
    kind: str = "video"  # or "image": a still read as one frame (video/still.py)


@dataclass(frozen=True)
class Frame:
    """One decoded frame: true stream index, presentation time (s), upright RGB pixels."""

    index: int
    timestamp: float
    image: np.ndarray


# ----------------------------------------------------------------------------- opening


def set_threads(stream) -> None:
    """FFmpeg frame threads: automatic, or `$DFPIPE_DECODE_THREADS` (Dask workers set 1:
    one process per core, one thread each)."""
    stream.thread_type = "AUTO"
    n = int(os.environ.get("DFPIPE_DECODE_THREADS", "0") or 0)
    if n > 0:
        stream.thread_count = n


def check_path(path: Path) -> None:
    """A missing path, a directory or an empty file, as a classified DecodeError."""
    if not path.exists():
        raise DecodeError("unreadable", f"{path}: no such file")
    if path.is_dir():
        raise DecodeError("unreadable", f"{path}: is a directory, not a video or image file")
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


def _plain(exc: BaseException) -> str:
    """What went wrong in words: FFmpeg's or the OS's message without its errno and the
    path (the message names the path already)."""
    return getattr(exc, "strerror", None) or str(exc)


def open_video(path: Path):
    """Open with PyAV; return (container, video stream) or raise a classified DecodeError."""
    import av

    check_path(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except PermissionError as exc:
        raise DecodeError("unreadable", f"{path}: permission denied") from exc
    except av.error.FFmpegError as exc:
        if isinstance(exc, av.error.InvalidDataError) and _looks_like_cut_container(path):
            raise DecodeError(
                "truncated",
                f"{path}: an MP4/MKV header without a readable index; the file was probably cut short ({_plain(exc)})",
            ) from exc
        raise DecodeError("not_video", f"{path}: not a video FFmpeg can read ({_plain(exc)})") from exc
    except OSError as exc:
        raise DecodeError("unreadable", f"{path}: cannot be opened ({_plain(exc)})") from exc
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


# ----------------------------------------------------------------------------- rotation


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


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a stored picture `rotation` degrees clockwise (contiguous for OpenCV)."""
    if rotation == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=-(rotation // 90)))


# ----------------------------------------------------------------------------- probe


def probe(path: str | Path) -> VideoInfo:
    """Read a video's geometry, rate, length and codec (decodes only its first frame).

    The first frame is decoded because rotation lives in per-frame display-matrix side
    data in FFmpeg 7+, and because a file whose first frame does not decode is
    `truncated` however good its header looks.
    """
    import av

    path = Path(path)
    if is_image(path):
        return probe_image(path)
    container, stream = open_video(path)
    try:
        set_threads(stream)
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


# ----------------------------------------------------------------------------- errors


def raise_broken(path: Path, n_decoded: int, exc: Exception, cut: bool) -> None:
    """FFmpeg failed mid-stream: `truncated` if the file ends inside a packet or nothing
    decoded at all, else `decode_error` (corrupt data in the middle)."""
    detail = first_line(exc)
    if n_decoded == 0:
        raise DecodeError("truncated", f"{path}: no frame could be decoded ({detail})") from exc
    if cut:
        raise DecodeError(
            "truncated", f"{path}: the file ends inside frame data after frame {n_decoded - 1}; it was cut short"
        ) from exc
    raise DecodeError("decode_error", f"{path}: FFmpeg failed after frame {n_decoded - 1} ({detail})") from exc


def first_line(exc: Exception) -> str:
    """An exception's message without decord's `[hh:mm:ss] file.cc:123: ` prefixes."""
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _slack(n_frames: int) -> int:
    return max(_TRUNCATION_SLACK_FRAMES, int(_TRUNCATION_SLACK_FRACTION * n_frames))


def check_complete(path: Path, info: VideoInfo, n_decoded: int) -> None:
    """After a full pass: nothing decoded, or well short of an exact count, is `truncated`."""
    if n_decoded == 0:
        raise DecodeError("truncated", f"{path}: no frame could be decoded")
    if info.n_frames_exact and n_decoded < info.n_frames - _slack(info.n_frames):
        raise DecodeError("truncated", f"{path}: decoding stopped at frame {n_decoded} of {info.n_frames}")


def cut_short(path: Path, info: VideoInfo) -> bool:
    """Whether the file holds fewer video packets than its index promises (demuxing only,
    cheap): a file cut short rather than corrupted in the middle."""
    container, stream = open_video(path)
    try:
        n_packets = sum(1 for packet in container.demux(stream) if packet.size)
    except Exception:
        return True
    finally:
        container.close()
    return info.n_frames_exact and n_packets < info.n_frames - _slack(info.n_frames)
