"""Decoding real videos: sampling, true indices, rotation, bounded memory, error codes.

References are independent of the code under test: the FF++ clip's known geometry, and
the ffmpeg binary's own decode (which applies rotation metadata itself). Tests of what any
well-formed video must do run on `any_video` (the shared FF++ clip, and a public-domain clip
made here), with expected values from its probed frame count, rate and size, so they run on
a clone without ../shared too.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from dfpipe.manifests.schema import ERROR_CODES
from dfpipe.media.faceclips import render_clip
from dfpipe.pipeline.video import pyav_backend
from dfpipe.pipeline.video.decode import DecodeError, Sampling, iter_frames, probe
from dfpipe.pipeline.video.writing import ffmpeg_exe, make_audio_only, run_ffmpeg, set_rotation
from dfpipe.runtime.stage import ItemError

BACKENDS = ["pyav", "decord"]
FFPP_FRAMES, FFPP_FPS = 309, 25.0  # the shared FF++ clip's, for test_probe_ffpp_video


def ffmpeg_frame(path, index: int) -> np.ndarray:
    """Frame `index` decoded by the ffmpeg CLI (autorotated, RGB)."""
    info = probe(path)
    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{index})", "-frames:v", "1",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]  # fmt: skip
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(info.height, info.width, 3)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    return tmp_path_factory.mktemp("decode_media")


@pytest.fixture(scope="session")
def astronaut_jpg(media):
    """scikit-image's public-domain astronaut written as a JPEG (with OpenCV)."""
    import cv2
    import skimage.data

    path = media / "astronaut.jpg"
    if not path.exists():
        assert cv2.imwrite(str(path), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def portrait_clip(media):
    """A real-face portrait clip stored landscape with rotation metadata, like a phone's."""
    return render_clip(media / "portrait.mp4", n_frames=12, width=240, height=320, faces=("grace_hopper",), rotation=90)


# ----------------------------------------------------------------------------- probe


def test_probe_ffpp_video(real_video):
    info = probe(real_video)
    assert (info.width, info.height, info.rotation) == (1280, 720, 0)
    assert info.fps == FFPP_FPS and info.n_frames == FFPP_FRAMES and info.n_frames_exact
    assert info.duration == pytest.approx(FFPP_FRAMES / FFPP_FPS, abs=0.05)
    assert info.codec == "h264" and info.has_audio is False


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    "kwargs",
    [dict(every=0), dict(every=2.5), dict(count=0), dict(count=True), dict(fps=0), dict(fps=float("nan")),
     dict(fps=-1.0), dict(every=2, count=3), dict(count=3, fps=5.0)],  # fmt: skip
)
def test_sampling_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        Sampling(**kwargs)


def _expected_indices(sampling: Sampling, n_frames: int, fps: float) -> list[int]:
    """The true indices `sampling` keeps from `n_frames` frames at a constant `fps`."""
    if sampling.every is not None:
        return list(range(0, n_frames, sampling.every))
    if sampling.count is not None:
        return sorted({round(x) for x in np.linspace(0, n_frames - 1, min(sampling.count, n_frames))})
    if sampling.fps is not None:  # 25 fps -> 5 fps keeps every 5th frame
        step = fps / sampling.fps
        assert step == round(step), "the expected indices below hold for a rate that divides the video's"
        return list(range(0, n_frames, round(step)))
    return list(range(n_frames))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "sampling", [Sampling(), Sampling(every=10), Sampling(count=7), Sampling(fps=5.0)], ids=lambda s: s.describe()
)
def test_sampling_gives_true_indices_and_timestamps(any_video, backend, sampling):
    info = probe(any_video)
    assert info.n_frames_exact and info.n_frames > 10
    frames = [(f.index, f.timestamp, f.image.shape, f.image.dtype) for f in iter_frames(any_video, sampling, backend)]
    indices = [f[0] for f in frames]
    assert indices == _expected_indices(sampling, info.n_frames, info.fps)
    assert [f[1] for f in frames] == pytest.approx([i / info.fps for i in indices], abs=1e-3)
    assert all(shape == (info.height, info.width, 3) and dtype == np.uint8 for _, _, shape, dtype in frames)


