"""Still images as one-frame inputs: photo datasets and folders of already-extracted frames.

An image is read with OpenCV (which applies its EXIF orientation, so the picture is upright)
and becomes a `VideoInfo` with `kind="image"`, one frame, no rate and no audio; `iter_image`
yields that one frame whatever the sampling asks for. The rest of extract sees a very short
video: one sampled frame, one face row per face, one track each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

#: File name endings read as still images (lower case); everything else goes to FFmpeg.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: str | Path) -> np.ndarray:
    """The upright RGB pixels of an image file, or a classified DecodeError."""
    import cv2

    from dfpipe.pipeline.video.probe import DecodeError, check_path

    path = Path(path)
    check_path(path)
    data = np.fromfile(path, dtype=np.uint8)  # cv2.imread cannot open some non-ASCII paths
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise DecodeError("not_video", f"{path}: not an image OpenCV can read (a {path.suffix} name, other content)")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def probe_image(path: str | Path):
    """The `VideoInfo` of a still image: its size, one frame, the format as the codec."""
    from dfpipe.pipeline.video.probe import VideoInfo

    image = read_image(path)
    suffix = Path(path).suffix.lower().lstrip(".")
    return VideoInfo(
        width=int(image.shape[1]), height=int(image.shape[0]), rotation=0, fps=0.0, n_frames=1, duration=0.0,
        codec={"jpg": "jpeg", "tif": "tiff"}.get(suffix, suffix), has_audio=False, kind="image",
    )


def iter_image(path: str | Path, max_pixels: int | None = None) -> Iterator:
    """The image as frame 0 at time 0 (sampling does not apply to one frame)."""
    from dfpipe.pipeline.video.probe import DecodeError, Frame

    image = read_image(path)
    if max_pixels is not None and image.shape[0] * image.shape[1] > max_pixels:
        raise DecodeError("too_large", f"{path}: {image.shape[1]}x{image.shape[0]} pixels, over max_pixels={max_pixels}")
    yield Frame(index=0, timestamp=0.0, image=image)
