"""Per-frame synthesis on real photos (swap, self-blend, external crops), track planning
and pairing. The end-to-end stage is tested in test_synth_run.py."""

from __future__ import annotations

import numpy as np
import pytest
from test_synth_support import aligned_face, face

from dfpipe.pipeline.faces.align import align_matrix, warp_crop
from dfpipe.pipeline.synth.compose import Composer
from dfpipe.pipeline.synth.external import ExternalGenerator
from dfpipe.pipeline.synth.pairing import Pair, TrackRef, main_tracks, random_pairs, read_pairs_csv
from dfpipe.pipeline.synth.selfblend import SelfBlendGenerator, SelfBlendParams
from dfpipe.pipeline.synth.swap import SwapGenerator, landmark_transform
from dfpipe.pipeline.synth.track import plan_track


@pytest.fixture(scope="module")
def target():
    return face("astronaut")


@pytest.mark.parametrize("blend_mode", ["alpha", "poisson"])
def test_swap_changes_only_the_masked_face(target, blend_mode):
    frame, lm = target
    src, src_lm = aligned_face("grace_hopper")
    composer = Composer(SwapGenerator(src, src_lm), np.random.default_rng(0), blend_mode, colour="rct")
    out, mask = composer(frame, 0, lm)
    assert mask.shape == frame.shape[:2] and mask.max() > 0
    np.testing.assert_array_equal(out[mask == 0], frame[mask == 0])
    inside = mask > 0.5 * mask.max()
    assert np.abs(out[inside].astype(int) - frame[inside]).mean() > 4, "a different identity inside the mask"
    # the pasted face sits on the target's face: the mask covers the target's eyes, nose, mouth
    for x, y in np.rint(lm).astype(int):
        assert mask[y, x] > 0


def test_swap_follows_the_target_pose(target):
    """Moving or rotating the target landmarks moves or rotates the pasted face with them."""
    frame, lm = target
    src, src_lm = aligned_face("grace_hopper")
    gen = SwapGenerator(src, src_lm)
    fg_a, _ = gen(frame, 0, lm)
    fg_b, _ = gen(frame, 1, lm + np.array([30.0, 12.0]))
    np.testing.assert_allclose(fg_a[100:300, 100:300], fg_b[112:312, 130:330], atol=1)
    theta = np.deg2rad(10.0)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = lm.mean(0)
    m_a = landmark_transform(src_lm, lm)
    m_b = landmark_transform(src_lm, (lm - centre) @ rot.T + centre)
    angle = lambda m: np.rad2deg(np.arctan2(m[1, 0], m[0, 0]))  # noqa: E731
    assert angle(m_b) - angle(m_a) == pytest.approx(10.0, abs=1e-6)


def test_self_blend_differs_from_its_input_only_inside_the_mask(target):
    frame, lm = target
    for seed in range(3):
        composer = Composer(SelfBlendGenerator(np.random.default_rng(seed)), np.random.default_rng(seed))
        out, mask = composer(frame, 0, lm)
        np.testing.assert_array_equal(out[mask == 0], frame[mask == 0])
        assert np.abs(out.astype(int) - frame)[mask > 0.5 * mask.max()].mean() > 0.5


def test_self_blend_parameters_are_seeded_and_within_sbi_ranges():
    draws = [SelfBlendParams.draw(np.random.default_rng(s)) for s in range(200)]
    assert SelfBlendParams.draw(np.random.default_rng(7)) == draws[7]
    assert all(abs(d.shift[0]) <= 0.03 and abs(d.shift[1]) <= 0.015 for d in draws)
    assert all(0.95 <= d.scale <= 1 / 0.95 for d in draws)
    assert all(max(abs(v) for v in d.rgb_shift) <= 20 for d in draws)
    fired = np.mean([any(d.rgb_shift) for d in draws])
    assert 0.15 < fired < 0.45, "RGB shift fires with p = 0.3"
    assert {d.degrade for d in draws} == {"downscale", "sharpen"}


def test_external_crops_are_pasted_back_through_the_crop_matrix(target, tmp_path):
    """A generator that returns face crops (cut with the target's matrix) gets them pasted
    at the right place: here the 'generated' crop is Grace Hopper's aligned face."""
    import cv2

    frame, lm = target
    size = 256
    m = align_matrix(lm, size)
    src, _ = aligned_face("grace_hopper", size)
    folder = tmp_path / "vid"
    folder.mkdir()
    cv2.imwrite(str(folder / "000003.png"), cv2.cvtColor(src, cv2.COLOR_RGB2BGR))
    gen = ExternalGenerator(folder, {3: m}, size)
    fg, valid = gen(frame, 3, lm)
    back = warp_crop(fg, m, size)
    inner = warp_crop(valid, m, size) > 0
    error = np.abs(back[inner].astype(int) - src[inner]).mean()  # resampling down and up only
    misplaced = np.abs(back[inner].astype(int) - np.roll(src, 3, axis=(0, 1))[inner]).mean()
    assert error < 8 and error < 0.6 * misplaced, (error, misplaced)
    same, none = gen(frame, 4, lm)  # no generated image for frame 4: nothing to paste
    np.testing.assert_array_equal(same, frame)
    assert none.max() == 0


