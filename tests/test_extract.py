"""End-to-end tests of `dfpipe extract` on real faces: shared FF++ pair, clips rendered
from public-domain photos, bad inputs, resume after a kill, a 2-worker cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import cut_faststart
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.manifests.codec import decode_image
from dfpipe.manifests.ids import video_content_id
from dfpipe.manifests.parts import part_path, read_table, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.manifests.validate import validate
from dfpipe.media.faceclips import render_clip
from dfpipe.pipeline.faces import ExtractConfig, VideoJob, extract, extract_video
from dfpipe.pipeline.faces.tracks import box_iou
from dfpipe.pipeline.video.writing import make_audio_only, write_video
from dfpipe.runtime.runinfo import ParamsMismatch

runner = CliRunner()
FAST = ExtractConfig(every=3, size=128)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "astronaut": render_clip(d / "astronaut.mp4", n_frames=15, width=480, height=360),
        "two": render_clip(d / "two.mp4", n_frames=15, width=640, height=360, faces=("astronaut", "grace_hopper"), pan=0.3),
        "portrait": render_clip(d / "portrait.mp4", n_frames=12, width=360, height=480, faces=("grace_hopper",), rotation=90),
    }


def _faces(root: Path):
    t = read_table(root, "faces", FACES_SCHEMA)
    return t.sort_by([("video_id", "ascending"), ("frame_index", "ascending"), ("track_id", "ascending")])


def _videos(root: Path):
    rows = read_table(root, "videos", VIDEOS_SCHEMA).to_pylist()
    for r in rows:
        r.pop("meta")  # holds timings
    return sorted(rows, key=lambda r: r["video_id"])


def _same_result(a: Path, b: Path) -> None:
    assert _videos(a) == _videos(b)
    fa, fb = _faces(a), _faces(b)
    assert fa.num_rows == fb.num_rows > 0
    assert fa.equals(fb)


def test_clips_tracks_and_crops(clips, tmp_path):
    import torch

    out = tmp_path / "ds"
    threads = torch.get_num_threads()
    summary = extract(list(clips.values()), out, FAST, workers=0, progress=False)
    assert summary.n_ok == 3 and summary.n_errors == 0
    assert torch.get_num_threads() == threads  # the serial path lends a core to its threads, then gives it back
    videos = {Path(r["path"]).name: r for r in _videos(out)}
    assert videos["two.mp4"]["n_tracks"] == 2
    assert videos["astronaut.mp4"]["n_tracks"] == 1
    assert videos["astronaut.mp4"]["n_sampled"] == 5  # frames 0, 3, 6, 9, 12
    portrait = videos["portrait.mp4"]
    assert (portrait["width"], portrait["height"], portrait["rotation"]) == (360, 480, 90)
    faces = _faces(out).to_pylist()
    for f in faces:
        lm = np.array(f["landmarks"]).reshape(5, 2)
        # upright faces: eyes above the nose above the mouth, left eye left of the right eye
        assert lm[0, 1] < lm[2, 1] < lm[3, 1] and lm[1, 1] < lm[2, 1] < lm[4, 1]
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
        img = decode_image(f["image"])
        assert img.shape == (128, 128, 3)
    # aligned crops put the eyes where the template says, whatever the camera did
    m = np.array(faces[0]["matrix"]).reshape(2, 3)
    eyes = np.array(faces[0]["landmarks"]).reshape(5, 2)[:2] @ m[:, :2].T + m[:, 2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 3 and eyes[0, 0] < 64 < eyes[1, 0]
    # the two faces of `two.mp4` keep their track ids: left face 0, right face 1
    two_id = videos["two.mp4"]["video_id"]
    for f in (f for f in faces if f["video_id"] == two_id):
        assert (f["x1"] < 320) == (f["track_id"] == 0)
    assert validate(out, deep=True).ok


@pytest.mark.slow
def test_real_and_fake_pair_get_boxes_at_the_same_place(real_video, fake_video, tmp_path):
    out = tmp_path / "pair"
    summary = extract([real_video, fake_video], out, ExtractConfig(every=10, size=160), workers=0, progress=False)
    assert summary.n_ok == 2 and summary.counts["faces"] == 62  # 31 sampled frames x 1 face
    faces = _faces(out).to_pylist()
    by_video: dict[str, dict[int, dict]] = {}
    for f in faces:
        by_video.setdefault(f["video_id"], {})[f["frame_index"]] = f
    real, fake = by_video[video_content_id(real_video)], by_video[video_content_id(fake_video)]
    assert sorted(real) == sorted(fake) == list(range(0, 309, 10))
    for idx in real:
        a = np.array([[real[idx][k] for k in ("x1", "y1", "x2", "y2")]])
        b = np.array([[fake[idx][k] for k in ("x1", "y1", "x2", "y2")]])
        assert box_iou(a, b)[0, 0] > 0.85, idx
        assert np.abs(np.array(real[idx]["landmarks"]) - np.array(fake[idx]["landmarks"])).max() < 12


@pytest.mark.slow
def test_fake_reuses_its_source_geometry(real_video, fake_video, tmp_path):
    """An ingested pair: the fake is cropped with the real's tracks and matrices."""
    root = tmp_path / "ingested"
    real_id, fake_id = video_content_id(real_video), video_content_id(fake_video)
    rows = [
        {"video_id": real_id, "path": os.path.relpath(real_video, root), "label": "real", "status": "pending"},
        {"video_id": fake_id, "path": os.path.relpath(fake_video, root), "label": "fake", "method": "NeuralTextures",
         "source_video_id": real_id, "status": "pending"},
    ]
    for r in rows:
        write_part_atomic(rows_to_table([r], VIDEOS_SCHEMA), part_path(root, "videos", r["video_id"]))
    summary = extract([root], None, ExtractConfig(count=6, size=128), workers=0, progress=False)
    assert summary.n_ok == 2
    faces = _faces(root).to_pylist()
    real = {f["frame_index"]: f for f in faces if f["video_id"] == real_id}
    fake = {f["frame_index"]: f for f in faces if f["video_id"] == fake_id}
    assert sorted(real) == sorted(fake) and len(real) == 6
    for idx in real:
        assert real[idx]["matrix"] == fake[idx]["matrix"]
        assert fake[idx]["label"] == "fake" and real[idx]["label"] == "real"
        # same geometry, different pixels only where NeuralTextures edited the face
        diff = np.abs(decode_image(real[idx]["image"]).astype(int) - decode_image(fake[idx]["image"]).astype(int))
        assert diff.mean() < 12
    meta = json.loads(next(r for r in read_table(root, "videos", VIDEOS_SCHEMA).to_pylist() if r["video_id"] == fake_id)["meta"])
    assert "reuse" in meta["pair"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, clips) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    (d / "zero.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("this is not a video\n" * 50)
    data = clips["astronaut"].read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])  # index at the end: nothing to read
    long_clip = render_clip(tmp_path_factory.mktemp("long") / "long.mp4", n_frames=40, width=480, height=360, gop=10)
    cut_faststart(long_clip, d / "half_faststart.mp4", Fraction(3, 5))  # index first, then ~half the frames
    make_audio_only(d / "audio_only.m4a")
    render_clip(d / "one_frame.mp4", n_frames=1, width=480, height=360)
    import skimage.data

    coffee = skimage.data.coffee()  # a real photo without a face
    write_video((coffee for _ in range(6)), d / "no_face.mp4", fps=10)
    render_clip(d / "large.mp4", n_frames=3, width=960, height=720)
    return {p.stem: p for p in d.iterdir()} | {"missing": d / "missing.mp4", "folder": d}


