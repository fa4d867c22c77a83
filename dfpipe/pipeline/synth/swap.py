"""Swap: a source identity's aligned face warped onto each target frame.

The transform is fitted per frame from the source crop's 5 landmarks to the target's, so
position, size and head roll follow the target (and, with `affine`, some of its shape);
the source face itself is one still crop, so the identity does not flicker.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.transform import AffineTransform, SimilarityTransform

_TRANSFORMS = {"similarity": SimilarityTransform, "affine": AffineTransform}
_VALID_ERODE = 5  # px: keep the mask off the black border of the warped crop (Poisson reads it)


def landmark_transform(src: np.ndarray, dst: np.ndarray, kind: str = "similarity") -> np.ndarray:
    """2x3 least-squares `kind` transform taking 5 src points onto 5 dst points."""
    tform = _TRANSFORMS[kind].from_estimate(np.asarray(src, np.float64).reshape(5, 2), np.asarray(dst, np.float64).reshape(5, 2))
    if not tform:
        raise ValueError("degenerate landmarks: no transform between source and target")
    return np.asarray(tform.params[:2], dtype=np.float64)


def warp_face(
    face: np.ndarray, face_landmarks: np.ndarray, target_landmarks: np.ndarray, shape: tuple[int, ...], kind: str = "similarity"
) -> tuple[np.ndarray, np.ndarray]:
    """(the face warped into a frame of `shape`, uint8 mask of where it has pixels)."""
    m = landmark_transform(face_landmarks, target_landmarks, kind)
    h, w = shape[:2]
    fg = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = cv2.warpAffine(np.full(face.shape[:2], 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    valid = cv2.erode(valid, np.ones((2 * _VALID_ERODE + 1,) * 2, np.uint8))
    return fg, valid


class SwapGenerator:
    """Pastes one source face (an aligned crop and its landmarks in crop pixels)."""

    name = "swap"

    def __init__(self, face: np.ndarray, face_landmarks: np.ndarray, transform: str = "similarity") -> None:
        self.face = face
        self.face_landmarks = np.asarray(face_landmarks, dtype=np.float64).reshape(5, 2)
        self.transform = transform

    def __call__(self, frame: np.ndarray, frame_index: int, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return warp_face(self.face, self.face_landmarks, landmarks, frame.shape, self.transform)
