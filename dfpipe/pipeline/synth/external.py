"""Frames made by an external generator (FaceShifter, FSGAN, First-order-motion, ICface...).

`--from-generator DIR` holds one folder per target video, named by the real video's id or
its file name without extension, with one image per generated frame named by its frame
index (`17.png`, `000017.jpg`). An image is either a whole frame (the target's size) or a
face crop cut with the target's alignment (the dataset's `size`, or any square size: it is
scaled), which is pasted back through the inverse of the crop matrix. dfpipe then masks,
colour-corrects, blends and encodes it like its own fakes.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dfpipe.manifests.codec import read_image_file
from dfpipe.pipeline.faces.align import invert_matrix

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_VALID_ERODE = 5


def generated_frames(folder: str | Path) -> dict[int, Path]:
    """frame index -> image file, for files whose name (without extension) is an integer."""
    frames: dict[int, Path] = {}
    for p in sorted(Path(folder).iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit():
            frames[int(p.stem)] = p
    return frames


def match_folders(root: str | Path, videos: dict[str, dict]) -> tuple[dict[str, Path], list[Path]]:
    """{real video id: its generator folder}, and the folders that match no real video."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--from-generator {root} is not a folder")
    by_stem = {Path(r["path"]).stem: vid for vid, r in videos.items()}
    matched: dict[str, Path] = {}
    unmatched: list[Path] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        vid = folder.name if folder.name in videos else by_stem.get(folder.name)
        if vid is None:
            unmatched.append(folder)
        else:
            matched[vid] = folder
    return matched, unmatched


class ExternalGenerator:
    """Serves the generated image of a frame (or the frame itself where none was made)."""

    name = "external"

    def __init__(self, folder: str | Path, matrices: dict[int, np.ndarray], crop_size: int) -> None:
        self.folder = Path(folder)
        self.frames = generated_frames(folder)
        if not self.frames:
            raise ValueError(f"{folder}: no generated frames (images named by frame index, e.g. 000017.png)")
        self.matrices = matrices
        self.crop_size = crop_size

    def __call__(self, frame: np.ndarray, frame_index: int, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        path = self.frames.get(frame_index)
        if path is None:
            return frame.copy(), np.zeros((h, w), np.uint8)
        image = read_image_file(str(path))
        if image.shape[:2] == (h, w):
            return image, np.full((h, w), 255, np.uint8)
        if image.shape[0] != image.shape[1] or frame_index not in self.matrices:
            raise ValueError(
                f"{path}: {image.shape[1]}x{image.shape[0]} is neither the frame size {w}x{h} nor a square face crop"
            )
        to_frame = invert_matrix(self.matrices[frame_index])
        to_frame[:, :2] *= self.crop_size / image.shape[0]  # a crop made at another size
        fg = cv2.warpAffine(image, to_frame, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        valid = cv2.warpAffine(np.full(image.shape[:2], 255, np.uint8), to_frame, (w, h), flags=cv2.INTER_NEAREST)
        return fg, cv2.erode(valid, np.ones((2 * _VALID_ERODE + 1,) * 2, np.uint8))