def test_bad_inputs_get_error_rows_and_the_run_goes_on(bad_inputs, tmp_path):
    inputs = [bad_inputs[k] for k in ("zero", "notes", "truncated", "half_faststart", "audio_only", "one_frame",
                                      "no_face", "large")]
    out = tmp_path / "bad"
    config = ExtractConfig(every=1, size=96, max_pixels=800 * 600)
    result = runner.invoke(app, ["extract", *map(str, inputs), "--out", str(out), "--every", "1", "--size", "96",
                                 "--max-pixels", str(800 * 600), "--workers", "0", "--no-progress"])
    assert result.exit_code == 1, result.output  # some inputs failed
    assert "Traceback" not in result.output
    rows = {Path(r["path"]).name: r for r in _videos(out)}
    expected = {"zero.mp4": "empty_file", "notes.mp4": "not_video", "truncated.mp4": "truncated",
                "audio_only.m4a": "no_video_stream", "large.mp4": "too_large"}
    for name, code in expected.items():
        assert rows[name]["status"] == "error" and rows[name]["error_code"] == code, rows[name]
        assert rows[name]["error"]
    assert rows["one_frame.mp4"]["status"] == "ok" and rows["one_frame.mp4"]["n_faces"] == 1
    assert rows["no_face.mp4"]["status"] == "ok" and rows["no_face.mp4"]["n_faces"] == 0  # a result, not an error
    assert "truncated" in result.output and "failed" in result.output
    # a file cut short with its index first keeps the frames before the cut, and says so
    half = rows["half_faststart.mp4"]
    assert half["status"] == "ok" and half["error_code"] is None, (half["error_code"], half["error"])
    assert 0 < half["n_sampled"] < half["n_frames"] and half["n_faces"] == half["n_sampled"]
    meta = {Path(r["path"]).name: json.loads(r["meta"] or "{}") for r in read_table(out, "videos", VIDEOS_SCHEMA).to_pylist()}
    assert re.search(r"cut short|stopped at frame", meta["half_faststart.mp4"]["truncated"])
    assert f"truncated, {half['n_sampled']} sampled frame(s) kept" in " ".join(result.output.split())
    assert validate(out).ok
    assert "Errno" not in rows["notes.mp4"]["error"]  # FFmpeg's words, not its error number
    # the same run again is resumed: nothing redone, same exit status
    again = extract(inputs, out, config, workers=0, progress=False)
    assert again.n_skipped == len(inputs) and again.n_errors == len(expected)


