"""Identity metrics: whose face a fake shows, from dlib's 128-d face descriptor.

- `id_to_source`: distance of the fake face to the identity donor (the fake's
  `target_video_id`, "source" in face-swap papers), i.e. to the donor video's identity
  (the mean descriptor of its main track). Low for a good swap.
- `id_to_target`: distance to the real face of the same frame of the changed video
  (`source_video_id`). Low for a reenactment (same person), high for a swap.
- `id_retrieval` (per video): the fraction of frames whose nearest identity among every real
  video of the dataset is the expected one: the donor for a swap, the changed video's own
  person otherwise (reenactment, self-blend). Only with two identities or more to choose from.

The gallery (one identity per real video) is built once per run, in the stage's process,
from the crops extract stored; each worker loads the descriptor once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.manifests.codec import decode_image
from dfpipe.pipeline.quality.geometry import crop_box

#: Methods that put another person's face in (FF++ names, dfpipe's own); the expected identity
#: of their frames is the donor's.
SWAP_METHODS = frozenset({"swap", "Deepfakes", "FaceSwap", "FaceShifter", "DeepFakeDetection", "faceswap", "deepfakes"})
#: Methods that keep the changed video's person and move the face (expected: that person).
REENACT_METHODS = frozenset({"reenact", "NeuralTextures", "Face2Face", "neuraltextures", "face2face"})
#: Crops of a real video's main track that make its identity (spread over the track).
GALLERY_FACES = 8

_DESCRIPTORS: dict[tuple, Any] = {}


def descriptor_model():
    """One dlib FaceDescriptor per process (the two files are ~30 MB: load them once)."""
    from dfpipe.models.face_descriptor import FaceDescriptor

    if "dlib" not in _DESCRIPTORS:
        _DESCRIPTORS["dlib"] = FaceDescriptor()
    return _DESCRIPTORS["dlib"]


def identity_weights() -> dict[str, str]:
    """{file name: sha256} of the two dlib files; raises DlibMissingError without dlib and
    WeightsError without a file, so a run finds out before any work."""
    from dfpipe.models.face_descriptor import PREDICTOR_KEY, RECOGNITION_KEY, import_dlib
    from dfpipe.runtime.weights import weights_record

    import_dlib()
    return {**weights_record(RECOGNITION_KEY), **weights_record(PREDICTOR_KEY)}


def describe_rows(rows: list[dict], images: list[np.ndarray | None] | None = None) -> list[np.ndarray | None]:
    """The descriptor of each face row's stored crop (its box moved into the crop), None for
    a row without a crop or box."""
    model = descriptor_model()
    out: list[np.ndarray | None] = []
    for i, r in enumerate(rows):
        image = images[i] if images is not None else (decode_image(r["image"]) if r.get("image") is not None else None)
        box = crop_box(r)
        out.append(None if image is None or box is None else model.describe(image, box[None])[0])
    return out


def main_track(faces: list[dict]) -> list[dict]:
    """The rows of the track with the most faces (the person a video is about)."""
    if not faces:
        return []
    track = Counter(r["track_id"] for r in faces).most_common(1)[0][0]
    return sorted((r for r in faces if r["track_id"] == track), key=lambda r: r["frame_index"])


def video_identity(faces: list[dict], n: int = GALLERY_FACES) -> np.ndarray | None:
    """Mean descriptor of up to `n` crops spread over the main track; None without faces."""
    rows = main_track(faces)
    if not rows:
        return None
    pick = np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))
    vectors = [v for v in describe_rows([rows[i] for i in pick]) if v is not None]
    return np.mean(vectors, axis=0).astype(np.float32) if vectors else None


def build_gallery(root: str | Path, videos: list[dict], read_faces) -> dict[str, np.ndarray]:
    """{video_id: identity} of every extracted real video (`read_faces(root, vid)` -> rows).

    A real that copies another (a `reencode` at some quality: it names its original as
    `source_video_id`) is left out: the gallery holds each real video once, so the copy is
    never a wrong "nearest" of the original's own person."""
    gallery = {}
    for v in videos:
        if v.get("label") == "real" and v.get("status") == "ok" and not v.get("source_video_id"):
            ident = video_identity(read_faces(Path(root), v["video_id"]))
            if ident is not None:
                gallery[v["video_id"]] = ident
    return gallery


def expected_identity(video: dict) -> str | None:
    """Whose face a fake's frames should show: the donor for a swap (or an unknown method that
    names a donor), else the changed video's own person."""
    method, donor, changed = video.get("method"), video.get("target_video_id"), video.get("source_video_id")
    if method in REENACT_METHODS:
        return changed
    if method in SWAP_METHODS or (method not in ("self-blend",) and donor):
        return donor or None
    return changed


def nearest_identity(descriptor: np.ndarray, gallery: dict[str, np.ndarray]) -> str | None:
    """The gallery video whose identity is closest to `descriptor`."""
    if not gallery:
        return None
    ids = list(gallery)
    dist = np.linalg.norm(np.stack([gallery[i] for i in ids]).astype(np.float64) - descriptor, axis=1)
    return ids[int(np.argmin(dist))]


def retrieval_rate(nearest: list[str | None], expected: str | None, gallery: dict[str, np.ndarray]) -> float | None:
    """Fraction of frames retrieved as `expected`; None when there is no choice to make (fewer
    than two identities, or the expected one not in the gallery)."""
    hits = [n for n in nearest if n is not None]
    if len(gallery) < 2 or expected not in gallery or not hits:
        return None
    return float(np.mean([n == expected for n in hits]))


__all__ = [
    "REENACT_METHODS", "SWAP_METHODS", "build_gallery", "describe_rows", "descriptor_model", "expected_identity",
    "identity_weights", "nearest_identity", "retrieval_rate", "video_identity",
]
