"""DoveNet: the model's shapes and size, self-supervised training on real faces, exact
resume from weights_only checkpoints, and harmonization that leaves the frame alone."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dfpipe.manifests.codec import encode_image, read_image_file
from dfpipe.manifests.parts import write_rows
from dfpipe.manifests.schema import FACES_SCHEMA
from dfpipe.models.dovenet import DoveNetConfig, DoveNetGenerator, build_dovenet
from dfpipe.models.registry import count_parameters, create_model
from dfpipe.pipeline.faces.align import align_matrix, warp_crop
from dfpipe.pipeline.masks.facemask import landmark_hull_mask
from dfpipe.train.harmonizer_data import HarmonizationDataset, load_faces, split_by_video

torch.set_num_threads(min(2, int(os.environ.get("OMP_NUM_THREADS", "2"))))

PHOTOS = ["fr_biden2.jpg", "fr_obama_small.jpg", "fr_two_people.jpg", "fr_rose_leslie1.jpg", "fr_john1.jpeg"]
CROP = 128


def _public_domain() -> dict[str, np.ndarray]:
    import matplotlib.cbook
    import skimage.data

    hopper = str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": read_image_file(hopper)}


@pytest.fixture(scope="module")
def faces_ds(tmp_path_factory, faces_dir, retinaface_weights) -> Path:
    """A faces/ table of aligned real crops: one 'video' per photo, landmarks, no masks."""
    from dfpipe.pipeline.faces.detect import FaceDetector

    images = {p: read_image_file(str(faces_dir / p)) for p in PHOTOS}
    images.update(_public_domain())
    detector = FaceDetector(weights=retinaface_weights, max_side=640)
    root = tmp_path_factory.mktemp("harm") / "ds"
    for (name, img), det in zip(images.items(), detector.detect(list(images.values()))):
        vid = hashlib.sha1(name.encode()).hexdigest()[:16]
        rows = []
        for k in range(len(det)):
            m = align_matrix(det.landmarks[k], CROP)
            rows.append({"face_id": f"{vid}-{k}", "video_id": vid, "frame_index": 0, "track_id": k,
                         "landmarks": det.landmarks[k].reshape(-1).tolist(), "matrix": m.reshape(-1).tolist(),
                         "crop": "align", "size": CROP, "image_format": "png",
                         "image": encode_image(warp_crop(img, m, CROP)), "label": "real"})
        write_rows(root, "faces", vid, rows, FACES_SCHEMA)
    return root


# --------------------------------------------------------------------------- model


def test_default_generator_has_paper_size():
    n = count_parameters(DoveNetGenerator())  # the default config's generator
    assert abs(n - 54.8e6) / 54.8e6 < 0.02, n
    assert DoveNetConfig().img_size == 256


def test_registry_builds_the_tiny_config_and_reports_its_size():
    model = create_model("dovenet", tiny=True)
    counts = model.param_counts()
    assert counts["generator"] == count_parameters(model.generator) < 3e6
    assert model.default_cfg["input_size"] == (4, 64, 64)
    assert f"generator={counts['generator'] / 1e6:.2f}M" in model.extra_repr()


def test_tiny_shapes_and_backward():
    torch.manual_seed(0)
    model = create_model("dovenet", tiny=True)
    s = model.cfg.img_size
    comp = torch.rand(2, 3, s, s) * 2 - 1
    mask = torch.zeros(2, 1, s, s)
    mask[:, :, s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = 1
    out = model(comp, mask)
    assert out.shape == comp.shape and out.abs().max() <= 1
    assert torch.equal(out[mask.expand_as(out) == 0], comp[mask.expand_as(comp) == 0])  # background kept
    g, d = model.global_d(out, mask), model.domain_d(out, mask)
    assert g.shape == (2,) and d.shape == (2,)
    (g.mean() + d.mean() + out.mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_paper_generator_is_not_residual_and_sizes_must_fit():
    assert DoveNetConfig().residual is False
    with pytest.raises(ValueError, match="divisible"):
        build_dovenet(img_size=128)
    with pytest.raises(ValueError, match="no published"):
        create_model("dovenet", pretrained=True)


# --------------------------------------------------------------------------- data


def test_composites_recolour_only_the_mask(faces_ds):
    items, report = load_faces(faces_ds)
    assert report.n_rows == len(items) >= 7 and report.n_no_mask == 0
    train, val = split_by_video(items, 0.2, seed=0)
    assert not {items[i].video_id for i in train} & {items[i].video_id for i in val}
    data = HarmonizationDataset(items, train, 64, train=False, seed=0)
    changed_inside = 0
    for i in range(len(data)):
        s = data.sample(i)
        outside = s["mask"] == 0
        assert np.array_equal(s["composite"][outside], s["real"][outside])
        changed_inside += np.abs(s["composite"].astype(int) - s["real"].astype(int))[~outside].mean() > 2
    assert changed_inside >= len(data) - 1
    # validation composites are fixed
    assert np.array_equal(data.sample(0)["composite"], data.sample(0)["composite"])


# --------------------------------------------------------------------------- training


def test_training_steps_lower_l1_on_real_faces(faces_ds):
    from dfpipe.train.harmonizer_train import HarmonizerTrainer

    torch.manual_seed(0)
    items, _ = load_faces(faces_ds)
    data = HarmonizationDataset(items, list(range(len(items))), 64, train=False, seed=1)
    batch = {k: torch.stack([data[i][k] for i in range(4)]) for k in ("composite", "real", "mask")}
    # the paper's (non-residual) generator, which starts far from the target
    trainer = HarmonizerTrainer(build_dovenet(tiny=True, residual=False), torch.device("cpu"))
    l1 = [trainer.step(batch)["l1"] for _ in range(10)]
    assert np.mean(l1[-3:]) < 0.9 * l1[0], l1


@pytest.mark.slow
def test_resume_equals_uninterrupted_and_checkpoints_are_weights_only(faces_ds, tmp_path):
    from dfpipe.cli.main import app
    from dfpipe.train.harmonizer_train import train_harmonizer

    kw = dict(size=64, tiny=True, device="cpu", batch_size=4, seed=3, progress=False)
    straight = train_harmonizer(faces_ds, tmp_path / "a", epochs=2, **kw)
    assert straight.epochs_done == 2 and straight.best_epoch in (1, 2)
    # first epoch through the CLI, second as a resumed run
    res = CliRunner().invoke(app, ["train-harmonizer", str(faces_ds), "--out", str(tmp_path / "b"), "--size", "64",
                                   "--epochs", "1", "--tiny", "--device", "cpu", "--batch-size", "4", "--seed", "3",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "held-out fMSE" in res.output
    resumed = train_harmonizer(faces_ds, tmp_path / "b", epochs=2, **kw)
    assert resumed.epochs_done == 2

    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] > 0
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)
    assert a["history"] == b["history"]
    best = torch.load(tmp_path / "a" / "best.pt", weights_only=True)
    assert set(best["metrics"]) >= {"mse", "psnr", "fmse", "fmse_composite", "fmse_rct"}
    assert (tmp_path / "a" / "metrics.csv").read_text().count("\n") == 3
    assert (tmp_path / "a" / "samples" / "epoch_0002.png").stat().st_size > 0
    assert any((tmp_path / "a" / "tb").iterdir())

    # a different setting in the same folder is refused, not silently mixed
    res = CliRunner().invoke(app, ["train-harmonizer", str(faces_ds), "--out", str(tmp_path / "b"), "--size", "128",
                                   "--epochs", "3", "--tiny", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 2 and "written with" in " ".join(res.output.split())


def test_cli_rejects_a_missing_dataset(tmp_path):
    from dfpipe.cli.main import app

    res = CliRunner().invoke(app, ["train-harmonizer", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                                   "--tiny", "--size", "64"])
    assert res.exit_code == 2 and "no faces/ table" in " ".join(res.output.split())


# --------------------------------------------------------------------------- inference


def test_harmonize_changes_only_masked_pixels(tmp_path, detector):
    from dfpipe.pipeline.synth.harmonize import Harmonizer
    from dfpipe.runtime.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_dovenet(tiny=True, residual=False)  # a random non-identity generator
    save_checkpoint({"model_name": "dovenet", "config": model.config_dict(),
                     "generator": model.generator.state_dict()}, tmp_path / "best.pt")
    harm = Harmonizer.from_checkpoint(tmp_path / "best.pt", "cpu", batch_size=2)

    faces = _public_domain()
    images, masks = [], []
    for img, det in zip(faces.values(), detector.detect(list(faces.values()))):
        images.append(img)
        masks.append(landmark_hull_mask(det.landmarks[0], img.shape))
    # a face at the image border (window partly outside) and a soft float mask
    images.append(images[0][:, 100:].copy())
    masks.append(masks[0][:, 100:].astype(np.float32) / 255.0)
    empty = np.zeros_like(masks[1])
    images.append(images[1])
    masks.append(empty)

    outs = harm.harmonize(images, masks)
    assert len(outs) == len(images)
    for img, m, out in zip(images, masks, outs):
        assert out.shape == img.shape and out.dtype == np.uint8
        outside = np.asarray(m) == 0
        assert np.array_equal(out[outside], img[outside])
    for img, m, out in zip(images[:3], masks[:3], outs[:3]):
        inside = np.asarray(m) > 0.5
        assert np.abs(out[inside].astype(int) - img[inside].astype(int)).mean() > 1.0
    assert np.array_equal(outs[-1], images[-1])
    with pytest.raises(ValueError, match="masks"):
        harm.harmonize(images[:1], [])


def test_only_a_dovenet_checkpoint_loads_and_files_appear_whole(tmp_path):
    from dfpipe.models.dovenet import dovenet_from_checkpoint
    from dfpipe.runtime.checkpoint import CheckpointError, save_checkpoint

    path = save_checkpoint({"model_name": "m2tr", "model_kwargs": {}, "model": {}}, tmp_path / "detector.pt")
    with pytest.raises(CheckpointError, match="not a DoveNet harmonizer"):
        dovenet_from_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        dovenet_from_checkpoint(tmp_path / "junk.pt")
    assert path.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".tmp-*"))
