"""SSIM / Mask-SSIM against scikit-image, LPIPS against the `lpips` package, Ewarp on real
video frames (natural, still, shuffled)."""

from __future__ import annotations

import subprocess
from itertools import islice

import cv2
import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import structural_similarity

from dfpipe.pipeline.quality.ewarp import FlowEstimator, ewarp_pair, valid_mask
from dfpipe.pipeline.quality.ssim import mask_ssim, ssim, ssim_map
from dfpipe.pipeline.video.decode import iter_frames

SK = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1, data_range=255)


def _grace() -> np.ndarray:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        buf = np.frombuffer(fh.read(), np.uint8)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def pair_frames(real_video, fake_video) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The face region of frames 0..47 of the shared real video and its NeuralTextures fake
    (same geometry: the same pixels in both)."""
    real = [f.image[100:620, 380:900] for f in islice(iter_frames(real_video), 48)]
    fake = [f.image[100:620, 380:900] for f in islice(iter_frames(fake_video), 48)]
    return real, fake


@pytest.mark.parametrize("quality", [10, 60])
def test_ssim_equals_skimage(quality):
    for img in (data.astronaut()[:200, 100:300], _grace()[:240, :300]):
        other = _jpeg(img, quality)
        want, want_map = structural_similarity(img, other, full=True, **SK)
        assert ssim(img, other) == pytest.approx(want, abs=1e-4)
        assert np.abs(ssim_map(img, other) - want_map).max() < 2e-3  # float32 per pixel
        # grey images too
        g1, g2 = img[..., 1], other[..., 1]
        assert ssim(g1, g2) == pytest.approx(structural_similarity(g1, g2, **{**SK, "channel_axis": None}), abs=1e-4)


def test_mask_ssim_self_is_one_and_fake_below(pair_frames):
    real, fake = pair_frames
    r, f = real[5][100:420, 100:420], fake[5][100:420, 100:420]  # the face, same pixels in both
    mask = np.zeros(r.shape[:2], np.uint8)
    mask[160:300, 60:260] = 255  # lower face: mouth and chin
    masked, inside = mask_ssim(r, r, mask)
    assert masked == pytest.approx(1.0, abs=1e-6) and inside == pytest.approx(1.0, abs=1e-6)
    masked, inside = mask_ssim(f, r, mask)
    assert masked < 0.999 and inside < 0.95
    # the masked variant is SSIM of the masked images, exactly as scikit-image computes it
    m3 = (mask > 0)[..., None]
    assert masked == pytest.approx(structural_similarity(f * m3, r * m3, **SK), abs=1e-4)
    _, full_map = structural_similarity(f, r, full=True, **SK)
    assert inside == pytest.approx(full_map.mean(axis=-1)[mask > 0].mean(), abs=1e-4)
    assert all(np.isnan(mask_ssim(f, r, np.zeros_like(mask))))
    with pytest.raises(ValueError, match="mask of shape"):
        mask_ssim(f, r, mask[:10])


def test_lpips_equals_lpips_package_with_same_backbone():
    lpips = pytest.importorskip("lpips")
    from dfpipe.pipeline.quality.perceptual import PerceptualMetric, VGGFeatures, lpips_linear_path

    torch.manual_seed(0)
    backbone = VGGFeatures().state_dict()  # a fixed random backbone (no ImageNet file in tests)
    linear = torch.load(lpips_linear_path(), map_location="cpu", weights_only=True)
    ours = PerceptualMetric(backbone, linear)

    ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    for name, param in ref.net.named_parameters():  # slice{k}.{i}.weight -> features.{i}.weight
        param.data.copy_(backbone["features." + name.split(".", 1)[1]])

    a = [cv2.resize(data.astronaut()[:256, 96:352], (64, 64)), cv2.resize(_grace()[:400, 50:450], (64, 64))]
    b = [_jpeg(x, 15) for x in a]
    dist, mse = ours.distances(a, b)
    ta = torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float() / 127.5 - 1
    tb = torch.from_numpy(np.stack(b)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        want = ref(ta, tb).flatten().numpy()
        feats_a, feats_b = ref.net(ref.scaling_layer(ta)), ref.net(ref.scaling_layer(tb))
    np.testing.assert_allclose(dist, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mse, ((feats_a[1] - feats_b[1]) ** 2).mean(dim=(1, 2, 3)).numpy(), rtol=1e-5)
    assert (dist > 0).all()
    same, _ = ours.distances(a, a)
    assert np.allclose(same, 0.0, atol=1e-7)


def test_vgg_weights_missing_offline_is_a_clear_error(tmp_path, monkeypatch):
    from dfpipe.pipeline.quality.perceptual import load_vgg16_state
    from dfpipe.runtime.weights import WeightsError

    monkeypatch.setenv("DFPIPE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("DFPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DFPIPE_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"vgg16-397923af\.pth.*not found"):
        load_vgg16_state()
    bogus = tmp_path / "vgg16-397923af.pth"
    bogus.write_bytes(b"not the file")
    with pytest.raises(WeightsError, match="sha256 prefix differs"):
        load_vgg16_state()


def _small(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [cv2.resize(f, (160, 160), interpolation=cv2.INTER_AREA) for f in frames]


def test_ewarp_still_natural_shuffled(real_video, tmp_path, pair_frames):
    import imageio_ffmpeg

    real = _small(pair_frames[0])
    flow = FlowEstimator("fast")
    natural = np.nanmean([ewarp_pair(real[i], real[i + 1], flow).error for i in range(len(real) - 1)])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(real))
    while np.any(np.abs(np.diff(order)) <= 1):  # no two neighbours stay neighbours
        order = rng.permutation(len(real))
    shuffled_frames = [real[i] for i in order]
    shuffled = np.nanmean([ewarp_pair(shuffled_frames[i], shuffled_frames[i + 1], flow).error for i in range(len(real) - 1)])

    # a still video: one real frame encoded as a 10-frame H.264 clip (codec noise included)
    png = tmp_path / "frame.png"
    cv2.imwrite(str(png), cv2.cvtColor(pair_frames[0][0], cv2.COLOR_RGB2BGR))  # 520 x 520 face region
    still_path = tmp_path / "still.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-loop", "1", "-i", str(png), "-frames:v", "10",
         "-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p", str(still_path)],
        check=True,
    )
    still_frames = _small([f.image for f in iter_frames(still_path)])
    still = np.nanmean([ewarp_pair(still_frames[i], still_frames[i + 1], flow).error for i in range(len(still_frames) - 1)])

    assert still < 2e-4
    assert shuffled > 4 * natural > 0
    assert shuffled > 50 * max(still, 1e-6)


def test_ewarp_flow_from_source_and_occlusion(pair_frames):
    real, fake = (_small(x) for x in pair_frames)
    flow = FlowEstimator("fast")
    # the fake scored with the real video's flow differs from scoring it on its own flow,
    # and a fake identical to its source scores exactly as the source
    on_source = ewarp_pair(fake[3], fake[4], flow, real[3], real[4])
    on_self = ewarp_pair(fake[3], fake[4], flow)
    assert on_source.error != on_self.error
    assert ewarp_pair(real[3], real[4], flow, real[3], real[4]).error == ewarp_pair(real[3], real[4], flow).error
    # forward-backward check: a flow field with an inconsistent patch is masked there
    fwd = np.zeros((64, 64, 2), np.float32)
    bwd = np.zeros_like(fwd)
    fwd[20:40, 20:40, 0] = 5.0  # moves right, but nothing moves back
    m = valid_mask(fwd, bwd)
    assert not m[25:35, 25:35].any() and m[:10, :10].all() and m[50:, 50:].all()


@pytest.mark.parametrize("ellipse", [(3, 3, 40, 30), (316, 200, 50, 200), (160, 160, 400, 400), (100, 100, 1, 1)])
def test_mask_ssim_box_shortcut_equals_full_computation(ellipse):
    """Masks at the border, covering everything, or a few pixels: same as scikit-image."""
    a = cv2.resize(data.astronaut(), (320, 320))
    b = _jpeg(a, 20)
    mask = np.zeros((320, 320), np.uint8)
    cx, cy, rx, ry = ellipse
    cv2.ellipse(mask, (cx, cy), (rx, ry), 0, 0, 360, 255, -1)
    m3 = (mask > 0)[..., None]
    _, full_map = structural_similarity(a, b, full=True, **SK)
    masked, inside = mask_ssim(a, b, mask)
    assert masked == pytest.approx(structural_similarity(a * m3, b * m3, **SK), abs=1e-4)
    assert inside == pytest.approx(full_map.mean(axis=-1)[mask > 0].mean(), abs=1e-4)
