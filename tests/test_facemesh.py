"""Face Mesh port: the published .tflite loads strictly, and on real face crops our points
and presence scores equal Google's LiteRT runtime on the same file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from dfpipe.models.facemesh import FaceMesh, build_facemesh, load_tflite_weights, read_tflite
from dfpipe.models.registry import CATALOGUE, count_parameters, create_model, list_models
from dfpipe.runtime.weights import REGISTRY, WeightsError

PHOTOS = {  # photo in ../shared/data/faces -> which detected face (by score rank)
    "fr_biden2.jpg": 0,
    "fr_john1.jpeg": 0,
    "fr_rose_leslie2.jpg": 0,
    "fr_obama_small.jpg": 0,
    "fr_two_people.jpg": 1,
    "fr_kit_with_rose.jpg": 1,
    "prf_test_crowd.jpg": 0,
}
#: plain background regions of real photos (photo, y, x, side): no face in them
BACKGROUNDS = {"biden_wall": ("fr_biden2.jpg", 0, 0, 300), "john_rock": ("fr_john1.jpeg", 300, 0, 280)}


def _read(path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])


def square_crop(image: np.ndarray, box: np.ndarray, scale: float = 1.5, size: int = 192) -> np.ndarray:
    """The square MediaPipe feeds Face Mesh: centred on the box, side `scale` x its larger
    side, resized to `size` (outside the image is black)."""
    x1, y1, x2, y2 = box
    side = scale * max(x2 - x1, y2 - y1)
    k = size / side
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    affine = np.float32([[k, 0, size / 2 - k * cx], [0, k, size / 2 - k * cy]])
    return cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def weights_path(facemesh_weights):
    return facemesh_weights


@pytest.fixture(scope="module")
def model(weights_path) -> FaceMesh:
    return create_model("facemesh", pretrained=True)


@pytest.fixture(scope="module")
def crops(faces_dir, retinaface_weights) -> dict[str, np.ndarray]:
    """Real face crops, found by dfpipe's RetinaFace: the astronaut and the shared photos."""
    from dfpipe.pipeline.faces.detect import FaceDetector

    detector = FaceDetector()
    images = {"astronaut": skimage.data.astronaut()} | {name: _read(faces_dir / name) for name in PHOTOS}
    ranks = {"astronaut": 0} | PHOTOS
    found = detector.detect(list(images.values()))
    return {name: square_crop(img, det.boxes[ranks[name]]) for (name, img), det in zip(images.items(), found)}


