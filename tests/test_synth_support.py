"""Real faces with detected landmarks for the synthesis tests (facemask, colour, blend, synth).

Public-domain faces (skimage's astronaut, matplotlib's Grace Hopper) plus the shared photos;
landmarks come from the real RetinaFace detector, once per session.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from conftest import need_weights, read_face

from dfpipe.pipeline.faces.align import align_matrix, transform_points, warp_crop


@lru_cache(maxsize=None)
def _detector():
    from dfpipe.pipeline.faces.detect import FaceDetector

    # skips where the weights are absent, fails in CI (conftest's rule)
    return FaceDetector(weights=need_weights("retinaface_mobilenet0.25"))


@lru_cache(maxsize=None)
def face(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, 5 x 2 landmarks of its largest face)."""
    image = read_face(name)
    det = _detector().detect([image])[0]
    assert len(det) > 0, f"no face found in {name}"
    areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
    return image, det.landmarks[int(np.argmax(areas))].astype(np.float64)


def aligned_face(name: str, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(aligned RGB crop, its 5 landmarks in crop pixels)."""
    image, lm = face(name)
    m = align_matrix(lm, size)
    return warp_crop(image, m, size), transform_points(lm, m)


def test_public_domain_faces_have_plausible_landmarks():
    for name in ("astronaut", "grace_hopper"):
        image, lm = face(name)
        assert lm.shape == (5, 2)
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left eye / mouth corner first
        assert lm[0, 1] < lm[2, 1] < lm[3, 1]  # eyes above nose above mouth
        assert (lm >= 0).all() and (lm[:, 0] < image.shape[1]).all() and (lm[:, 1] < image.shape[0]).all()
