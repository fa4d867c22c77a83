"""MediaPipe Face Mesh (Kartynnik et al. 2019) as a PyTorch module, weights read from the
published `face_landmark.tflite` (Apache-2.0).

The module tree mirrors the TFLite graph layer for layer: a strided 3x3 stem, residual
blocks (depthwise 3x3 -> 1x1 conv, a 2x2 max-pool + zero-channel shortcut when strided or
widening, PReLU after the add), then two heads off the 6x6 trunk, one for the 468 points
and one for the face-presence logit. Every layer carries the TFLite layer name its weights
come from, so loading is strict by name, shape, stride and padding, and no second inference
runtime is needed at run time (the `tflite` package only parses the flatbuffer).

Not offered: the 478-point variant (`face_landmark_with_attention.tflite`, refined lips,
eyes and irises). Its graph calls MediaPipe custom operators (`Landmarks2TransformMatrix`,
...) whose semantics live only in MediaPipe's C++ sources; LiteRT cannot run it either, so
a port would have no reference to be tested against.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import tflite
import torch
import torch.nn as nn
import torch.nn.functional as F

from dfpipe.models.registry import register_model
from dfpipe.runtime.weights import WeightsError, resolve_weights

INPUT_SIZE = 192
NUM_POINTS = 468
WEIGHTS_KEY = "facemesh"

M = TypeVar("M", bound=nn.Module)


def _named(module: M, tflite_name: str) -> M:
    """Tag a layer with the TFLite layer (= output tensor) name its weights come from."""
    module.tflite_name = tflite_name
    return module


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TFLite SAME padding of one axis: output ceil(size / stride), the odd pixel at the end."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv(nn.Conv2d):
    """Conv2d with TFLite's SAME / VALID padding. SAME on a stride-2 layer pads right and
    bottom only, which no symmetric `padding=` of PyTorch reproduces."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, same: bool = True) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups)
        self.same = same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.same:
            return super().forward(x)
        top, bottom = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        if (top, left) == (bottom, right):  # symmetric: let the convolution pad, no copy
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), 1, self.groups)
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0, 1, self.groups)


class ResBlock(nn.Module):
    """Depthwise 3x3 -> 1x1 conv, added to the input (2x2 max-pooled when strided, zero
    channels appended when widening, as TFLite's MAX_POOL_2D + PAD do), then PReLU."""

    def __init__(self, cin: int, cout: int, stride: int, dw: int, conv: int, prelu: int) -> None:
        super().__init__()
        self.dw = _named(Conv(cin, cin, 3, stride, groups=cin), f"depthwise_conv2d_{dw}")
        self.pw = _named(Conv(cin, cout, 1, same=False), f"conv2d_{conv}")
        self.act = _named(nn.PReLU(cout), f"p_re_lu_{prelu}")
        self.stride = stride
        self.extra_channels = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        if self.stride > 1:
            x = F.max_pool2d(x, self.stride)
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return self.act(x + y)


def _squeeze(cin: int, cout: int, conv: int, prelu: int) -> nn.Sequential:
    return nn.Sequential(_named(Conv(cin, cout, 1, same=False), f"conv2d_{conv}"), _named(nn.PReLU(cout), f"p_re_lu_{prelu}"))


#: trunk blocks after the stem: (in, out, stride); block i uses depthwise_conv2d_i, conv2d_{i+1}, p_re_lu_{i+1}
_TRUNK = [(16, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1),
          (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1), (128, 128, 2), (128, 128, 1), (128, 128, 1)]


class FaceMesh(nn.Module):
    """192 x 192 RGB face crop -> 468 (x, y, z) points in input pixels and a face-presence score."""

    def __init__(self) -> None:
        super().__init__()
        stem = nn.Sequential(_named(Conv(3, 16, 3, 2), "conv2d_1"), _named(nn.PReLU(16), "p_re_lu_1"))
        blocks = [ResBlock(cin, cout, s, i, i + 1, i + 1) for i, (cin, cout, s) in enumerate(_TRUNK, start=1)]
        self.trunk = nn.Sequential(stem, *blocks)  # -> N x 128 x 6 x 6
        self.mesh = nn.Sequential(
            ResBlock(128, 128, 2, 15, 16, 16),
            ResBlock(128, 128, 1, 16, 17, 17),
            ResBlock(128, 128, 1, 17, 18, 18),
            _squeeze(128, 32, 19, 19),
            ResBlock(32, 32, 1, 18, 20, 20),
            _named(Conv(32, NUM_POINTS * 3, 3, 3, same=False), "conv2d_21"),
        )
        self.presence = nn.Sequential(
            ResBlock(128, 128, 2, 23, 28, 26),
            _squeeze(128, 32, 29, 27),
            ResBlock(32, 32, 1, 24, 30, 28),
            _named(Conv(32, 1, 3, 3, same=False), "conv2d_31"),
        )
        self.default_cfg = {
            "input_size": (INPUT_SIZE, INPUT_SIZE),
            "input": "RGB float in [0, 1], N x 3 x 192 x 192",
            "num_points": NUM_POINTS,
            "weights": "face_landmark.tflite",
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 468, 3) points (x, y in input pixels, z relative depth) and (N,) scores."""
        feats = self.trunk(x)
        points = self.mesh(feats).reshape(x.shape[0], NUM_POINTS, 3)
        return points, torch.sigmoid(self.presence(feats).reshape(x.shape[0]))

    def preprocess(self, crops_rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, 192, 192, 3) uint8 RGB crops -> the network's input on the model's device."""
        t = torch.as_tensor(crops_rgb)
        if t.ndim != 4 or tuple(t.shape[1:]) != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected N x {INPUT_SIZE} x {INPUT_SIZE} x 3 RGB crops, got {tuple(t.shape)}")
        device = next(self.parameters()).device
        return (t.to(device).permute(0, 3, 1, 2).float() / 255.0).contiguous()