def test_a_path_that_does_not_exist_or_a_folder_without_videos_is_refused_before_any_work(bad_inputs, tmp_path):
    out = tmp_path / "never"
    result = runner.invoke(app, ["extract", str(bad_inputs["one_frame"]), str(bad_inputs["missing"]), "--out", str(out),
                                 "--workers", "0", "--no-progress"])
    assert result.exit_code == 2 and "no such file or folder" in result.output and "missing.mp4" in result.output
    assert not out.exists()
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no videos here")
    result = runner.invoke(app, ["extract", str(empty), "--out", str(out), "--workers", "0", "--no-progress"])
    assert result.exit_code == 2 and "holds no video or image file" in result.output
    assert str(empty) in result.output and ".mp4" in result.output and ".jpg" in result.output
    assert not out.exists()


def test_other_parameters_are_refused(clips, tmp_path):
    out = tmp_path / "ds"
    extract([clips["astronaut"]], out, FAST, workers=0, progress=False)
    with pytest.raises(ParamsMismatch, match="every"):
        extract([clips["astronaut"]], out, ExtractConfig(every=5, size=128), workers=0, progress=False)
    result = runner.invoke(app, ["extract", str(clips["astronaut"]), "--out", str(out), "--every", "5", "--size", "128"])
    assert result.exit_code == 2 and "other parameters" in result.output


