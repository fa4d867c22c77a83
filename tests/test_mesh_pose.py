"""Face Mesh on real frames and head pose from it: the crop matrix, points landing on
RetinaFace's 5 points, roll under a known image rotation, mirror symmetry of the pose, a
frontal face, and the canonical .obj (found through $DFPIPE_WEIGHTS_DIR)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import need_weights

from dfpipe.pipeline.faces.detect import FaceDetector
from dfpipe.pipeline.faces.mesh import (
    EYE_RING_IMAGE_LEFT,
    EYE_RING_IMAGE_RIGHT,
    MESH_SIZE,
    MOUTH_CORNER_IMAGE_LEFT,
    MOUTH_CORNER_IMAGE_RIGHT,
    NOSE_TIP,
    FaceMesher,
    head_pose,
    load_canonical_model,
    mesh_region_matrix,
    points_to_frame,
)

PHOTOS = [
    "fr_obama_small.jpg",
    "fr_biden2.jpg",
    "fr_john1.jpeg",
    "fr_rose_leslie1.jpg",
    "fr_rose_leslie2.jpg",
    "fr_johnsnow_test1.jpg",
    "fr_two_people.jpg",
    "fr_kit_with_rose.jpg",
]


@pytest.fixture(scope="module")
def canonical_path():
    return need_weights("facemesh_canonical")


@pytest.fixture(scope="module")
def canonical(canonical_path) -> np.ndarray:
    return load_canonical_model(canonical_path)[0]


@pytest.fixture(scope="module")
def mesher(facemesh_weights) -> FaceMesher:
    return FaceMesher()


def run(detector: FaceDetector, mesher: FaceMesher, image: np.ndarray):
    det = detector.detect([image])[0]
    points, scores = mesher.mesh(image, det.boxes, det.landmarks)
    return det, points, scores


def five_points(points: np.ndarray) -> np.ndarray:
    """The mesh's counterparts of RetinaFace's 5 points, in its order (image-left first)."""
    return np.stack(
        [
            points[list(EYE_RING_IMAGE_LEFT), :2].mean(0),
            points[list(EYE_RING_IMAGE_RIGHT), :2].mean(0),
            points[NOSE_TIP, :2],
            points[MOUTH_CORNER_IMAGE_LEFT, :2],
            points[MOUTH_CORNER_IMAGE_RIGHT, :2],
        ]
    )


def largest(det) -> int:
    sides = det.boxes[:, 2:] - det.boxes[:, :2]
    return int(np.argmax(sides.max(1)))


def test_canonical_model_parses(canonical_path):
    vertices, triangles = load_canonical_model(canonical_path)
    assert vertices.shape == (468, 3) and triangles.shape == (898, 3)
    assert triangles.min() == 0 and triangles.max() == 467
    # x to the viewer's right: vertex 33 (image-left eye corner) is at negative x, its
    # mirror 263 at positive x, the nose tip on the midline and near the front
    assert vertices[33, 0] < 0 < vertices[263, 0]
    np.testing.assert_allclose(vertices[33] * [-1, 1, 1], vertices[263], atol=1e-5)
    assert vertices[NOSE_TIP, 0] == 0 and vertices[NOSE_TIP, 2] > vertices[:, 2].max() - 0.2


def test_region_matrix_levels_the_eyes_and_inverts(detector, photo):
    image = photo("fr_two_people.jpg")
    det = detector.detect([image])[0]
    for box, lm in zip(det.boxes, det.landmarks):
        m = mesh_region_matrix(box, lm)
        eyes = lm[:2] @ m[:, :2].T + m[:, 2]
        assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6 and eyes[0, 0] < eyes[1, 0]
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        np.testing.assert_allclose(centre @ m[:, :2].T + m[:, 2], [MESH_SIZE / 2] * 2, atol=1e-6)
        side = 1.5 * max(box[2] - box[0], box[3] - box[1])
        assert np.sqrt(np.linalg.det(m[:, :2])) == pytest.approx(MESH_SIZE / side)
        # points_to_frame undoes the matrix (x, y) and scales z by the same factor
        crop_pts = np.array([[[10.0, 20.0, 5.0], [150.0, 90.0, -3.0]]])
        back = points_to_frame(crop_pts, m)
        again = back[..., :2] @ m[:, :2].T + m[:, 2]
        np.testing.assert_allclose(again, crop_pts[..., :2], atol=1e-3)
        np.testing.assert_allclose(back[..., 2], crop_pts[..., 2] * side / MESH_SIZE, rtol=1e-5)


def test_mesh_points_land_on_retinaface_points(detector, mesher, photo):
    """The mesh's eye centres, nose tip and mouth corners against RetinaFace's 5 points,
    in units of the inter-ocular distance. The two define the points slightly differently
    (RetinaFace's mouth corners sit inside the mesh's 61 / 291 on some faces), so the bound
    is per point; a wrong crop or inverse mapping is off by far more."""
    rel_all, tight = [], 0
    for name in [*PHOTOS, "astronaut"]:
        det, points, scores = run(detector, mesher, photo(name))
        assert len(det) >= 1 and scores.min() > 0.9, name
        for face in range(len(det)):
            lm = det.landmarks[face]
            rel = np.linalg.norm(five_points(points[face]) - lm, axis=1) / np.linalg.norm(lm[1] - lm[0])
            assert rel[:2].max() < 0.12 and rel[2] < 0.15 and rel[3:].max() < 0.20, (name, face, rel.round(3))
            tight += bool(rel.max() < 0.10)
            rel_all.append(rel)
    assert tight >= 4, f"only {tight} faces have all five points within 10% of the eye distance"
    assert np.mean(rel_all) < 0.07, np.mean(rel_all)


def test_mesh_batches_the_faces_of_a_frame(detector, mesher, photo):
    image = photo("fr_kit_with_rose.jpg")
    det, points, scores = run(detector, mesher, image)
    assert points.shape == (len(det), 468, 3) and points.dtype == np.float32 and scores.shape == (len(det),)
    for face in range(len(det)):
        one, score = mesher.mesh(image, det.boxes[face : face + 1], det.landmarks[face : face + 1])
        np.testing.assert_allclose(one[0], points[face], atol=0.05)
        assert score[0] == pytest.approx(scores[face], abs=1e-4)
    empty, none = mesher.mesh(image, np.zeros((0, 4)), np.zeros((0, 5, 2)))
    assert empty.shape == (0, 468, 3) and none.shape == (0,)


def face_pose(detector, mesher, image, canonical):
    det, points, _ = run(detector, mesher, image)
    assert len(det) >= 1
    face = largest(det)
    return np.array(head_pose(points[face], image.shape, canonical)), det.boxes[face]


@pytest.mark.parametrize("name, angle", [("fr_biden2.jpg", 15.0), ("fr_biden2.jpg", -20.0), ("astronaut", 15.0), ("astronaut", -20.0)])
def test_roll_follows_an_image_rotation(detector, mesher, photo, canonical, name, angle):
    """cv2's angle is counter-clockwise on screen; roll is clockwise-positive, so rotating
    the image by `angle` about the face changes roll by -angle."""
    image = photo(name)
    pose, box = face_pose(detector, mesher, image, canonical)
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
    turned = cv2.warpAffine(image, rot, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    turned_pose, _ = face_pose(detector, mesher, turned, canonical)
    assert turned_pose[2] - pose[2] == pytest.approx(-angle, abs=3.0), (pose.round(1), turned_pose.round(1))
    # an in-plane turn leaves yaw and pitch nearly where they were
    assert np.abs(turned_pose[:2] - pose[:2]).max() < 5.0, (pose.round(1), turned_pose.round(1))


@pytest.mark.parametrize("name", ["fr_johnsnow_test1.jpg", "fr_two_people.jpg", "fr_rose_leslie1.jpg", "astronaut"])
def test_mirror_negates_yaw_and_roll(detector, mesher, photo, canonical, name):
    image = photo(name)
    pose, _ = face_pose(detector, mesher, image, canonical)
    mirrored, _ = face_pose(detector, mesher, np.ascontiguousarray(image[:, ::-1]), canonical)
    np.testing.assert_allclose(mirrored, pose * [-1, 1, -1], atol=3.0, err_msg=f"{pose.round(1)} vs {mirrored.round(1)}")


def test_frontal_face_reads_near_zero(detector, mesher, photo, canonical):
    pose, _ = face_pose(detector, mesher, photo("astronaut"), canonical)
    assert abs(pose[0]) < 10 and abs(pose[2]) < 10, pose.round(1)


def test_pose_signs_on_turned_and_tilted_faces(detector, mesher, photo, canonical):
    """Signs one can read off the photos: the face of fr_johnsnow_test1 turns towards the
    image's right (checked by eye); roll agrees with the tilt of RetinaFace's eye line
    (clockwise on screen = the line falling to the right) on every face tilted by more
    than 4 degrees, and is near it in size."""
    snow, _ = face_pose(detector, mesher, photo("fr_johnsnow_test1.jpg"), canonical)
    assert snow[0] > 5, snow.round(1)
    tilted = 0
    for name in PHOTOS:
        image = photo(name)
        det, points, _ = run(detector, mesher, image)
        for face in range(len(det)):
            (lx, ly), (rx, ry) = det.landmarks[face, :2]
            eye_angle = np.degrees(np.arctan2(ry - ly, rx - lx))
            if abs(eye_angle) < 4:
                continue
            roll = head_pose(points[face], image.shape, canonical)[2]
            assert np.sign(roll) == np.sign(eye_angle) and abs(roll - eye_angle) < 6, (name, face, roll, eye_angle)
            tilted += 1
    assert tilted >= 2