def _rows(frames, lm0):
    return [{"frame_index": f, "landmarks": list((lm0 + f).reshape(10)), "matrix": [1, 0, -f, 0, 1, -f]} for f in frames]


def test_track_plan_interpolates_between_sampled_frames_and_caps():
    lm0 = np.arange(10, dtype=float).reshape(5, 2)
    plan = plan_track(_rows([0, 2, 4, 20], lm0))
    assert sorted(plan.landmarks) == [0, 1, 2, 3, 4, 20], "a gap over twice the step is not bridged"
    np.testing.assert_allclose(plan.landmarks[3], lm0 + 3)
    np.testing.assert_allclose(plan.matrices[1], [[1, 0, -1], [0, 1, -1]])
    assert plan.end == 21 and sorted(plan.rows) == [0, 2, 4, 20]
    capped = plan_track(_rows([0, 2, 4, 20], lm0), per_video=3)
    assert sorted(capped.landmarks) == [0, 1, 2] and sorted(capped.rows) == [0, 2] and capped.end == 3


def test_random_pairs_are_reproducible_and_cross_video():
    sizes = {TrackRef(v, t): 10 for v in "abc" for t in (0, 1)}
    sizes[TrackRef("d", 0)] = 1  # too short
    a = random_pairs(sizes, 8, seed=3)
    assert a == random_pairs(sizes, 8, seed=3) and a != random_pairs(sizes, 8, seed=4)
    assert len(a) == len(set(a)) == 8
    assert all(p.target.video_id != p.source.video_id and "d" not in (p.target.video_id, p.source.video_id) for p in a)
    assert len(random_pairs(sizes, 1000, seed=0)) == 6 * 4, "capped at the possible pairs"
    with pytest.raises(ValueError, match="two real videos"):
        random_pairs({TrackRef("a", 0): 5}, 3, 0)


def test_pairs_csv_rows_resolve_or_explain(tmp_path):
    sizes = {TrackRef("a", 0): 5, TrackRef("a", 1): 9, TrackRef("b", 0): 4}
    assert main_tracks(sizes) == {"a": TrackRef("a", 1), "b": TrackRef("b", 0)}
    path = tmp_path / "pairs.csv"
    path.write_text("target_video_id,source_video_id,target_track_id\na,b,0\nb,a,\nzz,a,\na,a,\nb,a,7\n")
    rows = read_pairs_csv(path, sizes)
    assert rows[0][0] == Pair(TrackRef("a", 0), TrackRef("b", 0)) and rows[0][2] is None
    assert rows[1][0] == Pair(TrackRef("b", 0), TrackRef("a", 1))
    assert [r[2] is not None for r in rows] == [False, False, True, True, True]
    assert "zz" in rows[2][2] and "same video" in rows[3][2] and "b/7" in rows[4][2]
    bad = tmp_path / "bad.csv"
    bad.write_text("target,source\na,b\n")
    with pytest.raises(ValueError, match="lacks the column"):
        read_pairs_csv(bad, sizes)


def test_flow_follow_carries_the_pasted_face_with_the_real_motion(target):
    """The real frame moves by (6, 4) px but the landmarks lag behind (as a detector's can):
    the motion-following swap moves the pasted face with the image, the rigid one does not."""
    from dfpipe.pipeline.synth.motion import FlowFollow

    frame, lm = target
    src, src_lm = aligned_face("grace_hopper")
    moved = np.roll(frame, (4, 6), axis=(0, 1))
    follow = FlowFollow(SwapGenerator(src, src_lm), refresh=0.2)
    fg0, _ = follow(frame, 0, lm)
    fg1, valid1 = follow(moved, 1, lm)
    region = (slice(int(lm[:, 1].min()), int(lm[:, 1].max())), slice(int(lm[:, 0].min()), int(lm[:, 0].max())))
    carried = np.roll(fg0, (4, 6), axis=(0, 1))[region].astype(float)
    err_moved = np.abs(fg1[region] - carried).mean()
    err_still = np.abs(fg1[region] - fg0[region].astype(float)).mean()
    assert err_moved < 0.5 * err_still, (err_moved, err_still)
    assert valid1[region].all()
    with pytest.raises(ValueError, match="refresh"):
        FlowFollow(SwapGenerator(src, src_lm), refresh=0.0)
