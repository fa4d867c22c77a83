"""Short H.264 clips of real faces, for `make demo` and the tests.

Why: a benchmark pipeline must be shown and tested on real faces, and test data must be
made on any machine in seconds without a download. Two public-domain portraits ship
inside installed packages: NASA's astronaut Eileen Collins (`skimage.data.astronaut`) and
Grace Hopper (matplotlib's sample data). A clip is a virtual camera moving over one photo,
or over both side by side: a pan and a zoom, rendered with one `cv2.warpAffine` per frame
and piped to x264 by `write_video`. Options cover what decode and extract must handle:
portrait clips stored landscape with rotation metadata, an audio track, any CRF.

The camera never leaves the photos (no mirrored borders), so every face in a frame is a
real one and detectors see exactly one face per photo.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from dfpipe.pipeline.video.writing import add_sine_audio, set_rotation, write_video
from dfpipe.runtime.files import atomic_write

FACE_PHOTOS = ("astronaut", "grace_hopper")
# Face centre of each photo as fractions of its width and height (RetinaFace mobilenet0.25
# boxes on the photos): the camera keeps it in view whatever the clip's aspect ratio.
FACE_CENTRES = {"astronaut": (0.44, 0.23), "grace_hopper": (0.52, 0.36)}


@lru_cache(maxsize=None)
def face_photo(name: str) -> np.ndarray:
    """A public-domain portrait as RGB uint8 (read-only: shared between calls)."""
    if name == "astronaut":
        import skimage.data

        image = skimage.data.astronaut()
    elif name == "grace_hopper":
        import matplotlib.cbook
        from PIL import Image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
            image = np.asarray(Image.open(fh).convert("RGB"))
    else:
        raise ValueError(f"unknown face photo {name!r}; choose from {', '.join(FACE_PHOTOS)}")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    image.setflags(write=False)
    return image


def compose_photos(names: Sequence[str]) -> tuple[np.ndarray, tuple[float, float]]:
    """The photos side by side, scaled to the tallest one's height (one face each), and
    the mean of their face centres in canvas pixels (where the camera looks)."""
    if not names:
        raise ValueError("at least one face photo is needed")
    height = max(face_photo(n).shape[0] for n in names)
    scaled, centres, x0 = [], [], 0
    for name in names:
        photo = face_photo(name)
        if photo.shape[0] != height:
            size = (round(photo.shape[1] * height / photo.shape[0]), height)
            photo = cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC)
        fx, fy = FACE_CENTRES[name]
        centres.append((x0 + fx * photo.shape[1], fy * height))
        scaled.append(photo)
        x0 += photo.shape[1]
    centre = tuple(float(v) for v in np.mean(centres, axis=0))
    return np.ascontiguousarray(np.hstack(scaled)), centre


def camera_frames(
    canvas: np.ndarray,
    target: tuple[float, float],
    n_frames: int,
    width: int,
    height: int,
    pan: float = 0.6,
    zoom: float = 1.2,
) -> Iterator[np.ndarray]:
    """Frames of a camera sweeping over `canvas`: one at a time, `height` x `width` RGB.

    The view, centred on `target` (x, y canvas pixels) as far as the canvas allows, starts
    covering 90% of the canvas along its tighter side and magnifies by `zoom` by the last
    frame; `pan` (0-1) is how much of the room left around the view the camera sweeps
    through, left to right, with a gentle vertical bob. The view never leaves the canvas.
    """
    if n_frames < 1 or width < 2 or height < 2:
        raise ValueError(f"need n_frames >= 1 and a size of at least 2x2, got {n_frames} frames of {width}x{height}")
    if not 0 <= pan <= 1 or zoom < 1:
        raise ValueError(f"pan must be in [0, 1] and zoom >= 1, got pan={pan}, zoom={zoom}")
    ch, cw = canvas.shape[:2]
    base = max(width / cw, height / ch) / 0.9  # output pixels per canvas pixel
    for t in range(n_frames):
        u = t / (n_frames - 1) if n_frames > 1 else 0.5
        scale = base * (1 + (zoom - 1) * u)
        half_w, half_h = width / scale / 2, height / scale / 2
        cx = np.clip(target[0], half_w, cw - half_w)
        cy = np.clip(target[1], half_h, ch - half_h)
        room_x, room_y = (cw / 2 - half_w), (ch / 2 - half_h)
        cx = np.clip(cx + pan * room_x * (2 * u - 1), half_w, cw - half_w)
        cy = np.clip(cy + 0.5 * pan * room_y * np.sin(2 * np.pi * u), half_h, ch - half_h)
        matrix = np.array([[scale, 0, width / 2 - scale * cx], [0, scale, height / 2 - scale * cy]])
        yield cv2.warpAffine(canvas, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def render_clip(
    path: str | Path,
    n_frames: int = 75,
    width: int = 640,
    height: int = 480,
    fps: float = 25.0,
    faces: Sequence[str] = ("astronaut",),
    pan: float = 0.6,
    zoom: float = 1.2,
    rotation: int = 0,
    audio: bool = False,
    crf: int = 23,
    preset: str = "veryfast",
    gop: int | None = None,
) -> Path:
    """Render a clip of real faces to `path` (H.264 yuv420p); return `path`.

    `width` x `height` is the upright picture a viewer sees. With `rotation` (clockwise
    degrees, as `VideoInfo.rotation`) the file stores the picture turned the other way and
    carries display-rotation metadata, like a phone clip shot in portrait. `audio` adds a
    sine-tone AAC track; `crf` sets the compression (see `QUALITY_CRF`); `gop` the keyframe
    interval (phones use about one second).
    """
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    path = Path(path)
    quarter_turns = (rotation // 90) % 4
    canvas, target = compose_photos(tuple(faces))
    frames = camera_frames(canvas, target, n_frames, width, height, pan, zoom)
    if quarter_turns:
        frames = (np.ascontiguousarray(np.rot90(f, k=quarter_turns)) for f in frames)
    if not quarter_turns and not audio:
        return write_video(frames, path, fps=fps, crf=crf, preset=preset, gop=gop)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tmp-clip-") as tmp:
        current = write_video(frames, Path(tmp) / f"video{path.suffix}", fps=fps, crf=crf, preset=preset, gop=gop)
        if quarter_turns:
            current = set_rotation(current, Path(tmp) / f"rotated{path.suffix}", rotation % 360)
        if audio:
            current = add_sine_audio(current, Path(tmp) / f"audio{path.suffix}")
        with atomic_write(path) as out:
            current.replace(out)
    return path


#: The demo set: name -> render_clip arguments (about 3-4 s each, 480p-720p).
DEMO_CLIPS = {
    "astronaut_720p.mp4": dict(n_frames=100, width=1280, height=720, faces=("astronaut",), audio=True),
    "two_faces_720p.mp4": dict(n_frames=75, width=1280, height=720, faces=("astronaut", "grace_hopper"), pan=0.4),
    "grace_hopper_portrait.mp4": dict(n_frames=75, width=480, height=848, faces=("grace_hopper",), rotation=90),
    "astronaut_480p_c40.mp4": dict(n_frames=75, width=854, height=480, faces=("astronaut",), zoom=1.4, crf=40),
}


def make_demo_videos(out_dir: str | Path) -> list[Path]:
    """Write the `DEMO_CLIPS` into `out_dir` (kept if already there); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, options in DEMO_CLIPS.items():
        path = out_dir / name
        if not path.exists():
            render_clip(path, **options)
        paths.append(path)
    return paths


__all__ = [
    "DEMO_CLIPS",
    "FACE_PHOTOS",
    "camera_frames",
    "compose_photos",
    "face_photo",
    "make_demo_videos",
    "render_clip",
]


if __name__ == "__main__":  # python -m dfpipe.media.faceclips OUT_DIR
    import sys

    for made in make_demo_videos(sys.argv[1] if len(sys.argv) > 1 else "demo_videos"):
        print(made)
