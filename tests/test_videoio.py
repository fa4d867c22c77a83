"""Writing videos with ffmpeg and making real-face clips: round trips read back by decode."""

from __future__ import annotations

import numpy as np
import pytest

from dfpipe.media.faceclips import DEMO_CLIPS, compose_photos, face_photo, make_demo_videos, render_clip
from dfpipe.pipeline.video.decode import DecodeError, Sampling, iter_frames, probe
from dfpipe.pipeline.video.writing import (
    QUALITY_CRF,
    add_sine_audio,
    crf_for_quality,
    make_audio_only,
    set_rotation,
    write_video,
)


@pytest.fixture(scope="module")
def real_frames(any_video):
    """12 real-face frames from each test video (the FF++ clip, where ../shared is, and the
    public-domain clip), at 640x360 (the FF++ clip downscaled) to keep encoding quick."""
    import cv2

    frames = [f.image for f in iter_frames(any_video, Sampling(count=12))]
    return [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in frames]


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_round_trip_keeps_count_fps_size_and_pixels(real_frames, tmp_path):
    path = write_video(iter(real_frames), tmp_path / "out.mp4", fps=10, crf=QUALITY_CRF["c23"])
    info = probe(path)
    assert (info.width, info.height, info.fps, info.n_frames, info.codec) == (640, 360, 10.0, 12, "h264")
    decoded = list(iter_frames(path))
    assert [f.index for f in decoded] == list(range(12))
    assert [f.timestamp for f in decoded] == pytest.approx([i / 10 for i in range(12)], abs=1e-3)
    assert max(_mad(a, f.image) for a, f in zip(real_frames, decoded)) < 4.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_ntsc_rate_is_kept_exactly(real_frames, tmp_path):
    info = probe(write_video(real_frames[:6], tmp_path / "ntsc.mp4", fps=30000 / 1001, preset="ultrafast"))
    assert info.fps == pytest.approx(29.97003, abs=1e-4) and info.n_frames == 6


def test_ffpp_qualities_order_file_sizes_and_fidelity(real_frames, tmp_path):
    sizes, errors = {}, {}
    for quality in ("c0", "c23", "c40"):
        path = write_video(real_frames, tmp_path / f"{quality}.mp4", fps=25, crf=crf_for_quality(quality))
        sizes[quality] = path.stat().st_size
        errors[quality] = np.mean([_mad(a, f.image) for a, f in zip(real_frames, iter_frames(path))])
    assert sizes["c0"] > sizes["c23"] > sizes["c40"]
    assert sizes["c0"] > 3 * sizes["c23"]
    assert errors["c0"] < errors["c23"] < errors["c40"]
    assert errors["c0"] < 2.5  # lossless in YUV; only the RGB<->YUV420 round trip remains


def test_unknown_quality_is_a_value_error():
    with pytest.raises(ValueError, match="c23"):
        crf_for_quality("c99")


@pytest.mark.parametrize(
    "frames,match",
    [
        ([], "no frames"),
        ([np.zeros((10, 10), np.uint8)], "H x W x 3"),
        ([np.zeros((10, 10, 3), np.float32)], "uint8"),
        ([np.zeros((11, 10, 3), np.uint8)], "even"),
        ([np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10, 3), np.uint8)], "earlier frames"),
    ],
)
def test_bad_frames_are_refused_and_leave_no_file(tmp_path, frames, match):
    with pytest.raises(ValueError, match=match):
        write_video(frames, tmp_path / "bad.mp4", fps=25)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_frame_source_leaves_no_file(real_frames, tmp_path):
    def frames():
        yield from real_frames[:3]
        raise RuntimeError("upstream stage failed")

    with pytest.raises(RuntimeError, match="upstream"):
        write_video(frames(), tmp_path / "partial.mp4", fps=25)
    assert list(tmp_path.iterdir()) == []


def test_odd_sizes_work_in_yuv444(real_frames, tmp_path):
    frames = [f[:201, :301] for f in real_frames[:3]]
    info = probe(write_video(frames, tmp_path / "odd.mp4", fps=25, pix_fmt="yuv444p"))
    assert (info.width, info.height, info.n_frames) == (301, 201, 3)


def test_audio_from_another_file(real_frames, tmp_path):
    with_audio = add_sine_audio(write_video(real_frames, tmp_path / "v.mp4", fps=25), tmp_path / "va.mp4")
    assert probe(with_audio).has_audio and probe(with_audio).n_frames == len(real_frames)
    out = write_video(real_frames, tmp_path / "copy.mp4", fps=25, audio_from=with_audio)
    info = probe(out)
    assert info.has_audio and info.n_frames == len(real_frames)
    silent = write_video(real_frames, tmp_path / "silent.mp4", fps=25, audio_from=tmp_path / "v.mp4")
    assert not probe(silent).has_audio  # a source without audio is fine


def test_rotation_and_audio_only_helpers(real_frames, tmp_path):
    plain = write_video(real_frames[:2], tmp_path / "p.mp4", fps=25, preset="ultrafast")
    info = probe(set_rotation(plain, tmp_path / "r.mp4", 270))
    assert (info.rotation, info.width, info.height) == (270, 360, 640)
    with pytest.raises(ValueError):
        set_rotation(plain, tmp_path / "bad.mp4", 45)
    with pytest.raises(DecodeError) as raised:
        probe(make_audio_only(tmp_path / "tone.m4a", seconds=0.5))
    assert raised.value.code == "no_video_stream"


# ----------------------------------------------------------------------------- face clips


def test_face_photos_are_the_real_portraits():
    assert face_photo("astronaut").shape == (512, 512, 3)
    assert face_photo("grace_hopper").shape == (600, 512, 3)
    canvas, (cx, cy) = compose_photos(("astronaut", "grace_hopper"))
    assert canvas.shape == (600, 600 + 512, 3) and 0 < cx < canvas.shape[1] and 0 < cy < 600
    with pytest.raises(ValueError):
        face_photo("mona_lisa")


def test_clip_geometry_motion_audio_and_rotation(tmp_path):
    path = render_clip(tmp_path / "clip.mp4", n_frames=10, width=320, height=240, fps=20, audio=True)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.n_frames, info.has_audio) == (320, 240, 20.0, 10, True)
    frames = [f.image for f in iter_frames(path)]
    assert _mad(frames[0], frames[-1]) > 5  # the camera moves
    assert all(_mad(a, b) < 40 for a, b in zip(frames, frames[1:]))  # smoothly
    portrait = probe(render_clip(tmp_path / "portrait.mp4", n_frames=3, width=240, height=320, rotation=90))
    assert (portrait.width, portrait.height, portrait.rotation) == (240, 320, 90)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.slow
def test_demo_clips_show_the_faces_to_retinaface(tmp_path, retinaface_weights):
    from dfpipe.pipeline.faces.detect import FaceDetector

    paths = make_demo_videos(tmp_path)
    assert [p.name for p in paths] == list(DEMO_CLIPS)
    detector = FaceDetector(weights=retinaface_weights)
    expected_faces = {name: len(options["faces"]) for name, options in DEMO_CLIPS.items()}
    for path in paths:
        info = probe(path)
        assert 2.5 <= info.duration <= 5.0 and 480 <= min(info.width, info.height) <= 720
        frames = [f.image for f in iter_frames(path, Sampling(count=2))]
        for detections in detector.detect(frames):
            assert len(detections) == expected_faces[path.name], path.name
    assert any(probe(p).rotation for p in paths) and any(probe(p).has_audio for p in paths)
