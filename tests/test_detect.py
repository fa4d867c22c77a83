"""FaceDetector on real photos and real video frames: counts, landmark geometry, agreement
with an independent detector, downscaling, batching and input handling."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import skimage.data
import skimage.feature
import torch
from torchvision.ops import box_iou

from dfpipe.pipeline.faces.detect import (
    DetectError,
    Detections,
    FaceDetector,
    as_rgb,
    detection_size,
    load_detector,
)
from dfpipe.runtime.device import DeviceError, resolve_device

SINGLE = [
    "fr_obama_small.jpg",
    "fr_biden2.jpg",
    "fr_john1.jpeg",
    "fr_rose_leslie1.jpg",
    "fr_rose_leslie2.jpg",
    "fr_johnsnow_test1.jpg",
    "fr_32bit_rgba.png",
]
COUNTS = {name: 1 for name in SINGLE} | {"fr_two_people.jpg": 2, "fr_kit_with_rose.jpg": 2, "fd1mb_kids_group.jpg": 8}


@pytest.fixture(scope="module")
def video_frames(real_video) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(real_video))
    frames = []
    for index in range(0, 100, 25):
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = cap.read()
        assert ok, f"could not read frame {index} of {real_video}"
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def assert_same(a: Detections, b: Detections, atol: float = 1e-2) -> None:
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=atol)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=atol)


def test_face_counts_on_real_photos(detector, photo):
    names = list(COUNTS)
    results = detector.detect([photo(n) for n in names])
    found = {n: len(r) for n, r in zip(names, results)}
    assert found == COUNTS
    for r in results:
        assert r.boxes.dtype == np.float32 and r.boxes.shape == (len(r), 4)
        assert r.scores.shape == (len(r),) and r.landmarks.shape == (len(r), 5, 2)
        assert np.all(np.diff(r.scores) <= 0) and np.all(r.scores >= 0.8)


def test_crowd_finds_many_faces(photo):
    crowd = photo("prf_test_crowd.jpg")
    dense = FaceDetector(max_side=None, score_threshold=0.5).detect([crowd])[0]
    assert len(dense) >= 20
    # faces in a crowd are small: the boxes must not be a few giant ones
    sizes = dense.boxes[:, 2] - dense.boxes[:, 0]
    assert np.median(sizes) < crowd.shape[1] / 10
    # overlapping duplicates were suppressed
    overlaps = iou(dense.boxes, dense.boxes) - np.eye(len(dense))
    assert overlaps.max() <= 0.4 + 1e-6


def test_landmark_geometry_on_frontal_faces(detector, photo):
    names = [n for n in COUNTS]
    for name, det in zip(names, detector.detect([photo(n) for n in names])):
        for box, pts in zip(det.boxes, det.landmarks):
            left_eye, right_eye, nose, left_mouth, right_mouth = pts
            assert left_eye[0] < nose[0] < right_eye[0], name  # image-left first
            assert left_mouth[0] < right_mouth[0], name
            assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1]), name
            x1, y1, x2, y2 = box
            assert np.all((pts[:, 0] > x1) & (pts[:, 0] < x2) & (pts[:, 1] > y1) & (pts[:, 1] < y2)), name
            # eyes lie in the upper part of the box, the mouth in the lower part
            height = y2 - y1
            assert (left_eye[1] - y1) / height < 0.6 and (left_mouth[1] - y1) / height > 0.55, name


def test_mirrored_image_mirrors_boxes_and_swaps_sides(detector, photo):
    """Flip the photo left-right: each face's box mirrors, and the new *left* eye (image-left)
    is the mirror of the old *right* eye, within a few percent of the face size."""
    image = photo("fr_two_people.jpg")
    width = image.shape[1]
    plain, flipped = detector.detect([image, image[:, ::-1].copy()])
    assert len(plain) == len(flipped) == 2
    mirrored_boxes = np.stack([width - plain.boxes[:, 2], plain.boxes[:, 1], width - plain.boxes[:, 0], plain.boxes[:, 3]], 1)
    match = iou(mirrored_boxes, flipped.boxes).argmax(1)
    assert sorted(match) == [0, 1]
    for i, j in enumerate(match):
        assert iou(mirrored_boxes[i : i + 1], flipped.boxes[j : j + 1])[0, 0] > 0.85
        mirrored = plain.landmarks[i].copy()
        mirrored[:, 0] = width - mirrored[:, 0]
        mirrored = mirrored[[1, 0, 2, 4, 3]]  # left/right swap
        tolerance = 0.06 * (plain.boxes[i, 2] - plain.boxes[i, 0])
        assert np.abs(mirrored - flipped.landmarks[j]).max() < tolerance


def test_agrees_with_an_independent_lbp_face_detector(detector, photo):
    """scikit-image's bundled OpenCV LBP frontal-face cascade: each face it finds is inside
    exactly one RetinaFace box, and that box's nose landmark lies in (or next to) the cascade's box."""
    cascade = skimage.feature.Cascade(skimage.data.lbp_frontal_face_cascade_filename())
    for name in ("fr_two_people.jpg", "fd1mb_kids_group.jpg", "fr_obama_small.jpg"):
        image = photo(name)
        det = detector.detect([image])[0]
        found = cascade.detect_multi_scale(img=image, scale_factor=1.2, step_ratio=1, min_size=(40, 40), max_size=(400, 400))
        assert found, name
        for face in found:
            cx, cy = face["c"] + face["width"] / 2, face["r"] + face["height"] / 2
            inside = (det.boxes[:, 0] < cx) & (cx < det.boxes[:, 2]) & (det.boxes[:, 1] < cy) & (cy < det.boxes[:, 3])
            assert inside.sum() == 1, name
            # the cascade's boxes are loose (one sits on a boy's cheek here), so allow a
            # quarter of its size around it
            nose, grow = det.landmarks[inside][0, 2], face["width"] / 4
            assert face["c"] - grow < nose[0] < face["c"] + face["width"] + grow, name
            assert face["r"] - grow < nose[1] < face["r"] + face["height"] + grow, name


@pytest.mark.parametrize("name", ["fr_biden2.jpg", "fr_rose_leslie1.jpg", "fd1mb_kids_group.jpg", "fr_two_people.jpg"])
def test_downscaled_detection_agrees_with_full_size(detector, photo, name):
    """Every face found at 640 px is found at full size, with IoU > 0.8 and close landmarks.
    (Full size may add background false positives: the painting behind biden2 scores 0.94,
    one reason frames are downscaled.)"""
    image = photo(name)
    assert max(image.shape[:2]) > detector.max_side  # the default detector really downscales these
    small = detector.detect([image])[0]
    full = FaceDetector(max_side=None).detect([image])[0]
    assert len(small) == COUNTS[name] and len(full) >= len(small)
    overlap = iou(small.boxes, full.boxes)
    assert np.all(overlap.max(1) > 0.8)
    assert len(set(overlap.argmax(1))) == len(small)  # one-to-one
    for i, j in enumerate(overlap.argmax(1)):
        size = full.boxes[j, 2] - full.boxes[j, 0]
        assert np.abs(small.landmarks[i] - full.landmarks[j]).max() < 0.08 * size


def test_small_images_are_not_upscaled_unless_asked(detector, photo):
    image = photo("fr_obama_small.jpg")  # 320 x 240
    assert detection_size(*image.shape[:2], 640) == image.shape[:2]
    assert detection_size(*image.shape[:2], 640, upscale=True) == (480, 640)
    default = detector.detect([image])[0]
    assert_same(default, FaceDetector(max_side=None).detect([image])[0], atol=1e-4)
    upscaled = FaceDetector(upscale=True).detect([image])[0]
    assert len(upscaled) == 1 and iou(upscaled.boxes, default.boxes)[0, 0] > 0.8


def test_batched_equals_one_by_one(video_frames, photo):
    batched = FaceDetector(batch_size=4)
    single = FaceDetector(batch_size=1)
    # same-size video frames plus photos of other sizes, interleaved: order must survive grouping
    images = [video_frames[0], photo("fr_obama_small.jpg"), *video_frames[1:], photo("fr_two_people.jpg")]
    together = batched.detect(images)
    assert len(together) == len(images)
    for image, det in zip(images, together):
        assert_same(det, single.detect([image])[0])
    for det in together[:1] + together[2:-1]:
        assert len(det) == 1  # one presenter in every frame of the FF++ video
    # inputs made ahead (as extract's decode thread does) give the same detections
    ahead = batched.detect(images, inputs=[batched.detection_input(im) for im in images])
    for det, det_ahead in zip(together, ahead):
        assert_same(det, det_ahead, atol=0.0)
    with pytest.raises(DetectError, match="detection_input"):
        batched.detect(images[:2], inputs=[images[0], images[1]])  # full-size frames are not inputs


def test_input_formats(detector, photo, faces_dir):
    rgb = photo("fr_obama_small.jpg")
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    base, with_alpha, from_grey, from_grey1 = detector.detect([rgb, rgba, grey, grey[:, :, None]])
    assert_same(base, with_alpha, atol=1e-4)
    assert len(from_grey) == 1 and iou(from_grey.boxes, base.boxes)[0, 0] > 0.8
    assert_same(from_grey, from_grey1, atol=1e-4)
    # the RGBA PNG read with its alpha channel kept
    png = cv2.cvtColor(cv2.imread(str(faces_dir / "fr_32bit_rgba.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    assert png.shape[2] == 4 and len(detector.detect([png])[0]) == 1
    assert detector.detect([]) == []


def test_no_face_in_a_photo_without_people(detector):
    det = detector.detect([skimage.data.coffee()])[0]
    assert len(det) == 0
    assert det.boxes.shape == (0, 4) and det.landmarks.shape == (0, 5, 2)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32, 2), np.uint8), "H x W x 3"),
        (np.zeros((1, 32, 3), np.uint8), "too small"),
        ("face.jpg", "numpy image"),
    ],
)
def test_bad_images_are_clear_errors(detector, bad, match):
    with pytest.raises(DetectError, match=match):
        detector.detect([bad])
    with pytest.raises(DetectError, match=match):
        as_rgb(bad)


def test_bad_settings_are_clear_errors(retinaface_weights):
    with pytest.raises(DetectError, match="unknown detector"):
        FaceDetector(model="yolo")
    with pytest.raises(DetectError, match="max_side"):
        FaceDetector(max_side=8)
    with pytest.raises(DetectError, match="score_threshold"):
        FaceDetector(score_threshold=1.5)
    with pytest.raises(DetectError, match="batch_size"):
        FaceDetector(batch_size=0)
    with pytest.raises(DeviceError, match="device"):
        FaceDetector(device="tpu")


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(photo, retinaface_weights):
    image = photo("fd1mb_kids_group.jpg")
    on_cpu = FaceDetector(device="cpu").detect([image])[0]
    on_gpu = FaceDetector(device="cuda").detect([image])[0]
    assert_same(on_cpu, on_gpu, atol=0.5)


def test_load_detector_is_cached_per_settings(detector):
    assert load_detector() is detector
    assert load_detector(score_threshold=0.5) is not detector
    assert load_detector(score_threshold=0.5) is load_detector(score_threshold=0.5)


@pytest.mark.skipif(importlib.util.find_spec("facenet_pytorch") is not None, reason="facenet-pytorch is installed")
def test_mtcnn_without_facenet_pytorch_is_a_clear_error():
    with pytest.raises(DetectError, match="pip install facenet-pytorch"):
        FaceDetector(model="mtcnn")


@pytest.mark.skipif(importlib.util.find_spec("facenet_pytorch") is None, reason="facenet-pytorch is not installed")
def test_mtcnn_adapter_gives_the_same_detections_type(photo):
    det = FaceDetector(model="mtcnn").detect([photo("fr_two_people.jpg")])[0]
    assert len(det) == 2 and det.landmarks.shape == (2, 5, 2)
    assert np.all(det.landmarks[:, 0, 0] < det.landmarks[:, 1, 0])