def test_bad_arguments_get_a_message_before_any_work(tmp_path, clips):
    result = runner.invoke(app, ["extract", str(clips["astronaut"]), "--out", str(tmp_path / "x"), "--every", "2", "--count", "3"])
    assert result.exit_code == 2 and "choose one frame sampling" in result.output
    assert not (tmp_path / "x").exists()
    result = runner.invoke(app, ["extract", str(clips["astronaut"]), "--out", str(tmp_path / "x"), "--every", "0"])
    assert result.exit_code == 2 and "--every must be a whole number of frames" in result.output, result.output
    assert not (tmp_path / "x").exists()
    result = runner.invoke(app, ["validate", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output and "error(s)" not in result.output


def test_weights_that_do_not_fit_are_refused_before_any_work(tmp_path, clips):
    """mobilenet0.25 weights are pinned by hash; ResNet-50 weights (not pinned) are loaded
    once before the run, so a wrong or broken file is exit 2 with a message, not N rows."""
    import torch

    wrong = tmp_path / "wrong.pth"
    torch.save({"body.conv.weight": torch.zeros(8, 3, 3, 3)}, wrong)
    garbage = tmp_path / "notes.pth"
    garbage.write_text("these are not weights")
    cases = (("mobilenet0.25", wrong, "expected 2979b33f"), ("resnet50", wrong, "does not fit RetinaFace resnet50"),
             ("resnet50", garbage, "not a PyTorch weights file"))
    for i, (detector, weights, message) in enumerate(cases):
        out = tmp_path / f"ds{i}"
        result = runner.invoke(app, ["extract", str(clips["astronaut"]), "--out", str(out), "--detector", detector,
                                     "--weights", str(weights), "--no-progress"])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()) and "Traceback" not in result.output
        assert not out.exists()


def test_a_detector_that_cannot_run_on_the_workers_is_refused_before_any_work(tmp_path, clips):
    """The workers load the detector before the first video (one worker here): a device
    they do not have is exit 2 with torch's reason, and nothing is written."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda would run")
    out = tmp_path / "ds"
    result = runner.invoke(app, ["extract", str(clips["astronaut"]), "--out", str(out), "--device", "cuda",
                                 "--workers", "1", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "no CUDA device" in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.slow
def test_the_client_of_a_cluster_run_imports_no_torch(clips, tmp_path):
    """Only the workers detect: the client checks the weights file by hash, so a cluster
    run does not spend its first seconds importing torch in the client too."""
    code = (
        "import sys; from dfpipe.pipeline.faces import ExtractConfig, extract\n"
        "if __name__ == '__main__':\n"
        "    s = extract([sys.argv[1]], sys.argv[2], ExtractConfig(every=3, size=128), workers=1, progress=False)\n"
        "    print(s.n_ok, s.counts['faces'], 'torch' in sys.modules)\n"
    )
    script = tmp_path / "client.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script), str(clips["astronaut"]), str(tmp_path / "ds")],
                         capture_output=True, text=True, env=os.environ, check=True)
    n_ok, n_faces, client_has_torch = out.stdout.split()[-3:]
    assert (n_ok, client_has_torch) == ("1", "False") and int(n_faces) > 0


@pytest.mark.slow
def test_a_cluster_run_prints_only_its_summary(clips, tmp_path):
    """Dask's scheduler logs its start and stop at INFO, and its HTTP endpoint wanted port
    8787 (a warning when another run held it): neither reaches the user's terminal."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 8787))  # as another run's scheduler would
        busy.listen()
        out = subprocess.run([sys.executable, "-m", "dfpipe", "extract", str(clips["astronaut"]), "--out",
                              str(tmp_path / "ds"), "--workers", "1", "--no-progress"],
                             capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0, out.stderr
    assert "videos ok" in out.stdout
    assert "distributed" not in out.stdout + out.stderr and "already in use" not in out.stderr


def test_videos_go_to_workers_largest_first(tmp_path):
    from dfpipe.pipeline.faces.inputs import largest_first as _largest_first

    sizes = {"a.mp4": 10, "b.mp4": 300, "c.mp4": 10, "d.mp4": 2000}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    jobs = [VideoJob(tmp_path / name, name) for name in sizes] + [VideoJob(tmp_path / "gone.mp4", "gone")]
    assert [j.video_id for j in _largest_first(jobs)] == ["d.mp4", "b.mp4", "a.mp4", "c.mp4", "gone"]


def test_detector_failure_on_a_worker_is_an_error_row(tmp_path, clips):
    """A worker that joins a cluster late loads its detector with its first video: the per-video
    function each worker runs turns a detector that cannot load into a `detector_error` row."""
    import torch

    wrong = tmp_path / "wrong.pth"
    torch.save({"body.conv.weight": torch.zeros(8, 3, 3, 3)}, wrong)
    path = clips["astronaut"]
    root = tmp_path / "ds"
    config = ExtractConfig(every=3, size=128, detector="resnet50", weights=str(wrong))
    result = extract_video(VideoJob(path, video_content_id(path)), config, root)
    assert result["status"] == "error"
    (row,) = _videos(root)
    assert row["status"] == "error" and row["error_code"] == "detector_error"
    assert "does not fit RetinaFace resnet50" in row["error"]
    assert list((root / "faces").iterdir()) == []  # no faces part and no temporary file left


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(clips, tmp_path):
    """SIGKILL mid-run, then the same command: the manifests equal a clean run's."""
    videos = [clips["astronaut"], clips["two"], clips["portrait"]]
    cmd = [sys.executable, "-m", "dfpipe", "extract", *map(str, videos), "--every", "3", "--size", "128",
           "--workers", "0", "--no-progress"]
    clean = tmp_path / "clean"
    subprocess.run([*cmd, "--out", str(clean)], check=True, capture_output=True, env=os.environ)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((killed / "videos").glob("part-*.parquet"))) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((killed / "videos").glob("part-*.parquet")))
    assert 1 <= done < 3, "the kill should land mid-run"
    # nothing half-written is visible: every visible part reads
    for part in killed.rglob("part-*.parquet"):
        pq.read_table(part)
    subprocess.run([*cmd, "--out", str(killed)], check=True, capture_output=True, env=os.environ)
    _same_result(clean, killed)
    assert not list(killed.rglob(".tmp-*"))


