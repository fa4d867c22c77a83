"""Blending a warped real face into a real photo: alpha, naive, Poisson (normal, mixed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_synth_support import aligned_face, face

from dfpipe.pipeline.masks import facemask as fm
from dfpipe.pipeline.synth.blend import BLENDS, blend, load_harmonizer, poisson_blend
from dfpipe.pipeline.synth.swap import warp_face


@pytest.fixture(scope="module")
def composite():
    """Grace Hopper's aligned face warped onto the astronaut's landmarks, with a soft mask."""
    bg, lm = face("astronaut")
    src, src_lm = aligned_face("grace_hopper")
    fg, valid = warp_face(src, src_lm, lm, bg.shape)
    hull = fm.landmark_hull_mask(lm, bg.shape)
    soft = fm.deform_mask(hull, np.random.default_rng(0), "none", scale=fm.face_scale(lm), blend_ratio=1.0)
    soft *= valid > 0
    return fg, bg, soft


def _ring(mask: np.ndarray, width: int = 3) -> np.ndarray:
    """A thin band just inside the mask's hard edge: where a seam shows."""
    hard = (mask > 0.5).astype(np.uint8)
    inner = cv2.erode(hard, np.ones((2 * width + 1,) * 2, np.uint8))
    return (hard > 0) & (inner == 0)


@pytest.mark.parametrize("mode", [b for b in BLENDS if b != "dovenet"])
def test_pixels_outside_the_mask_are_the_frame_own(composite, mode):
    fg, bg, mask = composite
    out = blend(fg, bg, mask, mode)
    assert out.shape == bg.shape and out.dtype == np.uint8
    outside = mask == 0
    np.testing.assert_array_equal(out[outside], bg[outside])
    inside = mask > 0.99
    assert np.abs(out[inside].astype(int) - bg[inside]).mean() > 5, "the face changed"


def test_alpha_takes_the_face_where_the_mask_is_full(composite):
    fg, bg, mask = composite
    out = blend(fg, bg, mask, "alpha")
    full = mask == 1.0
    np.testing.assert_array_equal(out[full], fg[full])


def test_poisson_hides_the_seam_that_naive_stitching_leaves(composite):
    fg, bg, mask = composite
    ring = _ring(mask)
    seam = {m: np.abs(blend(fg, bg, mask, m).astype(float) - bg)[ring].mean() for m in ("none", "poisson", "poisson-mixed")}
    assert seam["poisson"] < 0.6 * seam["none"], seam
    assert seam["poisson-mixed"] < 0.6 * seam["none"], seam
    assert np.abs(blend(fg, bg, mask, "poisson").astype(int) - blend(fg, bg, mask, "poisson-mixed")).max() > 10


@pytest.mark.parametrize("corner", ["top-left", "bottom-right", "left-edge"])
def test_poisson_is_not_shifted_and_works_at_frame_borders(corner):
    """Cloning a frame into itself must give the frame back: a wrong centre would shift the
    face by a pixel, and a mask touching the border must not make OpenCV fail."""
    image, lm = face("grace_hopper")
    h, w = image.shape[:2]
    shift = {"top-left": (-lm[:, 0].mean() + 10, -lm[:, 1].mean() + 10),
             "bottom-right": (w - lm[:, 0].mean() - 10, h - lm[:, 1].mean() - 10),
             "left-edge": (-lm[:, 0].mean() + 5, 0.0)}[corner]
    mask = fm.landmark_hull_mask(lm + np.array(shift), image.shape)
    ys, xs = np.nonzero(mask)
    assert ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1, "the mask touches a border"
    out = poisson_blend(image, image, mask)
    diff = np.abs(out.astype(int) - image)
    assert diff.max() <= 3 and diff[mask > 0].mean() < 1.0


def test_dovenet_needs_a_checkpoint(composite, tmp_path):
    fg, bg, mask = composite
    with pytest.raises(ValueError, match="--harmonizer"):
        load_harmonizer(None)
    with pytest.raises(ValueError, match="does not exist"):
        load_harmonizer(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="harmonizer"):
        blend(fg, bg, mask, "dovenet")


def test_bad_mode_and_sizes_are_clear_errors(composite):
    fg, bg, mask = composite
    with pytest.raises(ValueError, match="blend must be one of"):
        blend(fg, bg, mask, "feather")
    with pytest.raises(ValueError, match="share a size"):
        blend(fg[:-1], bg, mask)


def test_dovenet_blend_runs_a_checkpoint_and_keeps_the_outside(composite, tmp_path):
    """Plumbing through the harmonizer with an untrained tiny DoveNet checkpoint: what it
    paints inside the mask is not judged here (the harmonizer's own tests do that)."""
    from dfpipe.models.dovenet import TINY_CONFIG, DoveNet, DoveNetConfig
    from dfpipe.runtime.checkpoint import save_checkpoint

    model = DoveNet(DoveNetConfig(**TINY_CONFIG))
    path = save_checkpoint({"model_name": "dovenet", "config": model.config_dict(),
                            "generator": model.generator.state_dict()}, tmp_path / "best.pt")
    fg, bg, mask = composite
    out = blend(fg, bg, mask, "dovenet", load_harmonizer(path))
    np.testing.assert_array_equal(out[mask == 0], bg[mask == 0])
    assert np.abs(out[mask > 0.99].astype(int) - blend(fg, bg, mask, "alpha")[mask > 0.99]).mean() > 1
