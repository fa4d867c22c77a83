"""Masks from the real/fake pair of the shared FF++ video (NeuralTextures edits the mouth),
bounded by the mean face on the 5 landmarks (rows without a mesh; the mesh-bounded ones are
in test_mesh_masks.py), from landmarks, and from a shipped mask video's frame."""

from __future__ import annotations

import numpy as np
import pytest

from dfpipe.pipeline.faces.align import align_matrix, transform_points, warp_crop
from dfpipe.pipeline.masks.pairmask import (
    PairMaskConfig,
    difference_map,
    grow_region,
    landmark_mask,
    pair_mask,
    shipped_mask,
)
from dfpipe.pipeline.video.decode import Sampling, iter_frames

FRAMES = (30, 150, 270)
SIZE = 256


@pytest.fixture(scope="module")
def aligned_pairs(real_video, fake_video, retinaface_weights):
    """(real crop, fake crop, 5 landmarks in crop pixels) for a few frames: the real
    frame's face is detected once and both frames are cropped with that one matrix."""
    from dfpipe.pipeline.faces.detect import FaceDetector

    pick = Sampling(every=30)
    real = {f.index: f.image for f in iter_frames(real_video, pick) if f.index in FRAMES}
    fake = {f.index: f.image for f in iter_frames(fake_video, pick) if f.index in FRAMES}
    detector = FaceDetector(weights=retinaface_weights)
    out = []
    for index, det in zip(FRAMES, detector.detect([real[i] for i in FRAMES])):
        assert len(det) >= 1
        m = align_matrix(det.landmarks[0], SIZE)
        out.append((warp_crop(real[index], m, SIZE), warp_crop(fake[index], m, SIZE), transform_points(det.landmarks[0], m)))
    return out


def test_pair_mask_sits_on_the_lower_face(aligned_pairs):
    for real, fake, pts in aligned_pairs:
        face = landmark_mask(pts, np.eye(2, 3), SIZE)
        mask = pair_mask(real, fake, PairMaskConfig(), face=face)
        # the closing may not carry it off the (grown) face region
        assert not ((mask > 0) & (grow_region(face, PairMaskConfig().within_face) == 0)).any()
        ys, xs = np.nonzero(mask)
        assert 0.005 < len(ys) / mask.size < 0.35, "a mouth-sized region"
        eye_y = pts[:2, 1].mean()
        nose_y = pts[2, 1]
        assert (ys > eye_y).mean() > 0.9, "below the eyes"
        assert ys.mean() > nose_y, "centred below the nose"
        mouth = pts[3:].mean(0)
        assert abs(xs.mean() - mouth[0]) < 0.15 * SIZE, "horizontally around the mouth"
        assert mask[int(mouth[1]), int(mouth[0])] == 255 or np.hypot(*(np.array([xs.mean(), ys.mean()]) - mouth)) < 0.15 * SIZE


def test_real_against_itself_gives_no_mask(aligned_pairs):
    real, _, _ = aligned_pairs[0]
    assert not pair_mask(real, real).any()
    assert difference_map(real, real).max() == 0


@pytest.mark.parametrize("difference", ["max", "ssim", "both"])
def test_difference_variants(aligned_pairs, difference):
    """The strongest differences sit below the eyes. (1 - SSIM also reacts to the two
    encodings' different sharpness, so it only has to hold on average over frames.)"""
    cfg = PairMaskConfig(difference=difference)
    below = []
    for real, fake, pts in aligned_pairs:
        diff = difference_map(real, fake, cfg)
        assert difference_map(real, real, cfg).max() == 0
        top = diff >= np.percentile(diff, 98)
        ys, _ = np.nonzero(top)
        below.append((ys > pts[:2, 1].mean()).mean())
    if difference == "max":
        assert min(below) > 0.6
    assert np.mean(below) > 0.55


def test_fixed_threshold_and_bad_config(aligned_pairs):
    real, fake, _ = aligned_pairs[0]
    loose = pair_mask(real, fake, PairMaskConfig(threshold=5.0, components=3))
    strict = pair_mask(real, fake, PairMaskConfig(threshold=60.0))
    assert loose.sum() > strict.sum()
    with pytest.raises(ValueError, match="difference must be one of"):
        PairMaskConfig(difference="abs")
    with pytest.raises(ValueError, match="otsu"):
        PairMaskConfig(threshold="triangle")
    with pytest.raises(ValueError, match="differ in shape"):
        difference_map(real, fake[:100])


def test_landmark_mask_covers_the_face(aligned_pairs):
    _, _, pts = aligned_pairs[1]
    mask = landmark_mask(pts, np.eye(2, 3), SIZE)
    for x, y in pts:
        assert mask[int(y), int(x)] == 255
    assert mask[2, 2] == 0 and 0.1 < (mask > 0).mean() < 0.8


def test_shipped_mask_is_cropped_with_the_face_matrix(aligned_pairs, real_video):
    # a mask video frame in frame pixels: the bright part of the real frame (any binary image works)
    frame = next(iter(iter_frames(real_video, Sampling(count=1)))).image
    mask_frame = np.where(frame.max(axis=-1) > 128, 255, 0).astype(np.uint8)
    m = align_matrix(np.array([[600, 300], [700, 300], [650, 360], [610, 420], [690, 420]], float), SIZE)
    crop = shipped_mask(np.dstack([mask_frame] * 3), m, SIZE)
    assert set(np.unique(crop)) <= {0, 255}
    want = warp_crop(mask_frame, m, SIZE)
    assert np.mean((crop > 0) == (want > 127)) > 0.98


def test_pair_mask_covers_a_swapped_face(aligned_pairs, retinaface_weights):
    """A face swap (Grace Hopper's aligned face blended over the real crop through the
    landmark hull, as Deepfakes / FaceSwap do): the recovered mask covers the swapped face."""
    import cv2
    import matplotlib.cbook

    from dfpipe.pipeline.faces.detect import FaceDetector

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = cv2.cvtColor(cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    [det] = FaceDetector(weights=retinaface_weights).detect([grace])
    donor = warp_crop(grace, align_matrix(det.landmarks[0], SIZE), SIZE)
    for real, _, pts in aligned_pairs:
        hull = landmark_mask(pts, np.eye(2, 3), SIZE, "no_forehead")
        alpha = cv2.GaussianBlur(hull.astype(np.float32) / 255.0, (0, 0), 3)[..., None]
        fake = (real * (1 - alpha) + donor * alpha).astype(np.uint8)
        mask = pair_mask(real, fake, face=landmark_mask(pts, np.eye(2, 3), SIZE)) > 0
        iou = (mask & (hull > 0)).sum() / (mask | (hull > 0)).sum()
        assert iou > 0.7
