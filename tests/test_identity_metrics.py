"""Identity, pose, expression and seam metrics on real faces.

The dlib descriptor on the shared photos (same person < 0.6 < different people), then
score-quality end to end on two real-data datasets: the shared FF++ NeuralTextures pair (a
reenactment: same person, mouth changed) and crude face swaps made here from the FF++ real
clip and a photo of another person (his face pasted on every frame, once blended with
Poisson cloning and once pasted hard, so the seam shows).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import need_weights
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.manifests.codec import decode_image, decode_mask
from dfpipe.manifests.parts import part_path, read_table
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.models.face_descriptor import SAME_PERSON, DlibMissingError, FaceDescriptor, descriptor_distance
from dfpipe.pipeline.quality import QualityConfig, read_quality, score_quality
from dfpipe.pipeline.quality.geometry import angle_difference, expression_error, pose_error, seam_score
from dfpipe.pipeline.quality.stage import usable_config
from dfpipe.runtime.weights import WeightsError

pytestmark = pytest.mark.slow
runner = CliRunner()
FACE_METRICS = ("mask_ssim", "ewarp", "identity", "pose", "expression", "seam")


@pytest.fixture(scope="module")
def descriptor() -> FaceDescriptor:
    need_weights("dlib_face_recognition")
    need_weights("dlib_shape_predictor_5")
    return FaceDescriptor()


def _describe_photo(descriptor, detector, photo, name: str) -> np.ndarray:
    """Descriptors of every face RetinaFace finds in a shared photo, left to right."""
    image = photo(name)[..., :3]
    boxes = detector.detect([image])[0].boxes
    boxes = boxes[np.argsort(boxes[:, 0])]
    return descriptor.describe(image, boxes)


# ----------------------------------------------------------------------------- the descriptor


def test_descriptor_same_person_close_different_people_far(descriptor, detector, photo):
    rose1, rose2 = (_describe_photo(descriptor, detector, photo, f"fr_rose_leslie{i}.jpg") for i in (1, 2))
    biden, obama = (_describe_photo(descriptor, detector, photo, n) for n in ("fr_biden2.jpg", "fr_obama_small.jpg"))
    pair = _describe_photo(descriptor, detector, photo, "fr_two_people.jpg")  # Obama left, Biden right
    assert rose1.shape == (1, 128) and rose1.dtype == np.float32 and pair.shape == (2, 128)
    assert descriptor_distance(rose1[0], rose2[0]) < SAME_PERSON
    assert descriptor_distance(biden[0], obama[0]) > SAME_PERSON
    assert descriptor_distance(pair[0], pair[1]) > SAME_PERSON
    assert descriptor_distance(pair[0], obama[0]) < SAME_PERSON < descriptor_distance(pair[0], biden[0])
    assert descriptor_distance(pair[1], biden[0]) < SAME_PERSON < descriptor_distance(pair[1], obama[0])
    # broadcast: one descriptor against many
    many = descriptor_distance(rose1[0], np.concatenate([rose2, biden, obama]))
    assert many.shape == (3,) and many[0] < SAME_PERSON < many[1:].min()


def test_descriptor_of_no_box_and_bad_input(descriptor, photo):
    assert descriptor.describe(photo("fr_obama_small.jpg")[..., :3], np.zeros((0, 4))).shape == (0, 128)
    with pytest.raises(ValueError, match="RGB"):
        descriptor.describe(np.zeros((40, 40), np.uint8), np.array([[0, 0, 20, 20]]))


def test_missing_dlib_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` fails as when not installed
    with pytest.raises(DlibMissingError, match="pip install dlib-bin"):
        FaceDescriptor()


# ----------------------------------------------------------------------------- geometry functions


def test_angle_difference_wraps():
    assert angle_difference(179.0, -179.0) == pytest.approx(2.0)
    assert pose_error((10.0, 0.0, 0.0), (-10.0, 0.0, 0.0)) == pytest.approx(20 / 3)
    assert pose_error((10.0, None, 0.0), (0.0, 0.0, 0.0)) is None


# ----------------------------------------------------------------------------- datasets


def _build(root: Path, entries: list[dict]) -> Path:
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest
    from dfpipe.pipeline.masks import masks

    listing = root / "list.json"
    listing.write_text(json.dumps(entries))
    ds = root / "ds"
    ingest("list", listing, ds)
    assert extract([ds], None, ExtractConfig(count=6, size=192), workers=0, progress=False).n_ok == len(entries)
    assert masks(ds, workers=0, progress=False).n_ok == sum(e["label"] == "fake" for e in entries)
    return ds


@pytest.fixture(scope="module")
def nt_dataset(tmp_path_factory, real_video, fake_video, retinaface_weights) -> Path:
    """The FF++ pair, scored with the face metrics."""
    ds = _build(tmp_path_factory.mktemp("nt"), [
        {"path": str(real_video), "label": "real", "dataset": "ff++"},
        {"path": str(fake_video), "label": "fake", "source": str(real_video), "method": "NeuralTextures", "dataset": "ff++"},
    ])
    assert score_quality(ds, QualityConfig(metrics=FACE_METRICS), workers=0, progress=False).n_ok == 2
    return ds


def _paste_swaps(frames: list[np.ndarray], donor: np.ndarray, detector) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The donor's inner face (an ellipse over eyes, nose and mouth) moved onto each frame's
    face by the 5-landmark similarity: Poisson-blended, and pasted hard (a visible seam)."""
    lm = detector.detect([donor])[0].landmarks[0]
    eyes, mouth = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
    centre = (eyes + mouth) / 2
    axes = (int(0.95 * np.linalg.norm(lm[1] - lm[0])), int(1.45 * np.linalg.norm(mouth - eyes)))
    ellipse = cv2.ellipse(np.zeros(donor.shape[:2], np.uint8), (int(centre[0]), int(centre[1])), axes, 0, 0, 360, 255, -1)
    soft, hard = [], []
    for frame, det in zip(frames, detector.detect(frames)):
        m, _ = cv2.estimateAffinePartial2D(lm, det.landmarks[0], method=cv2.LMEDS)
        size = (frame.shape[1], frame.shape[0])
        face = cv2.warpAffine(donor, m, size)
        mask = cv2.warpAffine(ellipse, m, size, flags=cv2.INTER_NEAREST)
        hard.append(np.where(mask[..., None] > 127, face, frame).astype(np.uint8))
        ys, xs = np.nonzero(mask)
        soft.append(cv2.seamlessClone(face, frame.copy(), mask, (int(xs.mean()), int(ys.mean())), cv2.NORMAL_CLONE))
    return soft, hard


