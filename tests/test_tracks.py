"""Track linking on detections of real faces: moving, crossing, vanishing, smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from dfpipe.pipeline.faces.tracks import Tracker, box_iou, select_tracks


def _lm(box):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return np.array([[x1 + .3 * w, y1 + .4 * h], [x1 + .7 * w, y1 + .4 * h], [x1 + .5 * w, y1 + .6 * h],
                     [x1 + .35 * w, y1 + .8 * h], [x1 + .65 * w, y1 + .8 * h]])


def _push(tracker, boxes, payload=None):
    boxes = np.array(boxes, dtype=float).reshape(-1, 4)
    return tracker.push(payload, boxes, np.ones(len(boxes)), np.stack([_lm(b) for b in boxes]) if len(boxes) else np.zeros((0, 5, 2)))


def test_iou():
    assert box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10]])[0, 0] == pytest.approx(1)
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert box_iou([[0, 0, 10, 10]], [[20, 20, 30, 30]])[0, 0] == 0


def test_two_faces_keep_their_ids_through_motion_and_detection_order():
    t = Tracker()
    out = []
    for step in range(10):
        left = [100 + 5 * step, 100, 180 + 5 * step, 200]
        right = [400 - 5 * step, 120, 470 - 5 * step, 210]
        # the detector lists faces in score order, not position: shuffle it
        out += _push(t, [right, left] if step % 2 else [left, right], payload=step)
    out += t.flush()
    assert [f.payload for f in out] == list(range(10))
    for frame in out:
        ids = {face.track_id: face.box[0] for face in frame.faces}
        assert set(ids) == {0, 1} and ids[0] < ids[1]


def test_gap_within_max_gap_keeps_the_track_longer_gap_starts_a_new_one():
    t = Tracker(max_gap=2)
    box = [100, 100, 200, 200]
    frames = _push(t, [box]) + _push(t, []) + _push(t, [box])  # one missing frame
    frames += _push(t, []) + _push(t, []) + _push(t, []) + _push(t, [box]) + t.flush()  # three missing
    ids = [f.faces[0].track_id for f in frames if f.faces]
    assert ids == [0, 0, 1]


def test_fast_motion_links_by_centre_distance():
    t = Tracker()
    frames = _push(t, [[100, 100, 200, 200]]) + _push(t, [[140, 110, 240, 210]]) + t.flush()  # IoU < 0.3
    assert [f.faces[0].track_id for f in frames] == [0, 0]


def test_smoothing_reduces_jitter_and_releases_with_lag():
    rng = np.random.default_rng(0)
    t = Tracker(smooth=2)
    released = []
    raw = []
    for step in range(30):
        box = np.array([100 + 2 * step, 100, 200 + 2 * step, 200]) + rng.normal(0, 3, 4)
        raw.append(box)
        got = _push(t, [box])
        if step >= 2:
            assert len(got) == 1 and got[0].position == step - 2  # two frames of lag
        released += got
    released += t.flush()
    assert len(released) == 30
    truth = np.array([[100 + 2 * s, 100, 200 + 2 * s, 200] for s in range(30)])
    smoothed = np.array([f.faces[0].box for f in released])
    err_raw = np.abs(np.array(raw) - truth)[3:-3].mean()
    err_smooth = np.abs(smoothed - truth)[3:-3].mean()
    assert err_smooth < 0.7 * err_raw


def test_select_tracks():
    stats = {0: (10, 900.0), 1: (3, 4000.0), 2: (1, 100.0)}
    assert select_tracks(stats, "all", None, 1) == {0, 1, 2}
    assert select_tracks(stats, "all", None, 2) == {0, 1}
    assert select_tracks(stats, "largest", None, 1) == {1}
    assert select_tracks(stats, "largest", 2, 1) == {0, 1}
    assert select_tracks(stats, "main", None, 1) == {1}  # 3 x 4000 > 10 x 900
    with pytest.raises(ValueError, match="keep"):
        select_tracks(stats, "biggest", None, 1)


def test_a_jump_of_every_face_starts_a_new_shot_and_a_vanishing_face_does_not():
    t = Tracker()
    frames = []
    frames += _push(t, [[100, 100, 200, 220], [400, 100, 480, 200]])
    frames += _push(t, [[104, 100, 204, 220], [398, 100, 478, 200]])  # both move a little
    frames += _push(t, [[104, 100, 204, 220]])  # one leaves: same shot
    frames += _push(t, [[700, 300, 900, 540]])  # the only face is elsewhere, twice as big: a jump
    frames += _push(t, [[705, 300, 905, 540], [100, 100, 200, 220]])  # one tracked, one new: same shot
    frames += t.flush()
    assert [f.shot for f in frames] == [0, 0, 0, 1, 1]
    assert frames[3].faces[0].track_id not in {f.track_id for fr in frames[:3] for f in fr.faces}
    # the face at the old place after the jump is a new track: no track spans two shots
    old = {f.track_id for fr in frames[:3] for f in fr.faces}
    assert not old & {f.track_id for f in frames[4].faces}