@pytest.mark.slow
def test_two_worker_local_cluster_equals_serial(clips, tmp_path):
    videos = [clips["astronaut"], clips["two"]]
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    extract(videos, serial, FAST, workers=0, progress=False)
    summary = extract(videos, parallel, FAST, workers=2, progress=False)
    assert summary.n_ok == 2
    assert _videos(serial) == _videos(parallel)
    a, b = _faces(serial).to_pylist(), _faces(parallel).to_pylist()
    assert [(f["face_id"], f["track_id"]) for f in a] == [(f["face_id"], f["track_id"]) for f in b]
    # one torch thread per worker vs all threads serially: same faces up to float summation order
    for fa, fb in zip(a, b):
        assert np.allclose([fa[k] for k in ("x1", "y1", "x2", "y2")], [fb[k] for k in ("x1", "y1", "x2", "y2")], atol=0.01)
        diff = np.abs(decode_image(fa["image"]).astype(int) - decode_image(fb["image"]).astype(int))
        assert diff.mean() < 0.5


def test_manifests_read_with_pandas_dask_and_duckdb(clips, tmp_path):
    out = tmp_path / "ds"
    extract([clips["two"]], out, FAST, workers=0, progress=False)
    import dask.dataframe as dd
    import duckdb
    import pandas as pd

    n = read_table(out, "faces", FACES_SCHEMA, columns=["face_id"]).num_rows
    assert len(pd.read_parquet(out / "faces", columns=["face_id", "track_id"])) == n
    assert len(dd.read_parquet(str(out / "faces" / "*.parquet"), columns=["face_id"]).compute()) == n
    got = duckdb.sql(f"select count(*), count(distinct track_id) from read_parquet('{out}/faces/*.parquet')").fetchall()[0]
    assert got == (n, 2)
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "faces" in info.output
    from dfpipe.manifests.info import info as dataset_info

    (row,) = dataset_info(out, videos=True).videos  # a row per video, with its own counts
    assert row["video"] == clips["two"].name and row["status"] == "ok" and row["faces"] == n
    listing = runner.invoke(app, ["info", str(out), "--videos"])
    assert listing.exit_code == 0 and clips["two"].name in listing.output and str(n) in listing.output


def test_validate_catches_broken_datasets(clips, tmp_path):
    out = tmp_path / "ds"
    extract([clips["astronaut"]], out, FAST, workers=0, progress=False)
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0
    # a faces row pointing at a video that is not listed
    faces = read_table(out, "faces", FACES_SCHEMA).to_pylist()[:1]
    faces[0]["face_id"], faces[0]["video_id"] = "orphan-1", "nosuchvideo"
    write_part_atomic(rows_to_table(faces, FACES_SCHEMA), part_path(out, "faces", "orphan"))
    (out / "videos" / "part-corrupt.parquet").write_bytes(b"PAR1 not really")
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 1
    assert "missing from videos/" in result.output and "unreadable Parquet" in result.output