# --------------------------------------------------------------------------- reading the .tflite file

_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_DTYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16}
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU")
_SUPPORTED = {*_WEIGHTED, "ADD", "MAX_POOL_2D", "PAD", "DEQUANTIZE"}


@dataclass(frozen=True)
class TFLiteLayer:
    """One weighted operator: its constants in TFLite layout (float32) and its options."""

    op: str
    tensors: tuple[np.ndarray, ...]  # CONV_2D: OHWI kernel, bias; DEPTHWISE: 1HWC kernel, bias; PRELU: alpha
    stride: tuple[int, int] = (1, 1)
    same: bool = True
    activation: int = tflite.ActivationFunctionType.NONE
    depth_multiplier: int = 1


@dataclass(frozen=True)
class TFLiteGraph:
    layers: dict[str, TFLiteLayer]  # by output tensor name (the Keras layer name)
    op_counts: Counter[str]
    paddings: list[np.ndarray]  # each PAD operator's (4, 2) paddings
    input_shape: tuple[int, ...]
    unused: list[str]  # constant tensors no operator reads


def read_tflite(path: str | Path) -> TFLiteGraph:
    """Parse the operators and constants of a float / float16 TFLite model."""
    data = Path(path).read_bytes()
    if data[4:8] != b"TFL3":
        raise WeightsError(f"{path} is not a TFLite model (no TFL3 identifier)")
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]

    def op_name(op: tflite.Operator) -> str:
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == tflite.BuiltinOperator.CUSTOM:
            return f"custom op {code.CustomCode().decode()}"
        return _OP_NAMES.get(builtin, str(builtin))

    names = [op_name(op) for op in ops]
    unsupported = sorted(set(names) - _SUPPORTED)
    if unsupported:
        raise WeightsError(f"{path} uses operators FaceMesh does not have: {', '.join(unsupported)}")
    dequantized = {op.Outputs(0): op.Inputs(0) for op, name in zip(ops, names) if name == "DEQUANTIZE"}
    used: set[int] = set()

    def constant(index: int) -> np.ndarray:
        source = dequantized.get(index, index)  # float16 weights sit behind a DEQUANTIZE
        tensor = graph.Tensors(source)
        raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(raw, int) or tensor.Type() not in (*_DTYPES, tflite.TensorType.INT32):
            raise WeightsError(f"{path}: tensor {tensor.Name().decode()} is not a constant")
        used.add(source)
        dtype = _DTYPES.get(tensor.Type(), np.int32)
        return np.frombuffer(raw.tobytes(), dtype).reshape(tensor.ShapeAsNumpy()).astype(np.float32)

    layers: dict[str, TFLiteLayer] = {}
    paddings = []
    for op, name in zip(ops, names):
        out_name = graph.Tensors(op.Outputs(0)).Name().decode()
        if name == "PAD":
            paddings.append(constant(op.Inputs(1)))
        elif name == "PRELU":
            layers[out_name] = TFLiteLayer(name, (constant(op.Inputs(1)),))
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts = tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            table = op.BuiltinOptions()
            opts.Init(table.Bytes, table.Pos)
            if (opts.DilationHFactor(), opts.DilationWFactor()) != (1, 1):
                raise WeightsError(f"{path}: {out_name} is dilated, FaceMesh has no dilated layers")
            layers[out_name] = TFLiteLayer(
                name,
                (constant(op.Inputs(1)), constant(op.Inputs(2))),
                stride=(opts.StrideH(), opts.StrideW()),
                same=opts.Padding() == tflite.Padding.SAME,
                activation=opts.FusedActivationFunction(),
                depth_multiplier=opts.DepthMultiplier() if name == "DEPTHWISE_CONV_2D" else 1,
            )
    constants = {i for i in range(graph.TensorsLength())
                 if not isinstance(model.Buffers(graph.Tensors(i).Buffer()).DataAsNumpy(), int)}
    return TFLiteGraph(
        layers=layers,
        op_counts=Counter(names),
        paddings=paddings,
        input_shape=tuple(int(d) for d in graph.Tensors(graph.Inputs(0)).ShapeAsNumpy()),
        unused=sorted(graph.Tensors(i).Name().decode() for i in constants - used),
    )


