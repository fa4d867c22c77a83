"""DeeperForensics-1.0 perturbations do, at each level, the measured amount their parameter says
(on a real face: scikit-image's public-domain astronaut photo)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from dfpipe.pipeline.perturb import ops

LEVELS = range(1, 6)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """The astronaut's face and hair, 256x256 RGB uint8."""
    crop = skimage.data.astronaut()[10:230, 140:330]
    return cv2.resize(crop, (256, 256), interpolation=cv2.INTER_AREA)


def _ycrcb(image: np.ndarray) -> np.ndarray:
    """Full-range YCrCb in [0, 1], float64."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2YCrCb).astype(np.float64)


def _chroma(image: np.ndarray) -> float:
    """Mean |Cb - neutral| + |Cr - neutral|, in [0, 1] units."""
    return float(np.abs(_ycrcb(image)[..., 1:] - 0.5).sum(-1).mean())


def _sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_tables_match_deeperforensics():
    assert ops.KINDS == ("CS", "CC", "BW", "GNC", "GB", "JPEG", "VC")
    assert ops.IMAGE_KINDS == ("CS", "CC", "BW", "GNC", "GB", "JPEG")
    assert set(ops.NAMES) == set(ops.KINDS) == set(ops.LEVELS)
    assert ops.LEVELS["GNC"] == (0.001, 0.002, 0.005, 0.01, 0.05)
    assert ops.VIDEO_CRF == {1: 30, 2: 32, 3: 35, 4: 38, 5: 40}
    assert ops.parameter("gb", 3) == 13 and ops.parameter("CS", 5) == 0.0
    for bad_kind, bad_level in [("XX", 1), ("GB", 0), ("GB", 6), ("GB", 2.0), ("GB", True)]:
        with pytest.raises(ValueError):
            ops.parameter(bad_kind, bad_level)


@pytest.mark.parametrize("kind", ops.IMAGE_KINDS)
def test_shape_dtype_and_input_kept(face, kind):
    before = face.copy()
    for level in LEVELS:
        out = ops.apply(face, kind, level, np.random.default_rng(0))
        assert out.shape == face.shape and out.dtype == np.uint8
        assert not np.array_equal(out, face), (kind, level)
    assert np.array_equal(face, before), "apply must not modify its input"


def test_rejects_non_rgb_uint8(face):
    for bad in (face.astype(np.float32), face[..., 0], face[..., :2]):
        with pytest.raises(ValueError):
            ops.apply(bad, "GB", 1, np.random.default_rng(0))


@pytest.mark.parametrize("level", LEVELS)
def test_cs_scales_chroma_keeps_luma(face, level):
    out = ops.apply(face, "CS", level, np.random.default_rng(0))
    ratio = _chroma(out) / _chroma(face)
    assert ratio == pytest.approx(ops.parameter("CS", level), abs=0.01)
    luma_change = np.abs(_ycrcb(out)[..., 0] - _ycrcb(face)[..., 0]).mean() * 255
    assert luma_change < 1.0  # only truncation to uint8
    if level == 5:
        assert np.abs(out.astype(int) - out.mean(-1, keepdims=True)).max() <= 1  # grey


@pytest.mark.parametrize("level", LEVELS)
def test_cc_scales_values_towards_black(face, level):
    p = ops.parameter("CC", level)
    y_in, y_out = _ycrcb(face)[..., 0], _ycrcb(ops.apply(face, "CC", level, None))[..., 0]
    assert y_out.std() / y_in.std() == pytest.approx(p, rel=0.01)
    assert y_out.mean() / y_in.mean() == pytest.approx(p, rel=0.02)  # their CC darkens too


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(-1)


def test_bw_blocks_are_grey_and_cover_the_level_count(face):
    counts = []
    for level in LEVELS:
        out = ops.apply(face, "BW", level, np.random.default_rng(level))
        changed = _changed(out, face)
        assert (out[changed] == ops.BLOCK_GREY).all()
        area = ops.parameter("BW", level) * ops.BLOCK ** 2
        assert 0.85 * area <= changed.sum() <= area, (level, changed.sum(), area)  # overlaps only
        counts.append(int(changed.sum()))
    assert counts == sorted(counts) and len(set(counts)) == 5


def test_bw_scales_blocks_with_image_size():
    """A 512 px image gets twice the blocks of a 256 px one (min(H, W) // 256 per level)."""
    photo = skimage.data.astronaut()
    out = ops.apply(photo, "BW", 2, np.random.default_rng(0))
    area = 2 * ops.parameter("BW", 2) * ops.BLOCK ** 2
    assert 0.85 * area <= _changed(out, photo).sum() <= area


@pytest.mark.parametrize("level", [1, 2, 3])
def test_gnc_noise_std_matches_variance(face, level):
    """Away from clipping (input channels in 64..191), the noise on Y and on Cb/Cr has the std
    sqrt(variance) rescaled from studio swing to full range, and zero mean."""
    sigma = np.sqrt(ops.parameter("GNC", level))
    diff = _ycrcb(ops.apply(face, "GNC", level, np.random.default_rng(7))) - _ycrcb(face)
    mid = ((face >= 64) & (face <= 191)).all(-1)
    assert mid.sum() > 10_000
    d = diff[mid]
    assert d[:, 0].std() == pytest.approx(sigma * ops.GNC_LUMA_SCALE, rel=0.1)
    assert d[:, 1:].std() == pytest.approx(sigma * ops.GNC_CHROMA_SCALE, rel=0.1)
    assert np.abs(d.mean(0)).max() * 255 < 1.0  # zero-mean but for uint8 truncation


def test_gnc_grows_with_level(face):
    stds = [(_ycrcb(ops.apply(face, "GNC", lv, np.random.default_rng(0))) - _ycrcb(face)).std()
            for lv in LEVELS]
    assert all(a < b for a, b in zip(stds, stds[1:])), stds


def test_gb_is_the_documented_kernel_and_blurs_more_per_level(face):
    sharp = [_sharpness(face)]
    for level in LEVELS:
        k = ops.parameter("GB", level)
        out = ops.apply(face, "GB", level, None)
        assert np.array_equal(out, cv2.GaussianBlur(face, (k, k), k / 6))
        sharp.append(_sharpness(out))
    assert all(a > b for a, b in zip(sharp, sharp[1:])), sharp


def test_jpeg_is_down_up_resampling_losing_more_per_level(face):
    psnr = []
    for level in LEVELS:
        f = ops.parameter("JPEG", level)
        out = ops.apply(face, "JPEG", level, None)
        small = cv2.resize(face, (256 // f, 256 // f), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(out, cv2.resize(small, (256, 256), interpolation=cv2.INTER_LINEAR))
        psnr.append(cv2.PSNR(face, out))
    assert all(a > b for a, b in zip(psnr, psnr[1:])), psnr
    assert psnr[-1] < 30


@pytest.mark.parametrize("kind", ["BW", "GNC"])
def test_random_kinds_are_deterministic_per_seed(face, kind):
    a = ops.apply(face, kind, 3, np.random.default_rng(42))
    b = ops.apply(face, kind, 3, np.random.default_rng(42))
    c = ops.apply(face, kind, 3, np.random.default_rng(43))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_vc_on_an_image_says_use_video_mode(face):
    with pytest.raises(ValueError, match="video"):
        ops.apply(face, "VC", 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="video"):
        ops.apply_mixed(face, [("GB", 1), ("VC", 2)], np.random.default_rng(0))


def test_apply_mixed_is_the_sequence(face):
    mix = [("GB", 2), ("GNC", 1), ("CS", 3)]
    expect = face
    rng = np.random.default_rng(5)
    for kind, level in mix:
        expect = ops.apply(expect, kind, level, rng)
    assert np.array_equal(ops.apply_mixed(face, mix, np.random.default_rng(5)), expect)


def test_random_mix_draws_distinct_image_kinds():
    seen = set()
    for seed in range(40):
        mix = ops.random_mix(np.random.default_rng(seed), n=3)
        kinds = [k for k, _ in mix]
        assert len(mix) == 3 and len(set(kinds)) == 3 and set(kinds) <= set(ops.IMAGE_KINDS)
        assert all(1 <= lv <= 5 for _, lv in mix)
        seen.update(mix)
    assert len(seen) > 20  # kinds and levels actually vary
    assert ops.random_mix(np.random.default_rng(1)) == ops.random_mix(np.random.default_rng(1))
    with pytest.raises(ValueError):
        ops.random_mix(np.random.default_rng(0), n=7)


def test_parse_spec_forms():
    assert ops.parse_spec("GB:3") == [[("GB", 3)]]
    assert ops.parse_spec("gb:3+Jpeg:2") == [[("GB", 3), ("JPEG", 2)]]
    assert ops.parse_spec("cs") == [[("CS", lv)] for lv in LEVELS]
    assert ops.parse_spec(" GB:1 , VC:5 ,GB:1") == [[("GB", 1)], [("VC", 5)]]
    every = ops.parse_spec("all")
    assert len(every) == 35 and [("VC", 5)] in every and [("CS", 1)] in every


@pytest.mark.parametrize("bad", ["", "GB,", "XX", "GB:0", "GB:6", "GB:x", "GB+JPEG", "GB:1+GB:2", "GB:1+XX:2"])
def test_parse_spec_rejects(bad):
    with pytest.raises(ValueError):
        ops.parse_spec(bad)


def test_parse_spec_error_lists_kinds():
    with pytest.raises(ValueError, match="CS, CC, BW, GNC, GB, JPEG, VC"):
        ops.parse_spec("blur:2")


def test_spec_name_is_path_safe():
    assert ops.spec_name([("GB", 3)]) == "GB-3"
    assert ops.spec_name([("gb", 3), ("JPEG", 2)]) == "GB-3+JPEG-2"
    for mix in ops.parse_spec("all,GB:1+CS:2"):
        assert ":" not in ops.spec_name(mix) and "/" not in ops.spec_name(mix)
    with pytest.raises(ValueError):
        ops.spec_name([])