def test_dropped_faces_are_counted_by_reason(clips, tmp_path):
    """Faces left out for their size, their score or their track are counted, per reason, in the
    videos row (meta.dropped) and the run summary; kept + dropped add up to what was found."""
    video = [clips["two"]]  # two people on every frame
    base = extract(video, tmp_path / "base", FAST, workers=0, progress=False)
    found, weak = base.counts["faces"], base.dropped.get("low_score", 0)
    assert found > 0 and base.dropped.get("small", 0) == 0 and base.dropped.get("track", 0) == 0

    small = extract(video, tmp_path / "small", replace(FAST, min_face=10_000), workers=0, progress=False)
    assert small.counts["faces"] == 0 and small.dropped["small"] == found
    assert small.counts["videos without faces"] == 1

    strict = extract(video, tmp_path / "strict", replace(FAST, score_threshold=0.9999), workers=0, progress=False)
    # a face over 0.9999 is also over 0.8; one between 0.5 and 0.8 was weak before too
    assert strict.counts["faces"] + strict.dropped.get("low_score", 0) == found + weak
    assert strict.dropped.get("low_score", 0) >= found - strict.counts["faces"]

    one = extract(video, tmp_path / "one", replace(FAST, keep="largest", max_tracks=1), workers=0, progress=False)
    assert one.counts["tracks"] == 1 and one.counts["faces"] + one.dropped["track"] == found
    (row,) = read_table(tmp_path / "one", "videos", VIDEOS_SCHEMA).to_pylist()
    assert json.loads(row["meta"])["dropped"]["track"] == one.dropped["track"]
    from dfpipe.manifests.info import info

    assert info(tmp_path / "one").dropped["track"] == one.dropped["track"]
    shown = runner.invoke(app, ["info", str(tmp_path / "small")])
    assert shown.exit_code == 0 and f"small: {found}" in shown.output


@pytest.fixture(scope="module")
def joined_clip(tmp_path_factory, real_video) -> Path:
    """Two seconds of the shared FF++ news clip, a public-domain two-face clip, then two more
    seconds of the news clip, joined with ffmpeg: two camera cuts, the same man either side."""
    from dfpipe.pipeline.video.writing import run_ffmpeg

    d = tmp_path_factory.mktemp("cuts")
    other = render_clip(d / "two.mp4", n_frames=50, width=640, height=360, faces=("astronaut", "grace_hopper"), pan=0.3)
    norm = "scale=640:360,setsar=1,fps=25,setpts=PTS-STARTPTS"
    graph = (f"[0:v]trim=0:2,{norm}[a];[1:v]{norm}[b];[2:v]trim=2:4,{norm}[c];[a][b][c]concat=n=3:v=1[out]")
    out = d / "joined.mp4"
    run_ffmpeg(["-i", real_video, "-i", other, "-i", real_video, "-filter_complex", graph, "-map", "[out]",
                "-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p", out])
    return out


def test_no_track_crosses_a_camera_cut(joined_clip, clips, tmp_path):
    extract([joined_clip], tmp_path / "ds", replace(FAST, every=5), workers=0, progress=False)
    faces = read_table(tmp_path / "ds", "faces", FACES_SCHEMA, columns=["frame_index", "track_id", "shot_id"]).to_pandas()
    assert faces.groupby("track_id").shot_id.nunique().max() == 1  # every track within one shot
    shots = faces.groupby("shot_id").frame_index.agg(["min", "max"])
    assert list(shots.index) == [0, 1, 2]
    # the cuts fall at frames 50 and 100: each shot's faces lie between them
    assert shots.loc[0, "max"] < 50 <= shots.loc[1, "min"] and shots.loc[1, "max"] < 100 <= shots.loc[2, "min"]
    assert faces[faces.shot_id == 1].track_id.nunique() == 2  # two people in the middle shot
    # the same man before and after the middle shot: two tracks, not one
    assert set(faces[faces.shot_id == 0].track_id).isdisjoint(faces[faces.shot_id == 2].track_id)
    (row,) = read_table(tmp_path / "ds", "videos", VIDEOS_SCHEMA).to_pylist()
    assert json.loads(row["meta"])["shots"] == 3

    # camera motion is no cut: a panning, zooming clip, a rotated one and the news clip stay one shot
    extract([clips["two"], clips["portrait"]], tmp_path / "one", FAST, workers=0, progress=False)
    assert set(read_table(tmp_path / "one", "faces", FACES_SCHEMA, columns=["shot_id"])["shot_id"].to_pylist()) == {0}
    off = extract([joined_clip], tmp_path / "off", replace(FAST, every=5, cut_threshold=0), workers=0, progress=False)
    assert off.n_ok == 1
    assert set(read_table(tmp_path / "off", "faces", FACES_SCHEMA, columns=["shot_id"])["shot_id"].to_pylist()) == {0}
    shown = runner.invoke(app, ["info", str(tmp_path / "ds")])
    assert shown.exit_code == 0 and "3 (1 video(s) with cuts)" in shown.output
