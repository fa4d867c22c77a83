"""Landmark hull masks (the fallback for faces without a mesh) and their deformations, on
real faces; mesh masks are in test_mesh_masks.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_synth_support import face

from dfpipe.pipeline.masks import facemask as fm


def test_bundled_mean_face_matches_public_template(shared_dir):
    ours = json.loads((fm.resources.files("dfpipe") / "data/mean_face_68.json").read_text())
    assert "Apache-2.0" in ours["license"] and "openface" in ours["source"]
    shared = json.loads((shared_dir / "data" / "landmarks68_mean.json").read_text())
    np.testing.assert_allclose(fm.mean_face_68(), np.asarray(shared["points"]), atol=1e-5)


def test_five_points_of_the_mean_face_are_in_retinaface_order():
    five = fm.five_from_68(fm.mean_face_68())
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]
    assert five[:2, 1].max() < five[2, 1] < five[3:, 1].min()


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper", "fr_rose_leslie1.jpg"])
def test_hull_covers_the_landmarks_and_regions_nest(name):
    image, lm = face(name)
    masks = {r: fm.landmark_hull_mask(lm, image.shape, r) for r in fm.REGIONS}
    full = masks["full"] > 0
    for x, y in np.rint(lm).astype(int):
        assert full[y, x], "every detected landmark lies inside the full-face hull"
    # the face is a sensible part of the image: larger than the eye-mouth box, smaller than 3x it
    eye_mouth = (lm[:, 0].max() - lm[:, 0].min()) * (lm[:, 1].max() - lm[:, 1].min())
    assert eye_mouth < full.sum() < 6 * eye_mouth
    # removing the forehead or the jaw line shrinks the mask
    assert (masks["no_forehead"] > 0).sum() < full.sum()
    assert (masks["inner"] > 0).sum() < full.sum()
    # top of the no-forehead mask is below the top of the full mask
    assert np.nonzero(masks["no_forehead"])[0].min() > np.nonzero(full)[0].min()


def test_canonical_mask_maps_onto_the_frame_hull():
    image, lm = face("astronaut")
    direct = fm.landmark_hull_mask(lm, image.shape) > 127
    mapped = fm.canonical_to_frame(fm.canonical_mask(), lm, image.shape) > 127
    iou = (direct & mapped).sum() / (direct | mapped).sum()
    assert iou > 0.9


@pytest.mark.parametrize("warp_kind", fm.WARPS)
def test_deform_mask_is_soft_local_and_seeded(warp_kind):
    image, lm = face("grace_hopper")
    hull = fm.landmark_hull_mask(lm, image.shape)
    scale = fm.face_scale(lm)
    a = fm.deform_mask(hull, np.random.default_rng(3), warp_kind, scale=scale)
    b = fm.deform_mask(hull, np.random.default_rng(3), warp_kind, scale=scale)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    assert a.max() in fm.BLEND_RATIOS or np.isclose(a.max(), fm.BLEND_RATIOS).any()
    soft = (a > 0.02) & (a < 0.98 * a.max())
    assert soft.sum() > 0.02 * (hull > 0).sum(), "a blurred edge"
    # the deformed mask stays on the face: most of it lies inside a dilated hull
    on = a > 0.5 * a.max()
    assert on.sum() > 0.3 * (hull > 0).sum()
    ys, xs = np.nonzero(hull)
    box = (slice(ys.min() - 40, ys.max() + 40), slice(xs.min() - 40, xs.max() + 40))
    assert on[box].sum() == on.sum()


def test_deformations_vary_with_the_seed():
    image, lm = face("astronaut")
    hull = fm.landmark_hull_mask(lm, image.shape)
    draws = [fm.deform_mask(hull, np.random.default_rng(s), blend_ratio=1.0) for s in range(4)]
    assert any(np.abs(draws[0] - d).max() > 0.2 for d in draws[1:])


def test_degenerate_landmarks_are_a_clear_error():
    with pytest.raises(ValueError, match="degenerate"):
        fm.landmark_hull_mask(np.zeros((5, 2)), (100, 100))
    with pytest.raises(ValueError, match="region"):
        fm.landmark_hull_mask(face("astronaut")[1], (512, 512), "chin")


def test_mesh_masks_take_only_a_whole_finite_mesh():
    from dfpipe.pipeline.faces.topology import frontal_points

    pts = frontal_points() * 20 + 200  # the canonical face, frontal, in a 400 px image
    for region in fm.REGIONS:
        mask = fm.mesh_hull_mask(pts, (400, 400, 3), region)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    # on the frontal canonical face the mean-face fallback (jaw and brows) lies inside the
    # mesh's outline, which adds the forehead above the brows
    five = np.stack([pts[[33, 133]].mean(0), pts[[362, 263]].mean(0), pts[1], pts[61], pts[291]])
    mesh, old = fm.mesh_hull_mask(pts, (400, 400)) > 0, fm.landmark_hull_mask(five, (400, 400)) > 0
    assert (old & ~mesh).sum() < 0.02 * old.sum()
    assert np.nonzero(mesh)[0].min() < np.nonzero(old)[0].min() - 0.1 * 400
    with pytest.raises(ValueError, match="region"):
        fm.mesh_hull_mask(pts, (400, 400), "chin")
    with pytest.raises(ValueError, match="468"):
        fm.mesh_hull_mask(pts[:-1], (400, 400))
    bad = pts.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fm.mesh_hull_mask(bad, (400, 400))