def test_sampled_frame_is_the_true_frame(any_video):
    """The middle frame from count=3 sampling (154 of the FF++ clip's 309) equals ffmpeg's own
    frame of that index, not a neighbour 6 frames on."""
    n = probe(any_video).n_frames
    middle = int(round((n - 1) / 2))
    frame = [f for f in iter_frames(any_video, Sampling(count=3), "pyav")][1]
    assert frame.index == middle
    reference = ffmpeg_frame(any_video, middle)
    assert mean_abs_diff(frame.image, reference) < 1.5
    neighbour = ffmpeg_frame(any_video, middle + 6)
    assert mean_abs_diff(frame.image, neighbour) > mean_abs_diff(frame.image, reference) + 0.5


def test_backends_agree_on_pixels(any_video):
    pyav = list(iter_frames(any_video, Sampling(count=5), "pyav"))
    decord = list(iter_frames(any_video, Sampling(count=5), "decord"))
    assert [f.index for f in pyav] == [f.index for f in decord]
    for a, b in zip(pyav, decord):
        assert mean_abs_diff(a.image, b.image) < 1.0
        assert np.percentile(np.abs(a.image.astype(np.int16) - b.image), 99) <= 4


def test_fps_sampling_at_a_rate_that_does_not_divide(any_video):
    """10 fps from 25 fps: for each 0.1 s step, the first frame at most half a frame early."""
    info = probe(any_video)
    assert info.fps == 25.0  # both test videos; 10 fps does not divide it
    indices = [f.index for f in iter_frames(any_video, Sampling(fps=10.0), "pyav")]
    step = info.fps / 10.0
    expected = [math.ceil(k * step - 0.5) for k in range(int((info.n_frames - 0.5) / step) + 1)]
    assert indices == [i for i in expected if i < info.n_frames]
    assert indices[:7] == [0, 2, 5, 7, 10, 12, 15]
    gaps = np.diff(indices)
    assert set(gaps) == {2, 3}