def _torch_layout(module: nn.Module, layer: TFLiteLayer) -> tuple[torch.Tensor, ...]:
    """TFLite NHWC constants -> this module's parameters (OIHW kernels, (C,) alphas)."""
    if isinstance(module, nn.PReLU):
        return (torch.from_numpy(layer.tensors[0].reshape(-1)),)
    kernel, bias = (torch.from_numpy(t) for t in layer.tensors)
    # CONV_2D kernels are O x H x W x I; DEPTHWISE ones 1 x H x W x (C * multiplier), channel-major
    kernel = kernel.permute(0, 3, 1, 2) if layer.op == "CONV_2D" else kernel.permute(3, 0, 1, 2)
    return kernel, bias


def _padding(same: bool) -> str:
    return "SAME" if same else "VALID"


def _check_layer(module: nn.Module, name: str, layer: TFLiteLayer, path: str | Path) -> None:
    if isinstance(module, nn.PReLU):
        expected = "PRELU"
    else:
        expected = "DEPTHWISE_CONV_2D" if module.groups > 1 else "CONV_2D"
    if layer.op != expected:
        raise WeightsError(f"{path}: layer {name} is {layer.op}, FaceMesh expects {expected}")
    if expected == "PRELU":
        return
    problems = []
    if layer.stride != module.stride:
        problems.append(f"stride {layer.stride}, expected {module.stride}")
    if layer.same != module.same:
        problems.append(f"{_padding(layer.same)} padding, expected {_padding(module.same)}")
    if layer.activation != tflite.ActivationFunctionType.NONE:
        problems.append(f"fused activation {layer.activation}, expected none")
    if layer.depth_multiplier != (module.out_channels // module.in_channels if module.groups > 1 else 1):
        problems.append(f"depth multiplier {layer.depth_multiplier}")
    if problems:
        raise WeightsError(f"{path}: layer {name} has {'; '.join(problems)}")


def load_tflite_weights(model: FaceMesh, path: str | Path) -> None:
    """Copy every constant of the file into `model`, strictly: the same layer names on both
    sides, no tensor left unused, every op type, shape, stride and padding as built, and as
    many ADD / MAX_POOL_2D / PAD operators as the residual blocks have shortcuts."""
    graph = read_tflite(path)
    if graph.input_shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
        raise WeightsError(f"{path}: input is {graph.input_shape}, FaceMesh expects (1, 192, 192, 3)")
    modules = {m.tflite_name: m for m in model.modules() if hasattr(m, "tflite_name")}
    missing, unknown = sorted(set(modules) - set(graph.layers)), sorted(set(graph.layers) - set(modules))
    if missing or unknown or graph.unused:
        raise WeightsError(f"{path} does not fit FaceMesh: missing layers {missing}, unknown layers {unknown}, "
                           f"unused tensors {graph.unused}")
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    shortcuts = Counter(
        ADD=len(blocks),
        MAX_POOL_2D=sum(b.stride > 1 for b in blocks),
        PAD=sum(b.extra_channels > 0 for b in blocks),
    )
    found = Counter({op: graph.op_counts[op] for op in shortcuts})
    pads = sorted(b.extra_channels for b in blocks if b.extra_channels)
    if found != shortcuts or sorted(int(p[3, 1]) for p in graph.paddings) != pads or any(
        p[:3].any() or p[3, 0] for p in graph.paddings
    ):
        raise WeightsError(f"{path}: shortcut operators {dict(found)} do not fit FaceMesh's {dict(shortcuts)}")
    with torch.no_grad():
        for name, module in modules.items():
            layer = graph.layers[name]
            _check_layer(module, name, layer, path)
            for param, value in zip(module.parameters(), _torch_layout(module, layer), strict=True):
                if param.shape != value.shape:
                    raise WeightsError(f"{path}: {name} has shape {tuple(value.shape)}, "
                                       f"FaceMesh expects {tuple(param.shape)}")
                param.copy_(value)


def build_facemesh(pretrained: bool = False, weights: str | Path | None = None) -> FaceMesh:
    """A FaceMesh in eval mode; with `pretrained` (or an explicit `weights` path) its
    weights come from the weights cache (`face_landmark.tflite`, pinned by sha256)."""
    model = FaceMesh()
    if pretrained or weights is not None:
        load_tflite_weights(model, resolve_weights(WEIGHTS_KEY, weights))
    return model.eval()


@register_model("facemesh")
def facemesh(pretrained: bool = False, weights: str | Path | None = None) -> FaceMesh:
    return build_facemesh(pretrained, weights)
