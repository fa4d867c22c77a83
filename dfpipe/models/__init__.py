"""Networks: RetinaFace, M2TR, MAT, DoveNet, and the registry that builds them."""

#: face detectors `dfpipe.pipeline.faces.detect` loads; here, so checking a setting imports no torch
DETECTOR_MODELS = ("mobilenet0.25", "resnet50", "mtcnn")
