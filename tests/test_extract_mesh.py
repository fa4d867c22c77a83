"""Extract with the face mesh: mesh, pose, sharpness and quality flags per face, on the
shared FF++ clip and on clips made from it with ffmpeg (blurred, shrunk)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.manifests.ids import video_content_id
from dfpipe.manifests.info import info
from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACE_FLAGS, FACES_SCHEMA
from dfpipe.manifests.validate import validate
from dfpipe.pipeline.faces import ExtractConfig, VideoJob, extract, extract_video
from dfpipe.pipeline.faces.align import RIGID_MESH_POINTS

runner = CliRunner()
CONFIG = ExtractConfig(every=15, size=192)


def _faces(root: Path):
    cols = [c for c in FACES_SCHEMA.names if c not in ("image", "mask")]
    return read_table(root, "faces", FACES_SCHEMA, columns=cols).to_pandas().sort_values(["video_id", "frame_index"])


@pytest.fixture(scope="module")
def news(real_video, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mesh") / "ds"
    extract([real_video], root, CONFIG, workers=0, progress=False)
    return root


@pytest.fixture(scope="module")
def degraded(real_video, tmp_path_factory) -> dict[str, Path]:
    """Two seconds of the news clip blurred (gblur sigma 6) and shrunk to 256 x 144."""
    from dfpipe.pipeline.video.writing import run_ffmpeg

    d = tmp_path_factory.mktemp("degraded")
    out = {"blurred": d / "blurred.mp4", "tiny": d / "tiny.mp4"}
    for name, vf in (("blurred", "gblur=sigma=6"), ("tiny", "scale=256:144")):
        run_ffmpeg(["-i", real_video, "-t", "2", "-vf", vf, "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p",
                    out[name]])
    return out


def test_every_face_has_a_mesh_on_it_and_a_pose(news):
    faces = _faces(news)
    assert len(faces) >= 20
    mesh = np.stack(faces["mesh"]).reshape(len(faces), 468, 3)
    lms = np.stack(faces["landmarks"]).reshape(len(faces), 5, 2)
    side = (faces["x2"] - faces["x1"]).to_numpy()
    # the mesh's eye centres, nose tip and mouth corners sit on RetinaFace's 5 points
    five = np.stack([mesh[:, [33, 133], :2].mean(1), mesh[:, [362, 263], :2].mean(1), mesh[:, 1, :2],
                     mesh[:, 61, :2], mesh[:, 291, :2]], axis=1)
    err = np.linalg.norm(five - lms, axis=-1) / side[:, None]
    assert np.median(err) < 0.04 and err.max() < 0.12
    assert (faces["mesh_score"] > 0.9).all()
    # the newsreader turns his head both ways during the clip; yaw follows the nose's side
    # of the eye midpoint (yaw > 0: turned towards the image's right)
    nose_offset = (lms[:, 2, 0] - lms[:, :2, 0].mean(1)) / side
    turned = np.abs(nose_offset) > 0.05
    assert turned.sum() >= 4
    assert (np.sign(faces["yaw"].to_numpy()[turned]) == np.sign(nose_offset[turned])).all()
    assert faces["yaw"].abs().max() < 60 and faces["roll"].abs().max() < 20
    assert (faces["crop"] == "mesh").all()
    report = validate(news)
    assert report.ok, report.errors


def test_info_counts_pose_bins_and_flags(news):
    d = info(news)
    assert d.n_mesh == d.n_faces > 0
    assert sum(d.by_yaw.values()) == d.n_faces
    assert set(d.flagged) == set(FACE_FLAGS)
    faces = _faces(news)
    assert d.n_flagged == int(faces[list(FACE_FLAGS)].any(axis=1).sum())


def test_flags_mark_blurred_and_tiny_faces(news, degraded, tmp_path):
    clean = _faces(news)
    assert not clean["flag_blurry"].any() and not clean["flag_tiny"].any()
    extract([degraded["blurred"], degraded["tiny"]], tmp_path / "ds", replace(CONFIG, every=5, min_face=20),
            workers=0, progress=False)
    faces = _faces(tmp_path / "ds")
    by_size = faces.groupby(faces["x2"] - faces["x1"] < 64)
    tiny, blurred = by_size.get_group(True), by_size.get_group(False)
    assert blurred["flag_blurry"].mean() > 0.9 and not blurred["flag_tiny"].any()
    assert tiny["flag_tiny"].all()
    assert blurred["sharpness"].median() < clean["sharpness"].median() / 4


def test_the_pose_flag_follows_its_threshold(news, real_video, tmp_path):
    extract([real_video], tmp_path / "ds", replace(CONFIG, flag_pose=10.0), workers=0, progress=False)
    faces = _faces(tmp_path / "ds")
    expected = np.maximum(faces["yaw"].abs(), faces["pitch"].abs()) > 10.0
    assert expected.any() and not expected.all()
    assert (faces["flag_extreme_pose"] == expected).all()


def test_smoothing_steadies_the_mesh_along_the_track(real_video, tmp_path):
    def steps(smooth: int) -> float:
        root = tmp_path / f"s{smooth}"
        extract([real_video], root, replace(CONFIG, every=2, smooth=smooth, count=None), workers=0, progress=False)
        faces = _faces(root)
        mesh = np.stack(faces["mesh"]).reshape(len(faces), 468, 3)[:, list(RIGID_MESH_POINTS), :2]
        # second differences: jitter, not the head's steady motion
        return float(np.linalg.norm(mesh[2:] - 2 * mesh[1:-1] + mesh[:-2], axis=-1).mean())

    assert steps(3) < 0.6 * steps(0)


def test_mesh_none_is_the_five_point_path(real_video, tmp_path):
    result = runner.invoke(app, ["extract", str(real_video), "--out", str(tmp_path / "ds"), "--every", "30",
                                 "--mesh", "none", "--no-progress"])
    assert result.exit_code == 0, result.output
    faces = _faces(tmp_path / "ds")
    assert len(faces) > 5
    assert faces["mesh"].isna().all() and faces["yaw"].isna().all()
    assert (faces["crop"] == "align").all()
    assert faces["flag_low_mesh_score"].isna().all() and faces["flag_blurry"].notna().all()
    assert validate(tmp_path / "ds").ok


def test_a_mesh_crop_without_a_mesh_is_refused(real_video, tmp_path):
    result = runner.invoke(app, ["extract", str(real_video), "--out", str(tmp_path / "ds"), "--mesh", "none",
                                 "--crop", "mesh"])
    assert result.exit_code == 2
    assert "--crop mesh needs the face mesh" in result.output
    assert not (tmp_path / "ds").exists()


def test_a_fake_gets_its_own_mesh_in_its_source_crops(real_video, fake_video, tmp_path):
    real_id = video_content_id(real_video)
    extract_video(VideoJob(real_video, real_id, {"label": "real"}), CONFIG, tmp_path)
    extract_video(VideoJob(fake_video, "fake", {"label": "fake", "source_video_id": real_id}), CONFIG, tmp_path)
    faces = _faces(tmp_path)
    real, fake = faces[faces.video_id == real_id], faces[faces.video_id == "fake"]
    assert len(real) == len(fake) > 5
    assert np.allclose(np.stack(real["matrix"]), np.stack(fake["matrix"]))
    mr = np.stack(real["mesh"]).reshape(-1, 468, 3)[..., :2]
    mf = np.stack(fake["mesh"]).reshape(-1, 468, 3)[..., :2]
    moved = np.linalg.norm(mr - mf, axis=-1).mean(0)
    # NeuralTextures re-renders the mouth: the lips move more than the eye corners
    assert moved[[61, 291, 13, 14]].mean() > moved[[33, 133, 362, 263]].mean()


@pytest.fixture(scope="module")
def stage_clip(real_video, tmp_path_factory) -> Path:
    """Stage-like footage made from the news clip with ffmpeg: a wide shot with a dark
    microphone over the mouth, a cut to a 2x zoom of the same studio (the colours barely
    change), a cut to a small picture on black."""
    from dfpipe.pipeline.video.writing import run_ffmpeg

    out = tmp_path_factory.mktemp("stage") / "stage.mp4"
    graph = ("[0:v]trim=0:2,setpts=PTS-STARTPTS,drawbox=x=775:y=235:w=50:h=120:color=0x202020@1:t=fill[a];"
             "[0:v]trim=4:6,setpts=PTS-STARTPTS,crop=640:360:320:60,scale=1280:720,"
             "drawbox=x=925:y=370:w=90:h=300:color=0x202020@1:t=fill[b];"
             "[0:v]trim=8:10,setpts=PTS-STARTPTS,scale=640:360,pad=1280:720:320:180:black[c];"
             "[a][b][c]concat=n=3:v=1[out]")
    run_ffmpeg(["-i", real_video, "-filter_complex", graph, "-map", "[out]", "-c:v", "libx264", "-crf", "23",
                "-pix_fmt", "yuv420p", out])
    return out


def test_stage_footage_gets_one_shot_per_cut_and_a_mesh_under_the_microphone(stage_clip, tmp_path):
    extract([stage_clip], tmp_path / "ds", replace(CONFIG, every=5), workers=0, progress=False)
    faces = _faces(tmp_path / "ds")
    shots = faces.groupby("shot_id").frame_index.agg(["min", "max"])
    # 50 frames a segment; the zoom cut at frame 50 keeps the colours (histogram distance
    # 0.53, under --cut-threshold) and is found by the face jumping
    assert shots["min"].tolist() == [0, 50, 100] and shots["max"].tolist() == [45, 95, 145]
    assert faces.groupby("track_id").shot_id.nunique().max() == 1
    # the mesh stays on the face behind the microphone: its eye centres on RetinaFace's
    # (the mouth under the microphone is the network's guess; its nose tip sits on the tip,
    # RetinaFace's nose point often higher up the bridge, so neither is compared)
    first = faces[faces.shot_id < 2]
    mesh = np.stack(first["mesh"]).reshape(len(first), 468, 3)
    eyes = np.stack(first["landmarks"]).reshape(len(first), 5, 2)[:, :2]
    mesh_eyes = np.stack([mesh[:, [33, 133], :2].mean(1), mesh[:, [362, 263], :2].mean(1)], axis=1)
    side = (first["x2"] - first["x1"]).to_numpy()
    assert (np.linalg.norm(mesh_eyes - eyes, axis=-1) / side[:, None]).max() < 0.06
    assert (first["mesh_score"] > 0.9).all()
