"""Encoding of crops and masks for the Parquet `image` / `mask` columns.

In memory: RGB uint8 (H x W x 3) and masks uint8 (H x W, 255 = manipulated). OpenCV
works in BGR, so conversion happens here and nowhere else.
"""

from __future__ import annotations

import cv2
import numpy as np

IMAGE_FORMATS = ("png", "jpeg")
#: zlib's run-length strategy after PNG's row filters: on real face crops it encoded 3-50%
#: faster than the default strategy, and the files came out no larger (bench/extract.py --parts p)
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def encode_image(rgb: np.ndarray, fmt: str = "png", jpeg_quality: int = 95) -> bytes:
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {fmt!r}")
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, PNG_PARAMS)
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the image")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """Encoded crop bytes -> RGB uint8."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("bytes are not a PNG/JPEG image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_mask(mask: np.ndarray) -> bytes:
    """uint8 mask (0..255) or bool/float mask in [0, 1] -> single-channel PNG."""
    if mask.dtype == bool:
        mask = mask.astype(np.uint8) * 255
    elif mask.dtype != np.uint8:
        mask = np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", mask, PNG_PARAMS)
    if not ok:
        raise ValueError("OpenCV could not encode the mask")
    return buf.tobytes()


def decode_mask(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 mask (H x W)."""
    m = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise ValueError("bytes are not a PNG mask")
    return m


def read_image_file(path: str) -> np.ndarray:
    """Any image file (JPEG, PNG incl. RGBA / 16-bit / grey) -> RGB uint8."""
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: not an image OpenCV can read")
    if img.dtype != np.uint8:
        img = (img / np.iinfo(img.dtype).max * 255).round().astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
