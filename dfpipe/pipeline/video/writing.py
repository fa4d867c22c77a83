"""Write videos with the ffmpeg binary shipped by imageio-ffmpeg, and make test media.

Why the binary and not PyAV's encoder: it is the same FFmpeg users run to make FF++-style
c23/c40 copies, its x264 options are the documented ones, and a pipe keeps memory at one
frame. Outputs appear atomically (`dfpipe.runtime.files.atomic_write`), so a killed
synthesis run never leaves a half-written video that a re-run would take as done.

The helpers below the writer (rotation metadata, a sine audio track, an audio-only file)
build the odd inputs that decode and extract must handle; they stream-copy the video so
they take milliseconds.
"""

from __future__ import annotations

import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dfpipe.runtime.files import atomic_write

#: FaceForensics++ compression levels as x264 constant rate factors (c0 is lossless).
QUALITY_CRF = {"c0": 0, "c23": 23, "c40": 40}

# Pixel formats whose chroma is subsampled 2x horizontally (and maybe vertically) need even sizes.
_EVEN_WIDTH = ("yuv420p", "yuv422p", "nv12", "yuvj420p", "yuvj422p")
_EVEN_HEIGHT = ("yuv420p", "nv12", "yuvj420p")


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary (there is no system ffmpeg on most machines)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def crf_for_quality(quality: str) -> int:
    """x264 CRF of an FF++ quality name (`c0`, `c23`, `c40`)."""
    try:
        return QUALITY_CRF[quality]
    except KeyError:
        raise ValueError(f"unknown quality {quality!r}; choose one of {', '.join(QUALITY_CRF)}") from None


def run_ffmpeg(args: Sequence[str]) -> None:
    """Run ffmpeg quietly; raise RuntimeError with its own message when it fails."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' | '.join(tail)}")


def _rate(fps: float | Fraction) -> str:
    """ffmpeg rate string; 29.97 becomes 30000/1001 so timestamps stay exact."""
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


def _check_frame(image: np.ndarray, shape: tuple[int, ...] | None, n: int) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        got = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"frame {n}: expected an H x W x 3 RGB array, got {got}")
    if image.dtype != np.uint8:
        raise ValueError(f"frame {n}: expected uint8 pixels, got {image.dtype}")
    if shape is not None and image.shape != shape:
        raise ValueError(f"frame {n} is {image.shape[1]}x{image.shape[0]}, earlier frames {shape[1]}x{shape[0]}")
    return np.ascontiguousarray(image)


def write_video(
    frames: Iterable[np.ndarray],
    path: str | Path,
    fps: float | Fraction,
    crf: int = 23,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio_from: str | Path | None = None,
    preset: str = "medium",
    gop: int | None = None,
) -> Path:
    """Encode RGB uint8 frames (all the same size) to `path`; return `path`.

    Frames are piped to ffmpeg as they come, so memory holds one frame. `crf` is x264's
    constant rate factor (see `QUALITY_CRF`: 0 lossless, 23 FF++ c23, 40 FF++ c40).
    `audio_from` copies the first audio track of another file (e.g. the source video of
    a fake), re-encoded to AAC; a file without audio is fine. Every frame is kept even when
    the audio is shorter.
    `preset` trades encoding speed for size (x264/x265 only); `gop` caps the frames between
    keyframes (encoder default when None: 250 for x264, as in FF++).
    """
    path = Path(path)
    frames = iter(frames)
    try:
        first = _check_frame(next(frames), None, 0)
    except StopIteration:
        raise ValueError(f"{path}: no frames to write") from None
    height, width = first.shape[:2]
    if pix_fmt in _EVEN_WIDTH and width % 2 or pix_fmt in _EVEN_HEIGHT and height % 2:
        raise ValueError(f"{path}: {width}x{height} frames need even sides for {pix_fmt}; use pix_fmt='yuv444p'")
    if audio_from is not None and not Path(audio_from).is_file():
        raise ValueError(f"audio_from {audio_from}: no such file")

    with atomic_write(path) as tmp:
        args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", _rate(fps), "-i", "pipe:0"]
        if audio_from is not None:
            # no -shortest: with buffered audio it drops the last video frames, and a fake
            # must keep its source's frame count
            args += ["-i", str(audio_from), "-map", "0:v:0", "-map", "1:a:0?", "-c:a", "aac"]
        args += ["-c:v", codec, "-pix_fmt", pix_fmt]
        if codec in ("libx264", "libx265"):
            args += ["-crf", str(int(crf)), "-preset", preset]
        if gop is not None:
            args += ["-g", str(int(gop))]
        if path.suffix.lower() in (".mp4", ".mov", ".m4v"):
            args += ["-movflags", "+faststart"]
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, str(tmp)]
        # stderr goes to a file: an unread pipe could fill and stall ffmpeg mid-video.
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err)
            try:
                proc.stdin.write(first.tobytes())
                for n, image in enumerate(frames, start=1):
                    proc.stdin.write(_check_frame(image, first.shape, n).tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg exited early; its message is reported below
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            code = proc.wait()
            if code != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"ffmpeg could not write {path} ({code}): {' | '.join(tail)}")
    return path


# ----------------------------------------------------------------------------- test media


def set_rotation(src: str | Path, dst: str | Path, rotation: int) -> Path:
    """Copy `src` to `dst` with display-rotation metadata, without re-encoding.

    `rotation` uses `VideoInfo.rotation`'s convention: the clockwise turn that makes the
    stored picture upright (a portrait phone clip stored landscape is 90). Verified on
    FFmpeg 9: the `-display_rotation` input option (counter-clockwise degrees) with `-c copy`
    writes the display matrix; the old `-metadata:s:v rotate=` is ignored by new muxers.
    """
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    with atomic_write(dst) as tmp:
        run_ffmpeg(["-display_rotation", str((-rotation) % 360), "-i", str(src), "-map", "0", "-c", "copy", str(tmp)])
    return Path(dst)


def add_sine_audio(src: str | Path, dst: str | Path, frequency: float = 440.0, seconds: float | None = None) -> Path:
    """Copy `src`'s video to `dst` with a sine-tone AAC track (`seconds` long, default
    the video's duration; not `-shortest`, which can drop the last video frames)."""
    if seconds is None:
        from dfpipe.pipeline.video.decode import probe

        seconds = probe(src).duration
    with atomic_write(dst) as tmp:
        run_ffmpeg(
            [
                "-i", str(src),
                "-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate=44100:duration={seconds:.3f}",
                "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", str(tmp),
            ]
        )  # fmt: skip
    return Path(dst)


def make_audio_only(
    dst: str | Path, seconds: float = 1.0, frequency: float = 440.0, cover: str | Path | None = None
) -> Path:
    """An audio-only file (the extension picks the container: .m4a, .mp3, .wav), with an
    optional `cover` image as album art: a 'video' stream that is not a video."""
    args = ["-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}"]
    if cover is not None:
        args += ["-i", str(cover), "-map", "0:a", "-map", "1:v", "-c:v", "mjpeg", "-disposition:v:0", "attached_pic"]
    with atomic_write(dst) as tmp:
        run_ffmpeg([*args, str(tmp)])
    return Path(dst)


__all__ = [
    "QUALITY_CRF",
    "add_sine_audio",
    "crf_for_quality",
    "ffmpeg_exe",
    "make_audio_only",
    "run_ffmpeg",
    "set_rotation",
    "write_video",
]
