"""Colour transfer moves a face's colour statistics toward the face it replaces (measured)."""

from __future__ import annotations

import numpy as np
import pytest
from test_synth_support import aligned_face

from dfpipe.pipeline.masks import facemask as fm
from dfpipe.pipeline.synth.colour import MODES, ColourTransfer, colour_transfer


@pytest.fixture(scope="module")
def pair():
    """Grace Hopper's face (fg) and the astronaut's (bg), aligned to the same crop geometry,
    with the hull of the target face as the mask."""
    fg, _ = aligned_face("grace_hopper")
    bg, lm = aligned_face("astronaut")
    mask = fm.landmark_hull_mask(lm, bg.shape)
    return fg, bg, mask


def _stats(image, mask):
    px = image.reshape(-1, 3)[mask.reshape(-1) > 127].astype(np.float64)
    return px.mean(0), np.cov(px, rowvar=False)


@pytest.mark.parametrize("mode", [m for m in MODES if m != "none"])
def test_mode_moves_mean_and_covariance_toward_target(pair, mode):
    fg, bg, mask = pair
    out = colour_transfer(fg, bg, mask, mode, seed=0)
    assert out.dtype == np.uint8 and out.shape == fg.shape
    mu_f, cov_f = _stats(fg, mask)
    mu_b, cov_b = _stats(bg, mask)
    mu_o, cov_o = _stats(out, mask)
    mean_before, mean_after = np.linalg.norm(mu_f - mu_b), np.linalg.norm(mu_o - mu_b)
    cov_before, cov_after = np.linalg.norm(cov_f - cov_b), np.linalg.norm(cov_o - cov_b)
    assert mean_before > 10, "the two real faces differ in colour to begin with"
    assert mean_after < 0.25 * mean_before, (mode, mean_before, mean_after)
    if mode == "rct":  # Lab std matching ignores cross-channel terms: a weaker pull on covariance
        assert cov_after < 0.8 * cov_before, (mode, cov_before, cov_after)
    else:
        assert cov_after < 0.35 * cov_before, (mode, cov_before, cov_after)


def test_none_is_identity(pair):
    fg, bg, mask = pair
    np.testing.assert_array_equal(colour_transfer(fg, bg, mask, "none"), fg)


def test_fit_once_apply_to_other_frames_is_stable(pair):
    """Parameters fitted on one frame applied to a slightly changed frame give a slightly
    changed output (no re-fit, so no flicker), and the same map as a re-application."""
    fg, bg, mask = pair
    ct = ColourTransfer.fit(fg, bg, mask, "idt", seed=1)
    np.testing.assert_array_equal(ct.apply(fg), ct.apply(fg))
    shifted = np.roll(fg, 2, axis=1)
    a, b = ct.apply(fg).astype(int), ct.apply(shifted).astype(int)
    np.testing.assert_array_equal(np.roll(a, 2, axis=1)[:, 4:-4], b[:, 4:-4])


def test_idt_is_reproducible_from_its_seed(pair):
    fg, bg, mask = pair
    a = colour_transfer(fg, bg, mask, "idt", seed=5)
    np.testing.assert_array_equal(a, colour_transfer(fg, bg, mask, "idt", seed=5))
    assert np.abs(a.astype(int) - colour_transfer(fg, bg, mask, "idt", seed=6)).max() > 0


def test_bad_mode_and_empty_mask_are_clear_errors(pair):
    fg, bg, mask = pair
    with pytest.raises(ValueError, match="colour mode"):
        colour_transfer(fg, bg, mask, "sepia")
    with pytest.raises(ValueError, match="inside the mask"):
        colour_transfer(fg, bg, np.zeros_like(mask), "rct")
