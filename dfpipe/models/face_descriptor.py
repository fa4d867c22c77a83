"""dlib's ResNet face descriptor: 128 numbers per face, Euclidean distance < 0.6 = same person.

The identity metrics of face-swap papers (FaceShifter, SimSwap on FF++) need a face-recognition
embedding. dlib's model is CC0 and runs on the CPU without torch: the 5-point shape predictor
places eye corners and the point under the nose inside a face box, dlib aligns a 150x150 chip
from them, and the ResNet maps the chip to a 128-d descriptor. Both files come through the
weights cache (`dlib_face_recognition`, `dlib_shape_predictor_5`); dlib itself from PyPI
`dlib-bin` (`pip install dfpipe[identity]`), imported only when a descriptor is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.runtime.weights import resolve_weights

#: dlib's convention: two descriptors closer than this are the same person (99.38% on LFW).
SAME_PERSON = 0.6
DESCRIPTOR_SIZE = 128
RECOGNITION_KEY = "dlib_face_recognition"
PREDICTOR_KEY = "dlib_shape_predictor_5"

INSTALL_HINT = "pip install dlib-bin (or pip install dfpipe[identity])"


class DlibMissingError(ImportError):
    """dlib is not installed: the identity metrics and the face descriptor need it."""


def import_dlib() -> Any:
    """The `dlib` module, or an error that says which package to install."""
    try:
        import dlib
    except ImportError as exc:
        raise DlibMissingError(f"the face descriptor needs dlib, which is not installed: {INSTALL_HINT}") from exc
    return dlib


def dlib_available() -> bool:
    """Whether `import dlib` works, without raising."""
    try:
        import_dlib()
    except DlibMissingError:
        return False
    return True


def _rectangle(dlib: Any, box: np.ndarray) -> Any:
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))


class FaceDescriptor:
    """dlib's 5-point shape predictor + ResNet face recognition, loaded once per instance."""

    def __init__(
        self,
        recognition_weights: str | Path | None = None,
        predictor_weights: str | Path | None = None,
        num_jitters: int = 0,
        padding: float = 0.25,
    ) -> None:
        dlib = import_dlib()
        self._dlib = dlib
        self.predictor = dlib.shape_predictor(str(resolve_weights(PREDICTOR_KEY, predictor_weights)))
        self.recognizer = dlib.face_recognition_model_v1(str(resolve_weights(RECOGNITION_KEY, recognition_weights)))
        self.num_jitters = num_jitters
        self.padding = padding

    def shapes(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, 5, 2) float32: the predictor's 5 points in each box (image pixels); for drawing
        and checks of what the descriptor saw."""
        image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        out = np.zeros((len(boxes), 5, 2), np.float32)
        for i, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
            shape = self.predictor(image, _rectangle(self._dlib, box))
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return out

    def describe(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, 128) float32 descriptors of the faces in `boxes` ((N, 4) x1 y1 x2 y2, image pixels)
        of an RGB uint8 image."""
        image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"describe wants an (H, W, 3) RGB image, got shape {image.shape}")
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        shapes = self._dlib.full_object_detections()
        for box in boxes:
            shapes.append(self.predictor(image, _rectangle(self._dlib, box)))
        vectors = self.recognizer.compute_face_descriptor(image, shapes, self.num_jitters, self.padding)
        return np.asarray([np.asarray(v) for v in vectors], np.float32).reshape(len(boxes), DESCRIPTOR_SIZE)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    """Euclidean distance between descriptors (broadcast over leading axes): a float for two
    single descriptors, else an array. Under `SAME_PERSON` (0.6) = the same person."""
    d = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)
    return float(d) if np.ndim(d) == 0 else d