def test_missing_decord_is_a_clear_import_error(any_video, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # what an install without decord sees
    with pytest.raises(ImportError, match="pip install"):
        iter_frames(any_video, backend="decord")
    assert next(iter_frames(any_video, Sampling(count=1), "auto")).index == 0


def test_unknown_backend_is_a_value_error(any_video):
    with pytest.raises(ValueError, match="backend"):
        iter_frames(any_video, backend="opencv")


@pytest.fixture(scope="session")
def short_gop_clip(media):
    """A real-face clip with a keyframe every 25 frames, like a phone's (one per second)."""
    return render_clip(media / "gop25.mp4", n_frames=200, width=480, height=272, faces=("astronaut",), gop=25)


@pytest.mark.parametrize("sampling", [Sampling(count=6), Sampling(every=40), Sampling(fps=0.5)], ids=str)
def test_seeking_over_gaps_gives_the_frames_decoding_through_does(short_gop_clip, sampling, monkeypatch):
    plan = pyav_backend._seek_plan(short_gop_clip, probe(short_gop_clip), sampling)
    assert plan is not None and any(k is not None for k in plan.seek_to[1:])  # this test seeks
    seeking = list(iter_frames(short_gop_clip, sampling, "pyav"))
    monkeypatch.setattr(pyav_backend, "_SEEK_MIN_SKIP", 10**9)  # never seek
    monkeypatch.setattr(pyav_backend, "_NONREF_CODECS", set())  # and decode every frame
    assert not any(pyav_backend._seek_plan(short_gop_clip, probe(short_gop_clip), sampling).seek_to)
    through = list(iter_frames(short_gop_clip, sampling, "pyav"))
    assert [f.index for f in seeking] == [f.index for f in through] == plan.wanted
    assert [f.timestamp for f in seeking] == [f.timestamp for f in through]
    for a, b in zip(seeking, through):
        assert np.array_equal(a.image, b.image)
    last = seeking[-1]
    assert mean_abs_diff(last.image, ffmpeg_frame(short_gop_clip, last.index)) < 1.0


@pytest.fixture(scope="session")
def hevc_clip(media, public_video):
    """The public-domain clip as HEVC with B-frames (no ../shared needed)."""
    out = media / "public_hevc.mp4"
    run_ffmpeg(["-y", "-loglevel", "error", "-i", str(public_video), "-vf", "scale=640:360", "-c:v", "libx265",
                "-crf", "28", "-x265-params", "log-level=error:bframes=4", str(out)])
    return out


@pytest.mark.parametrize("clip", ["real_video", "public_video", "hevc_clip"])
@pytest.mark.parametrize("sampling", [Sampling(every=5), Sampling(count=40), Sampling(fps=10.0)], ids=str)
def test_dropping_unsampled_nonref_frames_gives_the_frames_decoding_through_does(clip, sampling, request, monkeypatch, caplog):
    """H.264 / HEVC frames that no other frame references are dropped undecoded unless
    sampled: the sampled frames keep their indices, timestamps and exact pixels."""
    path = request.getfixturevalue(clip)
    assert not any(pyav_backend._seek_plan(path, probe(path), sampling).seek_to)  # decodes through
    calls = []
    skipping = pyav_backend._iter_pyav_skipping
    monkeypatch.setattr(pyav_backend, "_iter_pyav_skipping", lambda *a: calls.append(1) or skipping(*a))
    with caplog.at_level("DEBUG", logger=pyav_backend.__name__):
        skipped = list(iter_frames(path, sampling, "pyav"))
    assert calls and not [r for r in caplog.records if r.levelname == "WARNING"]  # no fallback
    (report,) = [r.getMessage() for r in caplog.records if "decoded" in r.getMessage()]
    decoded, total = map(int, re.search(r"decoded (\d+) of (\d+) frames", report).groups())
    assert decoded < 0.75 * total  # the B-frames between samples were never decoded
    monkeypatch.setattr(pyav_backend, "_NONREF_CODECS", set())
    through = list(iter_frames(path, sampling, "pyav"))
    assert len(calls) == 1 and len(skipped) > 3
    assert [f.index for f in skipped] == [f.index for f in through]
    assert [f.timestamp for f in skipped] == [f.timestamp for f in through]
    for a, b in zip(skipped, through):
        assert np.array_equal(a.image, b.image)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matroska_without_a_frame_count(any_video, media, backend):
    """MKV stores no frame count: n_frames is estimated from duration and fps, and flagged."""
    source = probe(any_video)
    assert source.n_frames_exact
    path = media / f"{any_video.stem}.mkv"
    if not path.exists():
        run_ffmpeg(["-i", any_video, "-c", "copy", path])
    info = probe(path)
    assert not info.n_frames_exact and abs(info.n_frames - source.n_frames) <= 1
    frames = [(f.index, f.timestamp) for f in iter_frames(path, Sampling(count=5), backend)]
    # the true frames (0, 77, 154, 231, 308 of the FF++ clip's 309), whatever the estimate
    assert [i for i, _ in frames] == _expected_indices(Sampling(count=5), source.n_frames, source.fps)
    assert [t for _, t in frames] == pytest.approx([i / source.fps for i, _ in frames], abs=1e-3)


# ----------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("backend", BACKENDS)
def test_portrait_clip_comes_out_upright(portrait_clip, backend):
    info = probe(portrait_clip)
    assert (info.width, info.height, info.rotation) == (240, 320, 90)
    frames = list(iter_frames(portrait_clip, Sampling(count=2), backend))
    assert [f.image.shape for f in frames] == [(320, 240, 3)] * 2
    for frame in frames:
        assert mean_abs_diff(frame.image, ffmpeg_frame(portrait_clip, frame.index)) < 1.0


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_on_a_real_video(any_video, media, rotation):
    source = probe(any_video)
    assert source.rotation == 0
    rotated = set_rotation(any_video, media / f"{any_video.stem}_rot{rotation}.mp4", rotation)
    info = probe(rotated)
    assert info.rotation == rotation
    w, h = source.width, source.height
    assert (info.width, info.height) == ((h, w) if rotation % 180 else (w, h))
    reference = ffmpeg_frame(rotated, 0)
    for backend in BACKENDS:
        frame = next(iter_frames(rotated, Sampling(count=1), backend))  # count=1 -> frame 0 only
        assert frame.index == 0 and frame.image.shape == (info.height, info.width, 3)
        assert mean_abs_diff(frame.image, reference) < 1.5, backend


# ----------------------------------------------------------------------------- memory


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_stays_bounded_on_a_long_1080p_clip(media, backend):
    psutil = pytest.importorskip("psutil")
    path = media / "long_1080p.mp4"
    n_frames, frame_bytes = 200, 1920 * 1080 * 3
    if not path.exists():
        faces = ("astronaut", "grace_hopper")
        render_clip(path, n_frames=n_frames, width=1920, height=1080, faces=faces, preset="ultrafast")
    process = psutil.Process()
    before = process.memory_info().rss
    rss = [process.memory_info().rss for _ in iter_frames(path, Sampling(), backend)]
    assert len(rss) == n_frames
    half = n_frames // 2
    # flat once the decoder is warm: the second 100 frames add at most a few frames' worth
    creep = max(rss[half:]) - max(rss[:half])
    assert creep < 10 * frame_bytes, f"RSS crept up {creep >> 20} MiB"
    # and far below holding the video (1.2 GB)
    assert max(rss) - before < n_frames // 3 * frame_bytes, f"RSS grew {(max(rss) - before) >> 20} MiB"


# ----------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory, any_video, astronaut_jpg):
    """One file per error code (the code is the key); the cut and corrupt ones made from
    `any_video`, the cover art from the public-domain astronaut."""
    media = tmp_path_factory.mktemp(f"bad_{any_video.stem}")
    files = {}
    files["missing"] = media / "missing.mp4"
    files["directory"] = media / "a_folder.mp4"
    files["directory"].mkdir()
    files["empty"] = media / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["text"] = media / "notes.mp4"
    files["text"].write_text("this is a text file, not a video\n" * 50)
    files["random"] = media / "noise.avi"
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    files["audio"] = make_audio_only(media / "tone.m4a", seconds=1.0)
    files["audio_with_cover"] = make_audio_only(media / "song.m4a", seconds=1.0, cover=astronaut_jpg)
    # an mp4 with its index (moov) at the end, like FF++'s (ffmpeg's default): half of it has none
    moov_end = media / "moov_end.mp4"
    run_ffmpeg(["-i", any_video, "-c", "copy", moov_end])
    data = moov_end.read_bytes()
    assert data.rfind(b"moov") > data.find(b"mdat") > 0  # the index after the frame data
    files["cut_moov_end"] = media / "cut_moov_end.mp4"
    files["cut_moov_end"].write_bytes(data[: len(data) // 2])
    # with the index first (faststart), half a file opens and decodes until the data ends
    faststart = media / "faststart.mp4"
    run_ffmpeg(["-i", any_video, "-c", "copy", "-movflags", "+faststart", faststart])
    data = faststart.read_bytes()
    files["cut_faststart"] = media / "cut_faststart.mp4"
    files["cut_faststart"].write_bytes(data[: len(data) // 2])
    # garbage written over frame data in the middle, the file length intact
    corrupt = bytearray(data)
    rng = np.random.default_rng(1)
    for offset in range(len(corrupt) // 8, len(corrupt) - 2000, 7000):
        corrupt[offset : offset + 500] = rng.integers(0, 256, 500, dtype=np.uint8).tobytes()
    files["corrupt_middle"] = media / "corrupt_middle.mp4"
    files["corrupt_middle"].write_bytes(bytes(corrupt))
    return files


def test_decode_error_is_an_item_error_with_its_code():
    """The stage runner keeps an ItemError's code, so a bad video's row says what is wrong."""
    error = DecodeError("truncated", "clip.mp4: cut short")
    assert isinstance(error, ItemError)
    assert (error.code, error.message) == ("truncated", "clip.mp4: cut short")
    assert str(error) == "truncated: clip.mp4: cut short"
    with pytest.raises(ValueError, match="unknown decode error code"):
        DecodeError("no_such_code", "clip.mp4")


BAD_CASES = [
    ("missing", "unreadable"),
    ("directory", "unreadable"),
    ("empty", "empty_file"),
    ("text", "not_video"),
    ("random", "not_video"),
    ("audio", "no_video_stream"),
    ("audio_with_cover", "no_video_stream"),
    ("cut_moov_end", "truncated"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,code", BAD_CASES)
def test_bad_input_gets_its_error_code(bad_inputs, name, code, backend):
    assert code in ERROR_CODES
    with pytest.raises(DecodeError) as probed:
        probe(bad_inputs[name])
    assert probed.value.code == code and str(bad_inputs[name].name) in probed.value.message
    with pytest.raises(DecodeError) as decoded:
        list(iter_frames(bad_inputs[name], backend=backend))
    assert decoded.value.code == code


@pytest.mark.parametrize("backend", BACKENDS)
def test_half_a_faststart_mp4_yields_its_frames_then_truncated(any_video, bad_inputs, backend):
    n = probe(any_video).n_frames
    path = bad_inputs["cut_faststart"]
    assert probe(path).n_frames == n  # the header still promises every frame
    indices = []
    with pytest.raises(DecodeError) as raised:
        for frame in iter_frames(path, backend=backend):
            indices.append(frame.index)
    assert raised.value.code == "truncated"
    # half the bytes hold about half the frames (those before the cut, in order)
    assert n / 6 < len(indices) < n and indices == list(range(len(indices)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sampling", [Sampling(), Sampling(count=7)], ids=str)
def test_corrupt_data_mid_stream_is_a_decode_error(bad_inputs, backend, sampling):
    with pytest.raises(DecodeError) as raised:
        list(iter_frames(bad_inputs["corrupt_middle"], sampling, backend=backend))
    assert raised.value.code == "decode_error"


def test_sparse_sampling_of_a_cut_file_is_truncated(bad_inputs):
    with pytest.raises(DecodeError) as raised:
        list(iter_frames(bad_inputs["cut_faststart"], Sampling(count=7), "pyav"))
    assert raised.value.code == "truncated"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_permissions(media, any_video):
    path = media / f"locked_{any_video.stem}.mp4"
    path.write_bytes(any_video.read_bytes())
    path.chmod(0)
    with pytest.raises(DecodeError) as raised:
        probe(path)
    assert raised.value.code == "unreadable"


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pixels_too_large(any_video, backend):
    info = probe(any_video)
    pixels = info.width * info.height
    with pytest.raises(DecodeError) as raised:
        iter_frames(any_video, backend=backend, max_pixels=pixels - 1)
    assert raised.value.code == "too_large"
    assert next(iter_frames(any_video, Sampling(count=1), backend, max_pixels=pixels)).index == 0


@pytest.fixture(params=["shared", "public"])
def jpeg_photo(request):
    """A JPEG photo: the first shared face photo (skips without ../shared), and the
    public-domain astronaut written here."""
    if request.param == "public":
        return request.getfixturevalue("astronaut_jpg")
    return sorted(request.getfixturevalue("faces_dir").glob("*.jpg"))[0]


def test_a_still_photo_is_one_frame_but_not_under_a_video_name(jpeg_photo, tmp_path):
    photo = jpeg_photo
    info = probe(photo)
    assert (info.kind, info.n_frames) == ("image", 1)
    renamed = tmp_path / "photo.mp4"  # a JPEG named as a video: FFmpeg sees a still, which is no video
    renamed.write_bytes(photo.read_bytes())
    with pytest.raises(DecodeError) as raised:
        probe(renamed)
    assert raised.value.code == "not_video" and "still image" in raised.value.message


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_frame_video(media, backend):
    path = media / "one_frame.mp4"
    if not path.exists():
        render_clip(path, n_frames=1, width=320, height=240)
    info = probe(path)
    assert info.n_frames == 1
    for sampling in (Sampling(), Sampling(count=5), Sampling(fps=1.0), Sampling(every=4)):
        frames = list(iter_frames(path, sampling, backend))
        assert [(f.index, f.timestamp, f.image.shape) for f in frames] == [(0, 0.0, (240, 320, 3))]
