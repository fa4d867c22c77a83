"""The weights cache: every model file is named, pinned by sha256 and found offline.

Lookup order for a file: an explicit path (`--weights PATH`), `$DFPIPE_WEIGHTS_DIR`
(one or more folders joined by `os.pathsep`, each searched recursively by file name), `$DFPIPE_HOME/weights` (default
`~/.cache/dfpipe/weights`), then a download from the public URL into the cache unless
`$DFPIPE_OFFLINE=1`. A file whose sha256 differs from the pinned one is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dfpipe.runtime.files import atomic_write


class WeightsError(RuntimeError):
    """A weights file is missing or does not match its pinned hash."""


@dataclass(frozen=True)
class WeightsFile:
    name: str  # file name, also what is searched for in DFPIPE_WEIGHTS_DIR
    sha256: str | None  # None = not pinned (user-supplied files only)
    urls: tuple[str, ...] = ()
    note: str = ""


#: Known files. Add an entry per new model family.
REGISTRY: dict[str, WeightsFile] = {
    "retinaface_mobilenet0.25": WeightsFile(
        name="mobilenet0.25_Final.pth",
        sha256="2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220",
        urls=(
            "https://github.com/elliottzheng/face-detection/releases/download/0.0.1/mobilenet0.25_Final.pth",
            "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",
        ),
        note="RetinaFace mobilenet0.25 (Pytorch_Retinaface)",
    ),
    "retinaface_resnet50": WeightsFile(
        name="Resnet50_Final.pth",
        sha256=None,
        urls=(),
        note="RetinaFace ResNet-50 (Pytorch_Retinaface); hash not pinned, pass --weights PATH",
    ),
    "facemesh": WeightsFile(
        name="face_landmark.tflite",
        sha256="1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        urls=("https://storage.googleapis.com/mediapipe-assets/face_landmark.tflite",),
        note="MediaPipe Face Mesh, Apache-2.0; inside the PyPI wheel mediapipe==0.10.21 at "
        "mediapipe/modules/face_landmark/face_landmark.tflite",
    ),
    "facemesh_canonical": WeightsFile(
        name="canonical_face_model.obj",
        sha256="8bac80443397e113f41a8b565ea72c59390bc031d9defab289dba7bc0c54e618",
        urls=(
            "https://raw.githubusercontent.com/google-ai-edge/mediapipe/85c0cdc7d70653888903c88df45962b764296342/"
            "mediapipe/modules/face_geometry/data/canonical_face_model.obj",
        ),
        note="MediaPipe's canonical 3D face (468 vertices, triangles), Apache-2.0: head pose and mesh topology",
    ),
    "dlib_face_recognition": WeightsFile(
        name="dlib_face_recognition_resnet_model_v1.dat",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        urls=(),
        note="dlib ResNet face descriptor (128-d), CC0; in the PyPI package face-recognition-models==0.3.0 "
        "(face_recognition_models/models/), and bz2-compressed on dlib.net / davisking/dlib-models",
    ),
    "dlib_shape_predictor_5": WeightsFile(
        name="shape_predictor_5_face_landmarks.dat",
        sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        urls=(),
        note="dlib 5-point shape predictor, CC0; in the PyPI package face-recognition-models==0.3.0 "
        "(face_recognition_models/models/), and bz2-compressed on dlib.net / davisking/dlib-models",
    ),
}


def cache_dir() -> Path:
    home = os.environ.get("DFPIPE_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "dfpipe"
    return base / "weights"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path, spec: WeightsFile) -> Path:
    if spec.sha256 is not None:
        got = sha256_of(path)
        if got != spec.sha256:
            raise WeightsError(
                f"{path} has sha256 {got}, expected {spec.sha256} for {spec.note or spec.name}. "
                "Remove or replace the file."
            )
    return path


def _search_weights_dir(name: str) -> Path | None:
    """The first file called `name` in the folders of $DFPIPE_WEIGHTS_DIR, in their order."""
    for root in (os.environ.get("DFPIPE_WEIGHTS_DIR") or "").split(os.pathsep):
        if not root:
            continue
        root_path = Path(root)
        direct = root_path / name
        if direct.is_file():
            return direct
        for candidate in sorted(root_path.rglob(name)):
            if candidate.is_file():
                return candidate
    return None


def _download(spec: WeightsFile, dest: Path) -> Path:
    """`dest` from the first mirror whose file matches the pin; a failed or mismatched
    download leaves no file behind."""
    errors = []
    for url in spec.urls:
        try:
            with atomic_write(dest) as tmp:
                with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                    shutil.copyfileobj(resp, out)
                _verified(tmp, spec)
            return dest
        except Exception as exc:  # try the next mirror
            errors.append(f"{url}: {exc}")
    raise WeightsError(_missing_message(spec, "download failed:\n  " + "\n  ".join(errors)))


def _missing_message(spec: WeightsFile, why: str) -> str:
    where = f"$DFPIPE_WEIGHTS_DIR, or {cache_dir() / spec.name}"
    pinned = f"sha256 {spec.sha256}" if spec.sha256 else "no published hash: its sha256 is recorded in run.json when used"
    urls = "\n  ".join(spec.urls) or "(no public URL known)"
    return (
        f"weights file {spec.name!r} ({spec.note}; {pinned}) not found: {why}.\n"
        f"Put the file in {where}, or pass --weights PATH. Public copies:\n  {urls}"
    )


def resolve_weights(key: str, explicit: str | Path | None = None) -> Path:
    """Path of a verified weights file for registry entry `key` (see module docstring)."""
    if key not in REGISTRY:
        raise WeightsError(f"unknown weights {key!r}; known: {', '.join(sorted(REGISTRY))}")
    spec = REGISTRY[key]
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise WeightsError(f"--weights {path}: no such file")
        return _verified(path, spec)
    found = _search_weights_dir(spec.name)
    if found is not None:
        return _verified(found, spec)
    cached = cache_dir() / spec.name
    if cached.is_file():
        return _verified(cached, spec)
    if os.environ.get("DFPIPE_OFFLINE") == "1" or not spec.urls:
        raise WeightsError(_missing_message(spec, "offline and not in the cache"))
    return _download(spec, cached)


def weights_record(key: str, explicit: str | Path | None = None) -> dict[str, str]:
    """`{file name: sha256}` of the file `resolve_weights` finds, for a stage's run.json.
    A pinned file was just verified against its hash, so it is not read a second time."""
    path = resolve_weights(key, explicit)
    return {path.name: REGISTRY[key].sha256 or sha256_of(path)}


def register_weights(key: str, spec: WeightsFile) -> None:
    """Let a model module declare the files it needs (VGG for LPIPS, ...)."""
    REGISTRY[key] = spec