@pytest.fixture(scope="module")
def litert(weights_path):
    interpreter_cls = pytest.importorskip("ai_edge_litert.interpreter").Interpreter
    interpreter = interpreter_cls(model_path=str(weights_path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}

    def run(crop: np.ndarray) -> tuple[np.ndarray, float]:
        interpreter.set_tensor(inp, crop[None].astype(np.float32) / 255.0)
        interpreter.invoke()
        points = interpreter.get_tensor(outputs["conv2d_21"]).reshape(468, 3)
        logit = float(interpreter.get_tensor(outputs["conv2d_31"]).reshape(()))
        return points, 1.0 / (1.0 + np.exp(-logit))

    return run


def _run(model: FaceMesh, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        points, score = model(model.preprocess(np.stack(crops)))
    return points.cpu().numpy(), score.cpu().numpy()


def test_registered_as_face_landmarks():
    assert CATALOGUE["facemesh"].kind == "face_landmarks"
    assert list_models("face_landmarks") == ["facemesh"]
    model = create_model("facemesh")  # no weights needed to build it
    assert model.default_cfg["input_size"] == (192, 192)
    assert model.default_cfg["weights"] == REGISTRY["facemesh"].name == "face_landmark.tflite"
    assert count_parameters(model) == 604_685
    assert not model.training


def test_weights_load_strictly(weights_path, model):
    graph = read_tflite(weights_path)
    assert graph.unused == []
    assert graph.op_counts == {"CONV_2D": 25, "DEPTHWISE_CONV_2D": 20, "PRELU": 23, "ADD": 20,
                               "MAX_POOL_2D": 6, "PAD": 3, "DEQUANTIZE": 113}
    named = {m.tflite_name: m for m in model.modules() if hasattr(m, "tflite_name")}
    assert set(named) == set(graph.layers) and len(named) == 25 + 20 + 23
    # every float in the file is one parameter of ours, and nothing else is
    assert count_parameters(model) == sum(t.size for layer in graph.layers.values() for t in layer.tensors)
    kernel, bias = graph.layers["conv2d_1"].tensors  # O x H x W x I
    assert torch.equal(model.trunk[0][0].weight, torch.from_numpy(kernel).permute(0, 3, 1, 2))
    assert torch.equal(model.trunk[0][0].bias, torch.from_numpy(bias))
    dw = graph.layers["depthwise_conv2d_23"].tensors[0]  # 1 x H x W x C
    assert torch.equal(model.presence[0].dw.weight, torch.from_numpy(dw).permute(3, 0, 1, 2))


def test_points_and_score_equal_litert(model, crops, litert):
    assert len(crops) >= 4
    for name, crop in crops.items():
        ref_points, ref_score = litert(crop)
        points, score = _run(model, [crop])
        point_diff = np.abs(points[0, :, :2] - ref_points[:, :2]).max()
        score_diff = abs(float(score[0]) - ref_score)
        print(f"{name}: max point diff {point_diff:.2e} px, score diff {score_diff:.2e}, score {ref_score:.4f}")
        assert point_diff < 0.5, name
        assert np.abs(points[0, :, 2] - ref_points[:, 2]).max() < 0.5, name
        assert score_diff < 1e-3, name
        assert ref_score > 0.5, f"{name}: the crop should hold a face"
        assert 0 <= points[0, :, :2].min() and points[0, :, :2].max() <= 192, name


def test_batched_equals_one_by_one(model, crops):
    batch = list(crops.values())
    points, scores = _run(model, batch)
    assert points.shape == (len(batch), 468, 3) and scores.shape == (len(batch),)
    for i, crop in enumerate(batch):
        one_points, one_score = _run(model, [crop])
        np.testing.assert_allclose(points[i], one_points[0], atol=1e-3)
        np.testing.assert_allclose(scores[i], one_score[0], atol=1e-5)


def test_background_scores_far_below_faces(model, crops, faces_dir, litert):
    backgrounds = []
    for photo, y, x, side in BACKGROUNDS.values():
        region = _read(faces_dir / photo)[y : y + side, x : x + side]
        backgrounds.append(cv2.resize(region, (192, 192), interpolation=cv2.INTER_AREA))
    _, face_scores = _run(model, list(crops.values()))
    _, background_scores = _run(model, backgrounds)
    for crop, score in zip(backgrounds, background_scores):
        assert abs(score - litert(crop)[1]) < 1e-3
    assert background_scores.max() < 0.1
    assert face_scores.min() > 0.9


def test_cuda_matches_cpu(model, crops):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    batch = list(crops.values())
    cpu_points, cpu_scores = _run(model, batch)
    gpu = build_facemesh(pretrained=True).cuda()
    gpu_points, gpu_scores = _run(gpu, batch)
    assert np.abs(gpu_points - cpu_points).max() < 0.05
    assert np.abs(gpu_scores - cpu_scores).max() < 1e-3


def test_preprocess_checks_shape(model):
    with pytest.raises(ValueError, match="192 x 192 x 3"):
        model.preprocess(np.zeros((1, 128, 128, 3), np.uint8))
    x = model.preprocess(np.full((2, 192, 192, 3), 255, np.uint8))
    assert x.shape == (2, 3, 192, 192) and x.dtype == torch.float32 and float(x.max()) == 1.0


def test_wrong_files_give_clear_errors(weights_path, tmp_path):
    attention = weights_path.with_name("face_landmark_with_attention.tflite")
    if attention.is_file():
        with pytest.raises(WeightsError, match="sha256"):  # the pinned hash refuses it
            build_facemesh(weights=attention)
        with pytest.raises(WeightsError, match="custom op"):  # and the graph is not ours
            load_tflite_weights(FaceMesh(), attention)
    junk = tmp_path / "face_landmark.tflite"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(WeightsError, match="not a TFLite model"):
        load_tflite_weights(FaceMesh(), junk)
    narrow = FaceMesh()
    narrow.presence[-1].weight = torch.nn.Parameter(torch.zeros(1, 32, 2, 2))
    with pytest.raises(WeightsError, match="conv2d_31 has shape"):
        load_tflite_weights(narrow, weights_path)


def test_missing_weights_offline_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv("DFPIPE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("DFPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DFPIPE_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        create_model("facemesh", pretrained=True)
    message = str(err.value)
    for needed in ("face_landmark.tflite", REGISTRY["facemesh"].sha256, "DFPIPE_WEIGHTS_DIR", "mediapipe==0.10.21"):
        assert needed in message