@pytest.fixture(scope="module")
def swap_dataset(tmp_path_factory, real_video, photo, detector) -> Path:
    """40 frames of the FF++ real video, a still video of another person's photo (the donor),
    and two swaps of the donor's face onto the clip (blended / hard)."""
    from dfpipe.pipeline.quality.frames import frames_at
    from dfpipe.pipeline.video.probe import probe
    from dfpipe.pipeline.video.writing import write_video

    root = tmp_path_factory.mktemp("swap")
    fps = probe(real_video).fps
    frames = [f for _, f in frames_at(real_video, set(range(40)))]
    donor = cv2.resize(photo("fr_biden2.jpg")[..., :3], (600, 600), interpolation=cv2.INTER_AREA)
    soft, hard = _paste_swaps(frames, donor, detector)
    paths = {name: root / f"{name}.mp4" for name in ("real", "donor", "blended", "hard")}
    for name, video in (("real", frames), ("donor", [donor] * 40), ("blended", soft), ("hard", hard)):
        write_video(video, paths[name], fps, crf=10, preset="ultrafast")
    fake = dict(label="fake", source=str(paths["real"]), target=str(paths["donor"]), method="swap")
    ds = _build(root, [
        {"path": str(paths["real"]), "label": "real"}, {"path": str(paths["donor"]), "label": "real"},
        {"path": str(paths["blended"]), **fake, "compression": "blended"},
        {"path": str(paths["hard"]), **fake, "compression": "hard"},
    ])
    assert score_quality(ds, QualityConfig(metrics=FACE_METRICS), workers=0, progress=False).n_ok == 4
    return ds


