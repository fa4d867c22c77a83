"""Pictures for `dfpipe show`: a crop at thumbnail size, the same crop with its mask laid
over it (a red tint inside, a yellow outline at its edge, so the face stays visible), and
the contact sheet that stacks a row of them per video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dfpipe.manifests.codec import decode_image, decode_mask

TINT = np.array([255, 40, 40], np.float32)  # RGB, inside the mask
EDGE = (255, 230, 0)  # RGB, the mask's outline
TINT_ALPHA = 0.35
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def thumbnail(image: bytes, size: int) -> np.ndarray:
    """Encoded crop -> RGB `size` x `size` (area-averaged when shrinking)."""
    rgb = decode_image(image)
    interp = cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp)


def overlay(thumb: np.ndarray, mask: bytes) -> np.ndarray:
    """`thumb` with the mask (any size; resized to the thumbnail) tinted in and outlined.

    The region drawn is where the mask reaches half its own peak: a self-blend's mask is
    its blend weight, whose peak may be a quarter (64), and such a face is manipulated too."""
    size = thumb.shape[0]
    soft = cv2.resize(decode_mask(mask), (size, size), interpolation=cv2.INTER_LINEAR)
    m = soft >= max(int(soft.max()) // 2, 1) if soft.max() > 0 else np.zeros(soft.shape, bool)
    out = thumb.astype(np.float32)
    out[m] = (1 - TINT_ALPHA) * out[m] + TINT_ALPHA * TINT
    out = out.round().astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, EDGE, 1, cv2.LINE_AA)
    return out


def caption_bar(text: str, width: int, height: int = 22) -> np.ndarray:
    """A white strip with `text` in black, cut with '...' to fit `width`."""
    bar = np.full((height, width, 3), 255, np.uint8)
    scale = 0.45
    while text and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width - 8:
        text = text[:-4] + "..." if len(text) > 4 else ""
    cv2.putText(bar, text, (4, height - 7), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def sheet_row(thumbs: list[np.ndarray], per_video: int, size: int, title: str) -> np.ndarray:
    """A title strip over `per_video` thumbnails (grey where a video has fewer faces)."""
    cells = list(thumbs) + [np.full((size, size, 3), 200, np.uint8)] * (per_video - len(thumbs))
    strip = np.hstack(cells[:per_video])
    return np.vstack([caption_bar(title, strip.shape[1]), strip])


def write_sheet(rows: list[np.ndarray], out_png: str | Path, width: int) -> Path:
    """Stack the rows (a blank line between them) into one PNG."""
    from dfpipe.runtime.files import atomic_write

    gap = np.full((4, width, 3), 255, np.uint8)
    parts = [p for r in rows for p in (r, gap)] or [caption_bar("no videos", width)]
    sheet = np.vstack(parts)
    out_png = Path(out_png)
    with atomic_write(out_png) as tmp:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError("OpenCV could not encode the contact sheet")
        tmp.write_bytes(buf.tobytes())
    return out_png


def write_jpeg(rgb: np.ndarray, path: Path, quality: int = 90) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode a thumbnail")
    path.write_bytes(buf.tobytes())
