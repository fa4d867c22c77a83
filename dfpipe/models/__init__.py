"""Networks: RetinaFace, M2TR, MAT, DoveNet, and the registry that builds them.

`from dfpipe.models import create_model` works as `timm.create_model` does. Importing this
package loads no torch (the Dask client checks `DETECTOR_MODELS`): the registry imports a
model's module only when that model is built.
"""

from dfpipe.models.registry import count_parameters, create_model, list_models, register_model

#: face detectors `dfpipe.pipeline.faces.detect` loads; here, so checking a setting imports no torch
DETECTOR_MODELS = ("mobilenet0.25", "resnet50", "mtcnn")

__all__ = ["DETECTOR_MODELS", "count_parameters", "create_model", "list_models", "register_model"]