def _faces_of(ds: Path, label: str) -> list[dict]:
    vid = next(v["video_id"] for v in read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist() if v["label"] == label)
    return sorted(pq.read_table(part_path(ds, "faces", vid), schema=FACES_SCHEMA).to_pylist(), key=lambda r: r["frame_index"])


# ----------------------------------------------------------------------------- reenactment


def test_neuraltextures_keeps_identity_and_pose(nt_dataset):
    frames, videos = read_quality(nt_dataset)
    fake = frames[frames.label == "fake"]
    real = frames[frames.label == "real"]
    assert len(fake) == 6
    assert (fake.id_to_target < SAME_PERSON).all()  # a reenactment keeps the person
    assert fake.id_to_source.isna().all()  # no donor in the dataset
    assert (fake.pose_error < 5).all() and (fake.pose_error >= 0).all()
    assert fake.expression_error.isna().all()  # reenactment: the donor's frame is the reference, absent here
    assert np.isfinite(fake.seam).all() and (fake.seam > 0.5).all()
    assert real[["id_to_target", "pose_error", "seam"]].isna().all().all()  # a real is nobody's fake
    v = videos.set_index("label")
    assert v.loc["fake", "id_retrieval"] is None or np.isnan(v.loc["fake", "id_retrieval"])  # one identity: no choice
    assert "identity" in v.loc["fake", "metrics"]


def test_neuraltextures_changes_the_expression_not_the_head(nt_dataset):
    """Mesh of the NT face against the real face of the same frame: larger than real against
    itself (0) and than real against a rotated, scaled, moved copy of itself (pose only)."""
    fakes, reals = _faces_of(nt_dataset, "fake"), _faces_of(nt_dataset, "real")
    for fake, real in zip(fakes, reals):
        mesh = np.asarray(real["mesh"]).reshape(-1, 3)
        angle = np.deg2rad(25)
        rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
        moved = 1.7 * mesh @ rot.T + [40, -12, 5]
        assert expression_error(mesh, mesh) == pytest.approx(0, abs=1e-9)
        assert expression_error(moved, mesh) == pytest.approx(0, abs=1e-6)
        assert expression_error(fake["mesh"], real["mesh"]) > 1e-3


def test_reenactment_expression_is_measured_against_the_donor(nt_dataset):
    """With a donor in the dataset, a reenactment's expression reference is the donor's face
    of the same frame: here the real video itself named as donor, so the error equals the
    mesh distance of fake and real of the same frame."""
    from dfpipe.pipeline.quality.score import score_video

    videos = {v["label"]: v for v in read_table(nt_dataset, "videos", VIDEOS_SCHEMA).to_pylist()}
    fake, real = dict(videos["fake"], target_video_id=videos["real"]["video_id"]), videos["real"]
    rows, row = score_video(nt_dataset, fake, real, QualityConfig(metrics=("expression", "pose")))
    by_frame = {r["frame_index"]: r for r in _faces_of(nt_dataset, "real")}
    for r, face in zip(rows, _faces_of(nt_dataset, "fake")):
        assert r["expression_error"] == pytest.approx(expression_error(face["mesh"], by_frame[r["frame_index"]]["mesh"]))
    assert row["expression_error"] > 1e-3 and row["pose_error"] < 5 and row["id_retrieval"] is None


def test_same_person_across_the_real_video(nt_dataset, descriptor):
    """Every frame of the FF++ real video is the same person as the video's identity."""
    from dfpipe.pipeline.quality.identity import describe_rows

    vectors = np.stack(describe_rows(_faces_of(nt_dataset, "real")))
    to_mean = descriptor_distance(vectors, vectors.mean(0))
    assert (to_mean < SAME_PERSON).all()
    pairwise = descriptor_distance(vectors[:, None], vectors[None])
    assert np.median(pairwise[np.triu_indices(len(vectors), 1)]) < SAME_PERSON


# ----------------------------------------------------------------------------- swaps


