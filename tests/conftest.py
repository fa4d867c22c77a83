"""Shared test fixtures: where ../shared is, and real-face test videos made with ffmpeg.

Tests that need ../shared skip with a reason on a user's clone, and fail in CI
(`DFPIPE_REQUIRE_SHARED=1`, set by .ci/run), so CI never skips them.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DFPIPE_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFPIPE_SHARED", REPO.parent / "shared"))


def _absent(msg: str):
    if os.environ.get("DFPIPE_REQUIRE_SHARED") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def _need(path: Path) -> Path:
    if path.exists():
        return path
    _absent(f"{path} is absent (../shared beside the clone holds the real test data)")


def need_weights(key: str) -> Path:
    """A weights file found the way dfpipe finds it ($DFPIPE_WEIGHTS_DIR, then the cache),
    never downloaded: tests that need only weights run wherever the weights are, with or
    without ../shared."""
    from dfpipe.runtime.weights import WeightsError, resolve_weights

    offline = os.environ.get("DFPIPE_OFFLINE")
    os.environ["DFPIPE_OFFLINE"] = "1"
    try:
        return resolve_weights(key)
    except WeightsError as exc:
        _absent(f"weights {key!r} not found offline: {str(exc).splitlines()[0]}")
    finally:
        if offline is None:
            del os.environ["DFPIPE_OFFLINE"]
        else:
            os.environ["DFPIPE_OFFLINE"] = offline


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return _need(SHARED / "data" / "faces")


@pytest.fixture(scope="session")
def videos_dir() -> Path:
    return _need(SHARED / "data" / "videos")


@pytest.fixture(scope="session")
def real_video(videos_dir) -> Path:
    return videos_dir / "ffpp_real_004.mp4"


@pytest.fixture(scope="session")
def fake_video(videos_dir) -> Path:
    return videos_dir / "ffpp_fake_NeuralTextures_004_982.mp4"


def cut_faststart(video: Path, out: Path, keep: Fraction) -> Path:
    """`video` remuxed with its index first (faststart, as phones and web encoders write it)
    and cut after `keep` of its bytes: a file cut short that still opens, at `out`."""
    from dfpipe.pipeline.video.writing import run_ffmpeg

    whole = out.with_name(f"{out.stem}.whole{out.suffix}")
    run_ffmpeg(["-i", video, "-c", "copy", "-movflags", "+faststart", whole])
    data = whole.read_bytes()
    whole.unlink()
    out.write_bytes(data[: len(data) * keep.numerator // keep.denominator])
    return out


@pytest.fixture(scope="session")
def public_video(tmp_path_factory) -> Path:
    """A real-face clip made here from public-domain photos (scikit-image's astronaut and
    matplotlib's Grace Hopper, the camera panning and zooming): 100 frames, 640 x 360, 25 fps,
    H.264 with B-frames. Decoding tests run on it everywhere, and on the shared FF++ clip too
    where ../shared is present."""
    from dfpipe.media.faceclips import render_clip

    return render_clip(tmp_path_factory.mktemp("public") / "public.mp4", n_frames=100, width=640, height=360,
                       faces=("astronaut", "grace_hopper"), pan=0.4)


@pytest.fixture(scope="session", params=["ffpp", "public"])
def any_video(request) -> Path:
    """Each real-face test video in turn: the shared FF++ c23 clip (skips without ../shared)
    and `public_video`. Tests on it must hold for any well-formed video."""
    return request.getfixturevalue("real_video" if request.param == "ffpp" else "public_video")


@pytest.fixture(scope="session", autouse=True)
def _weights_dir():
    """Point the weights cache at ../shared/weights and the canonical face model beside it
    (never the network)."""
    if "DFPIPE_WEIGHTS_DIR" not in os.environ and (SHARED / "weights").is_dir():
        os.environ["DFPIPE_WEIGHTS_DIR"] = os.pathsep.join([str(SHARED / "weights"), str(SHARED / "data" / "facemesh")])
    yield


@pytest.fixture(scope="session")
def retinaface_weights() -> Path:
    return need_weights("retinaface_mobilenet0.25")


@pytest.fixture(scope="session")
def facemesh_weights() -> Path:
    return need_weights("facemesh")


@pytest.fixture(scope="session")
def detector(retinaface_weights):
    """RetinaFace mobilenet0.25 with its default settings, built once."""
    from dfpipe.pipeline.faces.detect import load_detector

    return load_detector()


def read_face(name: str):
    """A face photo as RGB uint8: `"astronaut"` (scikit-image) and `"grace_hopper"`
    (matplotlib) are public domain and ship in packages; any other name is a shared photo
    (skips on a clone without ../shared)."""
    if name == "astronaut":
        import skimage.data

        return skimage.data.astronaut()
    if name == "grace_hopper":
        import matplotlib.cbook
        import numpy as np
        from PIL import Image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
            return np.asarray(Image.open(fh).convert("RGB"))
    from dfpipe.manifests.codec import read_image_file

    return read_image_file(str(_need(SHARED / "data" / "faces" / name)))


@pytest.fixture(scope="session")
def photo():
    """`photo(name)`: `read_face(name)`, read once."""
    cache: dict = {}

    def load(name: str):
        if name not in cache:
            cache[name] = read_face(name)
        return cache[name]

    return load


def make_pair_dataset(root: Path, real_video: Path, fake_video: Path) -> Path:
    """The shared FF++ pair ingested as real + fake under `root` and extracted (3 frames
    each, 128-pixel crops, with the mesh): a small dataset for the masks stage."""
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest

    listing = root / "listing.csv"
    listing.write_text(f"path,label,source\n{real_video},real,\n{fake_video},fake,{real_video}\n")
    ds = root / "ds"
    ingest("list", listing, ds)
    summary = extract([ds], None, ExtractConfig(count=3, size=128), workers=0, progress=False)
    assert summary.n_ok == 2
    return ds


def make_donor_dataset(root: Path, target: Path) -> Path:
    """`target` (a video of real faces) and a public-domain donor (a 25-frame ffmpeg zoom over
    skimage's astronaut, `astro.mp4`) ingested as real under `root` and extracted every 5th
    frame with the mesh, 256-pixel crops: the small dataset of the mesh-swap tests."""
    import subprocess

    import cv2
    import skimage.data

    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest
    from dfpipe.pipeline.video.writing import ffmpeg_exe

    still = root / "astronaut.png"
    cv2.imwrite(str(still), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    zoom = "zoompan=z='1+0.002*on':x='iw/2-(iw/zoom/2)':y='ih/4-(ih/zoom/4)':d=25:s=512x512:fps=25"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-loop", "1", "-i", str(still), "-vf", zoom, "-frames:v", "25",
                    "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(root / "astro.mp4")], check=True)
    (root / "listing.csv").write_text(f"path,label\n{target},real\n{root / 'astro.mp4'},real\n")
    ds = root / "DS"
    ingest("list", root / "listing.csv", ds)
    assert extract([ds], None, ExtractConfig(every=5, keep="main", size=256), workers=0, progress=False).n_ok == 2
    return ds

