"""Official ONNX files into the nets of this package, by graph structure, then verified.

The files were written by other code than ours: DWPose's ``yolox_l.onnx`` by Megvii's
YOLOX (other module names, another execution order, BatchNorm folded into the convs),
``dw-ll_ucoco_384.onnx`` by mmdeploy. Initializer names are unreliable (folding renames
them), and execution order differs between codebases, so weights are matched by where
they sit in the dataflow: both graphs (the ONNX graph and our module's autograd graph)
are walked depth-first from the outputs, operands in order. That visits the same
operations in the same order whenever the two codebases give each operation its operands
in the same order, as mmdet, mmpose and Megvii's YOLOX do (concatenations main branch
first, residual sums branch first, heads box/objectness/class), whatever order they run
them in. Three kinds of weights are collected in that order and paired one to one,
shapes checked:

- convolutions (with a following BatchNormalization, or with it folded into a bias),
- matrix products with a constant operand (``nn.Linear``),
- element-wise scales and shifts by learnt constants (the RTMCC head's ScaleNorm gains,
  GAU ``gamma``/``beta`` and residual scale).

A folded Conv+BN becomes the ConvModule's conv plus an identity BN carrying the bias
(weight 1, mean 0, variance 1 - eps), so the result keeps the official state-dict names.
``verify`` then runs the file (onnxruntime) and the module (torch) on the same random
inputs and refuses a conversion whose outputs differ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..extras import MissingExtraError, require
from ..runtime import parse_size
from .arch import ConversionError, NetConfig, candidates, choose, shape_text
from .checkpoint import load_weights

VERIFY_TOLERANCE = 1e-3  # max |onnx - torch| relative to the output's largest magnitude
PARAMETER_OPS = ("Mul", "Add")  # element-wise ops that apply learnt constants
LINEAR_OPS = ("MatMul", "Gemm")


@dataclass
class Slot:
    """One weight-bearing operation: where it is and what it holds."""

    kind: str  # "conv", "linear" or "affine"
    where: str  # node or module name, for messages
    shape: tuple[int, ...]  # the weight's shape in torch layout
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # file side
    attrs: dict[str, object] = field(default_factory=dict)


# ---- the ONNX side ------------------------------------------------------------------


class _Graph:
    """Producers, consumers and constant values of an ONNX graph."""

    def __init__(self, proto) -> None:
        from onnx import numpy_helper

        self.graph = proto.graph
        self.values = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.producer = {}
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
            if node.op_type == "Constant":
                self.values[node.output[0]] = _constant_value(node, numpy_helper)

    def const(self, name: str) -> np.ndarray | None:
        """The value of a tensor computed from constants alone by a few layout ops, else None."""
        if name in self.values:
            return self.values[name]
        node = self.producer.get(name)
        if node is None or node.op_type not in _LAYOUT_OPS:
            return None
        inputs = [self.const(i) if i else None for i in node.input]
        if inputs[0] is None:
            return None
        value = _LAYOUT_OPS[node.op_type](inputs, _attributes(node))
        self.values[name] = value
        return value

    def walk(self) -> list:
        """Nodes in depth-first post-order from the outputs, operands in order.

        Shape computations are not followed: they read a tensor's size, not its data.
        """
        order, seen = [], set()
        stack = [(self.producer.get(o.name), False) for o in reversed(self.graph.output)]
        while stack:
            node, done = stack.pop()
            if node is None:
                continue
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            if node.op_type != "Shape":
                stack += [(self.producer.get(i), False) for i in reversed(node.input) if i]
        return order


def _constant_value(node, numpy_helper) -> np.ndarray:
    attr = node.attribute[0]
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    if attr.name in ("value_float", "value_int"):
        return np.array(attr.f if attr.name == "value_float" else attr.i)
    if attr.name in ("value_floats", "value_ints"):
        return np.array(attr.floats if attr.name == "value_floats" else attr.ints)
    raise ConversionError(f"unsupported Constant node {node.name!r} ({attr.name})")


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _axes(inputs, attrs) -> list[int]:
    axes = attrs.get("axes")
    if axes is None and len(inputs) > 1 and inputs[1] is not None:
        axes = inputs[1].tolist()
    return list(axes or [])


def _unsqueeze(inputs, attrs) -> np.ndarray:
    axes = _axes(inputs, attrs)
    rank = inputs[0].ndim + len(axes)
    value = inputs[0]
    for axis in sorted(a % rank for a in axes):
        value = np.expand_dims(value, axis)
    return value


def _reshape(inputs, attrs) -> np.ndarray:
    shape = [d if d != 0 else inputs[0].shape[i] for i, d in enumerate(inputs[1].tolist())]
    return inputs[0].reshape(shape)


_LAYOUT_OPS = {
    "Identity": lambda inputs, attrs: inputs[0],
    "Cast": lambda inputs, attrs: inputs[0].astype(np.float32),
    "Transpose": lambda inputs, attrs: np.transpose(inputs[0], attrs.get("perm")),
    "Unsqueeze": _unsqueeze,
    "Squeeze": lambda inputs, attrs: np.squeeze(inputs[0], tuple(_axes(inputs, attrs)) or None),
    "Reshape": _reshape,
}


def file_slots(proto) -> list[Slot]:
    """The weight-bearing operations of an ONNX model, in dataflow order."""
    graph = _Graph(proto)
    slots = []
    for node in graph.walk():
        if node.op_type == "Conv":
            slots.append(_conv_slot(graph, node))
        elif node.op_type in LINEAR_OPS:
            slot = _linear_slot(graph, node)
            if slot is not None:
                slots.append(slot)
        elif node.op_type in PARAMETER_OPS:
            slot = _affine_slot(graph, node)
            if slot is not None:
                slots.append(slot)
    return slots


def _conv_slot(graph: _Graph, node) -> Slot:
    weight = graph.const(node.input[1])
    if weight is None:
        raise ConversionError(f"Conv {node.name!r} has a computed weight; not an exported model")
    arrays = {"weight": weight}
    if len(node.input) > 2 and node.input[2]:
        arrays["bias"] = graph.const(node.input[2])
    attrs = _attributes(node)
    users = graph.consumers.get(node.output[0], [])
    if len(users) == 1 and users[0].op_type == "BatchNormalization":
        bn = users[0]
        for key, name in zip(("bn_weight", "bn_bias", "bn_mean", "bn_var"), bn.input[1:5]):
            arrays[key] = graph.const(name)
        attrs["bn_eps"] = _attributes(bn).get("epsilon", 1e-5)
    return Slot("conv", node.name or node.output[0], tuple(weight.shape), arrays, attrs)


def _linear_slot(graph: _Graph, node) -> Slot | None:
    data, weight = graph.const(node.input[0]), graph.const(node.input[1])
    if data is not None or weight is None or weight.ndim != 2:
        return None
    attrs = _attributes(node)
    if node.op_type == "Gemm":
        if attrs.get("transA", 0) or len(node.input) > 2:
            return None  # not a bias-free nn.Linear
        weight = weight * attrs.get("alpha", 1.0)
        weight = weight if attrs.get("transB", 0) else weight.T
    else:
        weight = weight.T
    return Slot("linear", node.name or node.output[0], tuple(weight.shape), {"weight": weight})


def _affine_slot(graph: _Graph, node) -> Slot | None:
    """A Mul/Add by a learnt float constant: a vector, or a scalar gain feeding a Linear.

    Scalars elsewhere are the architecture's fixed constants (1/sqrt(d), eps, ...).
    """
    values = [graph.const(i) for i in node.input]
    if len(values) != 2 or (values[0] is None) == (values[1] is None):
        return None
    value = values[0] if values[0] is not None else values[1]
    if value.dtype.kind != "f":
        return None
    feeds_linear = any(
        user.op_type in LINEAR_OPS and user.input[0] == node.output[0]
        for user in graph.consumers.get(node.output[0], [])
    )
    if value.size == 1 and not (node.op_type == "Mul" and feeds_linear):
        return None
    return Slot(
        "affine", node.name or node.output[0], (value.size,), {"value": value}, {"op": node.op_type}
    )


# ---- the torch side -----------------------------------------------------------------


def module_slots(config: NetConfig) -> list[Slot]:
    """The weight-bearing operations of our module, in dataflow order (meta device, no memory).

    Walks the autograd graph of one forward pass from the outputs, operands in order, the
    same walk as ``_Graph.walk``; a parameter is placed where its operation reads it.
    """
    model = config.build_meta().eval()
    names = {id(p): n for n, p in model.named_parameters()}
    outputs = model(torch.zeros(1, 3, *config.input_size, device="meta"))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    slots, seen = [], set()
    stack = [(o.grad_fn, None) for o in reversed(outputs)]
    while stack:
        fn, parent = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):  # a parameter leaf
            slot = _param_slot(model, names[id(fn.variable)], parent)
            if slot is not None:
                slots.append(slot)
            continue
        stack += [(child, fn) for child, _ in reversed(fn.next_functions)]
    return slots


def _param_slot(model: nn.Module, name: str, parent) -> Slot | None:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    param = getattr(owner, attr)
    if isinstance(owner, nn.Conv2d) and attr == "weight":
        parent_name = owner_name.rpartition(".")[0]
        bn = getattr(model.get_submodule(parent_name), "bn", None) if parent_name else None
        attrs = {"group": owner.groups, "strides": list(owner.stride)}
        if isinstance(bn, nn.BatchNorm2d) and owner_name.endswith(".conv"):
            attrs["bn"] = f"{parent_name}.bn"
            attrs["bn_eps"] = bn.eps
        return Slot("conv", owner_name, tuple(param.shape), attrs=attrs)
    if isinstance(owner, nn.Linear) and attr == "weight":
        return Slot("linear", owner_name, tuple(param.shape))
    if isinstance(owner, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
        return None  # biases and BatchNorm go with their convolution
    op = type(parent).__name__.removesuffix("Backward0")
    return Slot("affine", name, (param.numel(),), attrs={"op": op, "shape": tuple(param.shape)})


# ---- pairing --------------------------------------------------------------------------


def _by_kind(slots: list[Slot]) -> dict[str, list[Slot]]:
    return {kind: [s for s in slots if s.kind == kind] for kind in ("conv", "linear", "affine")}


def _mismatches(ours: list[Slot], theirs: list[Slot]) -> list[str]:
    problems = []
    their_kinds = _by_kind(theirs)
    for kind, mine in _by_kind(ours).items():
        other = their_kinds[kind]
        if len(mine) != len(other):
            problems.append(f"{len(other)} {kind} weights in the file, {len(mine)} expected")
        for a, b in zip(mine, other):
            if a.shape != b.shape:
                problems.append(
                    f"{a.where} expects {shape_text(a.shape)}, {b.where} has {shape_text(b.shape)}"
                )
            elif kind == "conv" and (a.attrs["group"], a.attrs["strides"]) != (
                b.attrs.get("group", 1),
                list(b.attrs.get("strides", [1, 1])),
            ):
                problems.append(f"{a.where}: groups/strides differ from {b.where}")
            elif kind == "affine" and a.attrs["op"] != b.attrs["op"]:
                problems.append(f"{a.where} is a {a.attrs['op']}, {b.where} a {b.attrs['op']}")
    return problems


def _state_dict(pairs: list[tuple[Slot, Slot]]) -> dict[str, torch.Tensor]:
    """Our state dict from (our slot, the file's slot) pairs."""
    state: dict[str, np.ndarray] = {}
    for ours, theirs in pairs:
        if ours.kind == "conv":
            state.update(_conv_weights(ours, theirs))
        elif ours.kind == "linear":
            state[f"{ours.where}.weight"] = theirs.arrays["weight"]
        else:
            state[ours.where] = theirs.arrays["value"].reshape(ours.attrs["shape"])
    # Copies: the file may share one array between equal initializers.
    return {k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()}


def _conv_weights(ours: Slot, theirs: Slot) -> dict[str, np.ndarray]:
    weight = theirs.arrays["weight"]
    channels = weight.shape[0]
    bias = theirs.arrays.get("bias")
    bias = np.zeros(channels, np.float32) if bias is None else bias
    out = {f"{ours.where}.weight": weight}
    if "bn" not in ours.attrs:
        if "bn_weight" in theirs.arrays:
            raise ConversionError(f"{theirs.where} has a BatchNorm where {ours.where} has none")
        out[f"{ours.where}.bias"] = bias
        return out
    bn, eps = ours.attrs["bn"], ours.attrs["bn_eps"]
    if "bn_weight" in theirs.arrays:  # keep the file's BN; its conv bias shifts the mean
        var = theirs.arrays["bn_var"]
        # Same sqrt(var + eps) under our eps: fold the difference into the BN weight.
        gain = np.sqrt((var + eps) / (var + theirs.attrs["bn_eps"]))
        out |= {
            f"{bn}.weight": theirs.arrays["bn_weight"] * gain,
            f"{bn}.bias": theirs.arrays["bn_bias"],
            f"{bn}.running_mean": theirs.arrays["bn_mean"] - bias,
            f"{bn}.running_var": var,
        }
    else:  # BN folded into the conv: an identity BN that adds the bias
        out |= {
            f"{bn}.weight": np.ones(channels, np.float32),
            f"{bn}.bias": bias,
            f"{bn}.running_mean": np.zeros(channels, np.float32),
            f"{bn}.running_var": np.full(channels, 1.0 - eps, np.float32),
        }
    return out


# ---- entry points ---------------------------------------------------------------------


def convert_onnx(
    path: str | os.PathLike,
    arch: str | None = None,
    input_size: tuple[int, int] | None = None,
) -> tuple[nn.Module, NetConfig]:
    """The module (eval mode, float32, CPU) holding the weights of an ONNX file.

    ``arch`` names the architecture (else every official size is tried); ``input_size``
    overrides the one read from the file.
    """
    path = Path(path)
    proto = _load_proto(path)
    theirs = file_slots(proto)
    convs = [s for s in theirs if s.kind == "conv"]
    linears = [s for s in theirs if s.kind == "linear"]
    if not convs:
        raise ConversionError("the graph holds no convolutions: not an RTMPose or YOLOX model")
    if len(proto.graph.output) == 2:  # RTMPose: simcc_x, simcc_y
        if len(linears) < 2:
            raise ConversionError("the graph has no SimCC classifiers: not an RTMPose model")
        # The classifiers give the input size (2 bins a pixel), the last conv the keypoints.
        size = input_size or (linears[-1].shape[0] // 2, linears[-2].shape[0] // 2)
        configs = candidates("pose", arch, size, num_keypoints=convs[-1].shape[0])
    else:  # YOLOX: the last conv is the last level's classifier
        size = input_size or _static_input_size(proto)
        configs = candidates("det", arch, size, num_classes=convs[-1].shape[0])
    slots_of = {}

    def mismatches(config: NetConfig) -> list[str]:
        slots_of[config] = module_slots(config)
        return _mismatches(slots_of[config], theirs)

    config = choose(configs, mismatches)
    theirs_by_kind = _by_kind(theirs)
    pairs = [
        pair
        for kind, mine in _by_kind(slots_of[config]).items()
        for pair in zip(mine, theirs_by_kind[kind])
    ]
    return load_weights(config.build_meta(), _state_dict(pairs)).eval(), config


def _load_proto(path: Path):
    try:
        onnx = require("onnx", "reading ONNX weights into PyTorch")
    except MissingExtraError as exc:
        raise ConversionError(str(exc)) from exc  # under backend="auto": onnxruntime instead
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise ConversionError(f"not a readable ONNX model ({exc})") from exc


def _static_input_size(proto) -> tuple[int, int] | None:
    """The fixed input (h, w), or the ``input_size`` metadata of a dynamic-size export."""
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) == 4 and dims[2] > 0 and dims[3] > 0:
        return dims[2], dims[3]
    return parse_size({p.key: p.value for p in proto.metadata_props}.get("input_size"))


def verify(
    model: nn.Module,
    path: str | os.PathLike,
    config: NetConfig,
    tolerance: float = VERIFY_TOLERANCE,
) -> float:
    """Run the file (onnxruntime, CPU) and the module (torch, CPU) on the same random input.

    Returns the largest difference relative to each output's magnitude; raises
    ``ConversionError`` when it exceeds ``tolerance``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    batch = feed.shape[0] if isinstance(feed.shape[0], int) and feed.shape[0] > 0 else 2
    rng = np.random.default_rng(0)
    shape = (batch, 3, *config.input_size)
    # Pose models take normalised crops; YOLOX takes raw 0-255 pixels.
    x = rng.standard_normal(shape) if config.kind == "pose" else rng.uniform(0, 255, shape)
    x = x.astype(np.float32)
    expected = session.run(None, {feed.name: x})
    with torch.inference_mode():
        got = model.eval()(torch.from_numpy(x))
    got = got if isinstance(got, tuple) else (got,)
    if [e.shape for e in expected] != [tuple(g.shape) for g in got]:
        raise ConversionError(
            f"the file outputs {[e.shape for e in expected]} but the converted model "
            f"gives {[tuple(g.shape) for g in got]}"
        )
    error = max(
        float(np.abs(g.numpy() - e).max() / max(float(np.abs(e).max()), 1e-12))
        for g, e in zip(got, expected)
    )
    if not error <= tolerance:
        raise ConversionError(
            "the converted weights do not reproduce the file (largest "
            f"relative difference {error:.2g}, allowed {tolerance:g}); its graph computes "
            "something other than the official architecture"
        )
    return error