def test_swap_shows_the_donor_and_the_hard_paste_shows_its_seam(swap_dataset):
    frames, videos = read_quality(swap_dataset)
    fake = frames[frames.label == "fake"]
    assert len(fake) == 12
    assert (fake.id_to_source < SAME_PERSON).all() and (fake.id_to_target > SAME_PERSON).all()
    donor_id = next(v["video_id"] for v in read_table(swap_dataset, "videos", VIDEOS_SCHEMA).to_pylist()
                    if v["path"].endswith("donor.mp4"))
    assert (fake.id_nearest == donor_id).all()
    v = videos[videos.label == "fake"].set_index("compression")
    assert (v.id_retrieval == 1.0).all()
    # a still frontal photo on a moving head: more pose and expression error than NT's reenactment
    assert (v.expression_error > 0.02).all() and (v.pose_error > 2).all()
    assert v.loc["hard", "seam"] > 1.5 > v.loc["blended", "seam"] > 0.7


def test_seam_score_on_crops(swap_dataset):
    """On the stored crops: a crop against itself scores 1; the hard paste's crop scores more
    than the blended one's on the same frame, with the same mask."""
    hard = {r["frame_index"]: r for r in _faces_of_fake(swap_dataset, "hard")}
    blended = {r["frame_index"]: r for r in _faces_of_fake(swap_dataset, "blended")}
    real = {r["frame_index"]: r for r in _faces_of(swap_dataset, "real") if r["frame_index"] in hard}
    for index, r in real.items():
        mask = decode_mask(hard[index]["mask"])
        real_crop = decode_image(r["image"])
        assert seam_score(real_crop, real_crop, mask) == pytest.approx(1.0)
        assert seam_score(decode_image(hard[index]["image"]), real_crop, mask) > \
            seam_score(decode_image(blended[index]["image"]), real_crop, mask)
    assert seam_score(real_crop, real_crop, None) is None
    assert seam_score(real_crop, real_crop, np.zeros(real_crop.shape[:2], np.uint8)) is None


def _faces_of_fake(ds: Path, compression: str) -> list[dict]:
    vid = next(v["video_id"] for v in read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist() if v["compression"] == compression)
    return pq.read_table(part_path(ds, "faces", vid), schema=FACES_SCHEMA).to_pylist()


def test_report_shows_face_metrics_and_samples(swap_dataset, tmp_path):
    from dfpipe.pipeline.quality.report import summary_table, write_report

    table = summary_table(read_quality(swap_dataset)[1])
    assert {"id_to_source", "id_to_target", "id_retrieval", "pose_error", "expression_error", "seam"} <= set(table.columns)
    report = write_report(swap_dataset, tmp_path / "q.html")
    text = report.read_text()
    assert "Samples: swap" in text and text.count("data:image/png;base64,") == 3
    assert (tmp_path / "q_plots" / "box_seam_compression.png").is_file()


# ----------------------------------------------------------------------------- missing pieces


def test_missing_dlib_files_skip_identity_by_default_and_fail_when_named(nt_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("DFPIPE_WEIGHTS_DIR", str(tmp_path))  # no weights at all, offline
    monkeypatch.setenv("DFPIPE_HOME", str(tmp_path / "home"))
    config, notes = usable_config(QualityConfig())
    assert "identity" not in config.metrics and "pose" in config.metrics
    assert "lpips" not in config.metrics and "mask_ssim" in config.metrics  # VGG-16 absent offline too
    assert len(notes) == 2 and "dlib_face_recognition_resnet_model_v1.dat" in notes[0]
    assert notes[1].startswith("lpips skipped") and "no pinned hash" not in notes[1]
    with pytest.raises(WeightsError):  # named, it is required
        usable_config(QualityConfig(metrics=("lpips", "pose")))
    with pytest.raises(WeightsError, match="dlib"):
        usable_config(QualityConfig(metrics=("identity", "pose")))
    result = runner.invoke(app, ["score-quality", str(nt_dataset), "--metrics", "identity,pose", "--redo", "--workers", "0"])
    assert result.exit_code == 2
    assert "dlib_face_recognition_resnet_model_v1.dat" in result.output and "--metrics pose" in result.output
    assert read_quality(nt_dataset)[1].metrics.str.contains("identity").all()  # refused before any work


def test_no_dlib_skips_identity_by_default(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    config, notes = usable_config(QualityConfig())
    assert "identity" not in config.metrics and "pip install dlib-bin" in notes[0]
    with pytest.raises(DlibMissingError):
        usable_config(QualityConfig(metrics=("identity",)))
