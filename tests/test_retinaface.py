"""RetinaFace model: the published weights load strictly, priors and decoding follow the
spec, the ResNet-50 variant keeps Pytorch_Retinaface's key names, and missing weights give
a clear error."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from dfpipe.models.registry import count_parameters, create_model, list_models
from dfpipe.models.retinaface import (
    CONFIGS,
    build_retinaface,
    decode_boxes,
    decode_landmarks,
    load_state_dict_file,
    prior_boxes,
)
from dfpipe.runtime.weights import WeightsError


@pytest.fixture(scope="module")
def mobilenet(retinaface_weights) -> torch.nn.Module:
    return create_model("retinaface_mobilenet0.25", pretrained=True)


def test_both_variants_registered():
    assert {"retinaface_mobilenet0.25", "retinaface_resnet50"} <= set(list_models())


def test_published_weights_load_strictly(retinaface_weights, mobilenet):
    state = load_state_dict_file(retinaface_weights)
    assert len(state) == 300
    assert sum(t.numel() for t in state.values()) == 433_343  # every tensor, BN statistics included
    result = build_retinaface("mobilenet0.25").load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert count_parameters(mobilenet) == sum(t.numel() for k, t in state.items() if "running" not in k
                                              and "num_batches" not in k)
    ours = mobilenet.state_dict()
    assert set(ours) == set(state)
    for key in ("body.stage1.0.0.weight", "fpn.merge1.1.running_var", "LandmarkHead.2.conv1x1.bias"):
        assert torch.equal(ours[key], state[key])
    assert not mobilenet.training


def test_module_prefix_is_stripped(retinaface_weights, tmp_path):
    state = load_state_dict_file(retinaface_weights)
    wrapped = tmp_path / "dataparallel.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, wrapped)
    unwrapped = load_state_dict_file(wrapped)
    assert set(unwrapped) == set(state)
    build_retinaface("mobilenet0.25").load_state_dict(unwrapped, strict=True)


@pytest.mark.parametrize("height,width", [(97, 130), (640, 360)])
def test_priors_match_head_layout(mobilenet, height, width):
    cfg = CONFIGS["mobilenet0.25"]
    priors = prior_boxes(cfg, height, width)
    expected = sum(math.ceil(height / s) * math.ceil(width / s) * 2 for s in cfg.steps)
    assert priors.shape == (expected, 4)
    with torch.inference_mode():
        loc, logits, landm = mobilenet(torch.zeros(1, 3, height, width))
    assert loc.shape == (1, expected, 4) and logits.shape == (1, expected, 2) and landm.shape == (1, expected, 10)
    # first cell of the finest level: both anchor sizes at the same centre
    step = cfg.steps[0]
    centre = [0.5 * step / width, 0.5 * step / height]
    torch.testing.assert_close(priors[0], torch.tensor([*centre, 16 / width, 16 / height]))
    torch.testing.assert_close(priors[1], torch.tensor([*centre, 32 / width, 32 / height]))
    # second cell moves right by one step
    torch.testing.assert_close(priors[2, :2], torch.tensor([1.5 * step / width, centre[1]]))
    # the coarsest level ends in the bottom-right cell with the biggest anchor
    last_h, last_w = math.ceil(height / 32), math.ceil(width / 32)
    torch.testing.assert_close(
        priors[-1], torch.tensor([(last_w - 0.5) * 32 / width, (last_h - 0.5) * 32 / height, 512 / width, 512 / height])
    )
    assert prior_boxes(cfg, height, width) is priors  # cached per input size


def test_decoding_inverts_the_box_encoding():
    """Encode known boxes and points against random priors (the inverse of the spec's
    decoding), then decode: the boxes and points must come back."""
    gen = torch.Generator().manual_seed(0)
    var = CONFIGS["mobilenet0.25"].variance
    priors = torch.cat([torch.rand(50, 2, generator=gen), 0.05 + 0.3 * torch.rand(50, 2, generator=gen)], 1)
    centre = torch.rand(50, 2, generator=gen)
    size = 0.05 + 0.5 * torch.rand(50, 2, generator=gen)
    points = torch.rand(50, 5, 2, generator=gen)
    loc = torch.cat([(centre - priors[:, :2]) / (var[0] * priors[:, 2:]), torch.log(size / priors[:, 2:]) / var[1]], 1)
    landm = ((points - priors[:, None, :2]) / (var[0] * priors[:, None, 2:])).reshape(50, 10)
    torch.testing.assert_close(decode_boxes(loc, priors, var), torch.cat([centre - size / 2, centre + size / 2], 1))
    torch.testing.assert_close(decode_landmarks(landm, priors, var), points)


def test_resnet50_variant_has_pytorch_retinaface_keys(mobilenet):
    model = create_model("retinaface_resnet50")  # random init: its weights are not pinned here
    keys = model.state_dict()
    body = {k for k in keys if k.startswith("body.")}
    resnet = torchvision.models.resnet50(weights=None).state_dict()
    assert body == {f"body.{k}" for k in resnet if not k.startswith("fc.")}
    # the neck and heads carry exactly the mobilenet0.25 names, only wider
    assert set(keys) - body == {k for k in mobilenet.state_dict() if not k.startswith("body.")}
    assert keys["fpn.output1.0.weight"].shape == (256, 512, 1, 1)
    assert keys["fpn.output3.0.weight"].shape == (256, 2048, 1, 1)
    assert keys["ssh1.conv3X3.0.weight"].shape == (128, 256, 3, 3)
    assert keys["LandmarkHead.0.conv1x1.weight"].shape == (20, 256, 1, 1)
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.0}
    # its own state dict round-trips strictly, and a forward pass matches the priors
    create_model("retinaface_resnet50").load_state_dict(keys, strict=True)
    with torch.inference_mode():
        loc, _, _ = model(torch.zeros(1, 3, 64, 96))
    assert loc.shape[1] == prior_boxes(model.cfg, 64, 96).shape[0]


def test_mobilenet_neck_uses_slope_01(mobilenet):
    slopes = {m.negative_slope for m in mobilenet.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.1}


def test_missing_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DFPIPE_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("DFPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DFPIPE_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        create_model("retinaface_mobilenet0.25", pretrained=True)
    message = str(err.value)
    assert "mobilenet0.25_Final.pth" in message
    assert "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220" in message
    assert "--weights" in message
    with pytest.raises(WeightsError, match="Resnet50_Final.pth"):
        create_model("retinaface_resnet50", pretrained=True)
    with pytest.raises(WeightsError, match="no such file"):
        create_model("retinaface_mobilenet0.25", weights=tmp_path / "nope.pth")


def test_wrong_weights_file_is_refused(tmp_path):
    """A file that is not the pinned one is refused by its hash before anything is loaded."""
    other = tmp_path / "other.pth"
    torch.save(build_retinaface("mobilenet0.25").state_dict(), other)
    with pytest.raises(WeightsError, match="sha256"):
        build_retinaface("mobilenet0.25", weights=other)


def test_weights_record_gives_the_files_real_hash(retinaface_weights, tmp_path):
    """What run.json records: the pinned file's hash (known once verified) and an unpinned
    file's own hash, each the sha256 of the bytes."""
    from dfpipe.runtime.weights import sha256_of, weights_record

    assert weights_record("retinaface_mobilenet0.25", retinaface_weights) == {
        "mobilenet0.25_Final.pth": sha256_of(retinaface_weights)}
    mine = tmp_path / "mine.pth"
    mine.write_bytes(b"some resnet weights")
    assert weights_record("retinaface_resnet50", mine) == {"mine.pth": sha256_of(mine)}


