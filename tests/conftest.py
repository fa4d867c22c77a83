"""Shared test fixtures: where ../shared is, and real-face test videos made with ffmpeg.

Tests that need ../shared skip with a reason on a user's clone, and fail in CI
(`DFPIPE_REQUIRE_SHARED=1`, set by .ci/run), so CI never skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DFPIPE_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFPIPE_SHARED", REPO.parent / "shared"))


def _need(path: Path) -> Path:
    if path.exists():
        return path
    msg = f"{path} is absent (../shared beside the clone holds the real test data)"
    if os.environ.get("DFPIPE_REQUIRE_SHARED") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


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


@pytest.fixture(scope="session", autouse=True)
def _weights_dir():
    """Point the weights cache at ../shared/weights and the canonical face model beside it
    (never the network)."""
    if "DFPIPE_WEIGHTS_DIR" not in os.environ and (SHARED / "weights").is_dir():
        os.environ["DFPIPE_WEIGHTS_DIR"] = os.pathsep.join([str(SHARED / "weights"), str(SHARED / "data" / "facemesh")])
    yield


@pytest.fixture(scope="session")
def retinaface_weights(shared_dir) -> Path:
    return _need(shared_dir / "weights" / "retinaface" / "mobilenet0.25_Final.pth")


@pytest.fixture(scope="session")
def detector(retinaface_weights):
    """RetinaFace mobilenet0.25 with its default settings, built once."""
    from dfpipe.pipeline.faces.detect import load_detector

    return load_detector()


@pytest.fixture(scope="session")
def photo(faces_dir):
    """`photo(name)`: a shared photo as RGB uint8 (read once), or `"astronaut"` for
    scikit-image's public-domain portrait."""
    from dfpipe.manifests.codec import read_image_file

    cache: dict = {}

    def load(name: str):
        if name not in cache:
            if name == "astronaut":
                import skimage.data

                cache[name] = skimage.data.astronaut()
            else:
                cache[name] = read_image_file(str(faces_dir / name))
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