def test_detect_on_a_real_photo(mobilenet, faces_dir):
    from dfpipe.manifests.codec import read_image_file

    image = read_image_file(str(faces_dir / "fr_obama_small.jpg"))
    raw = mobilenet.detect(mobilenet.preprocess(image[None]), score_threshold=0.8)
    assert len(raw) == 1 and raw[0].boxes.shape == (1, 4) and raw[0].landmarks.shape == (1, 5, 2)
    assert raw[0].scores[0] > 0.9
    x1, y1, x2, y2 = raw[0].boxes[0].tolist()
    h, w = image.shape[:2]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and (x2 - x1) > w / 5
    # unsorted scores in, highest first out: a lower threshold keeps the face first
    low = mobilenet.detect(mobilenet.preprocess(image[None]), score_threshold=0.02)[0]
    assert torch.all(low.scores[:-1] >= low.scores[1:])
    torch.testing.assert_close(low.boxes[0], raw[0].boxes[0])


@pytest.mark.parametrize("photo", ["fr_two_people.jpg", "prf_test_crowd.jpg", "fd1mb_kids_group.jpg"])
def test_weak_faces_are_counted_without_changing_the_kept_ones(mobilenet, faces_dir, photo):
    """`weak_floor` counts the faces between it and the threshold as NMS over all of them
    would keep them, and leaves the faces over the threshold exactly as they were."""
    from dfpipe.manifests.codec import read_image_file

    x = mobilenet.preprocess(read_image_file(str(faces_dir / photo))[None])
    plain = mobilenet.detect(x, score_threshold=0.8)[0]
    counted = mobilenet.detect(x, score_threshold=0.8, weak_floor=0.3)[0]
    everything = mobilenet.detect(x, score_threshold=0.3)[0]
    assert plain.n_weak == 0
    torch.testing.assert_close(counted.boxes, plain.boxes, rtol=0, atol=0)
    torch.testing.assert_close(counted.scores, plain.scores, rtol=0, atol=0)
    assert len(counted.scores) + counted.n_weak == len(everything.scores)
    assert counted.n_weak == int(((everything.scores > 0.3) & (everything.scores <= 0.8)).sum())


def test_nms_matches_torchvision():
    from dfpipe.models.retinaface import nms

    gen = torch.Generator().manual_seed(0)
    for n in (0, 1, 5, 200):
        xy = torch.rand(n, 2, generator=gen) * 100
        boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=gen) * 40], dim=1)
        scores = torch.rand(n, generator=gen)
        for threshold in (0.3, 0.4, 0.7):
            assert torch.equal(nms(boxes, scores, threshold), torchvision.ops.nms(boxes, scores, threshold))
