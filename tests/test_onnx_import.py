"""ONNX files into the torch nets: matched by graph structure, then verified equal.

Stand-ins for the official files (not reachable here): our own exports (TorchScript
exporter, BatchNorm folded into the convs and initializers renamed, as mmdeploy's and
Megvii's exports are), exports that keep BatchNorm and unfolded layout ops at opset 11,
and a YOLOX arranged as Megvii's code arranges it (tests/megvii_yolox.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from megvii_yolox import MegviiYOLOX
from standin_nets import calibrate, standin

from comfyui_dwpose.nets import ConversionError, NetConfig, export_onnx, load_net
from comfyui_dwpose.nets.onnx_import import convert_onnx, file_slots, verify

EQUAL = 1e-4  # relative to the output's magnitude, as tests/test_nets.py; measured 1e-7 to 2e-5


def outputs(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(x))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def rel_err(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    return max(float(np.abs(g - e).max() / np.abs(e).max()) for g, e in zip(got, expected))


def sample(kind: str, size: tuple[int, int], batch: int = 2) -> np.ndarray:
    rng = np.random.default_rng(1)
    x = (
        rng.standard_normal((batch, 3, *size))
        if kind == "pose"
        else rng.uniform(0, 255, (batch, 3, *size))
    )
    return x.astype(np.float32)


def raw_export(model: torch.nn.Module, path, size, opset: int = 11, names=("input", "output")):
    """TorchScript export without constant folding: BatchNormalization nodes, Transposes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (torch.zeros(1, 3, *size),), str(path), input_names=[names[0]],
            output_names=[names[1]], opset_version=opset, do_constant_folding=False, dynamo=False,
        )  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("name", "size", "export_size"),
    [
        ("rtmpose-t", (256, 192), None),
        ("rtmpose-s", (256, 192), None),
        ("rtmpose-t", (384, 288), None),
        ("yolox-nano", (416, 416), (160, 128)),
        ("yolox-tiny", (416, 416), (128, 128)),
    ],
)
def test_own_exports_convert_equal(tmp_path, name, size, export_size):
    model = standin(name, size)
    path = export_onnx(
        model, tmp_path / "m.onnx", export_size, dynamic_batch=name.startswith("rtm")
    )
    net = load_net(path)
    expected_size = export_size or size
    assert net.config == NetConfig(name, expected_size)
    assert net.onnx_error is not None and net.onnx_error <= EQUAL
    x = sample(net.config.kind, expected_size)
    assert rel_err(outputs(net.module, x), outputs(model, x)) <= EQUAL
    assert sum(p.numel() for p in net.module.parameters()) == sum(
        p.numel() for p in model.parameters()
    )


@pytest.mark.parametrize(("name", "size"), [("rtmpose-t", (256, 192)), ("yolox-tiny", (96, 128))])
def test_unfolded_batch_norm_and_layout_ops(tmp_path, name, size):
    model = standin(name, size if name.startswith("rtm") else None)
    path = raw_export(model, tmp_path / "raw.onnx", size)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"BatchNormalization", "Transpose" if name.startswith("rtm") else "Conv"} <= ops
    net = load_net(path)
    assert net.config.arch == name and net.onnx_error <= EQUAL
    x = sample(net.config.kind, size)
    assert rel_err(outputs(net.module, x), outputs(model, x)) <= EQUAL


def test_megvii_arranged_yolox_converts_equal(tmp_path):
    """Another codebase's names and execution order: matched by dataflow, not by order."""
    torch.manual_seed(3)
    megvii = calibrate(MegviiYOLOX(depth=0.33, width=0.375), (128, 160), seed=3)
    path = tmp_path / "yolox_tiny_megvii.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            megvii, (torch.zeros(1, 3, 128, 160),), str(path), input_names=["images"],
            output_names=["output"], opset_version=11, dynamo=False,
        )  # fmt: skip
    # The file's convolutions run in another order than ours: the pairing cannot be by order.
    ours = conv_execution_order(NetConfig("yolox-tiny", (128, 160)))
    proto = onnx.load(str(path))
    shapes = {init.name: tuple(init.dims) for init in proto.graph.initializer}
    in_file = [shapes[n.input[1]] for n in proto.graph.node if n.op_type == "Conv"]
    assert sorted(ours) == sorted(in_file) and ours != in_file

    net = load_net(path)
    assert net.config == NetConfig("yolox-tiny", (128, 160)) and net.onnx_error <= EQUAL
    x = sample("det", (128, 160))
    assert rel_err(outputs(net.module, x), outputs(megvii, x)) <= EQUAL


def conv_execution_order(config: NetConfig) -> list[tuple[int, ...]]:
    """Weight shapes of our convolutions in the order our forward runs them."""
    model, order = config.build_meta(), []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, i, o: order.append(tuple(m.weight.shape)))
    with torch.device("meta"):
        model(torch.zeros(1, 3, *config.input_size))
    return order


def test_file_slots_of_the_rtmcc_head(tmp_path):
    """Only learnt constants are taken from the head: not ScaleNorm's 1/sqrt(d), eps, sqrt(s)."""
    path = export_onnx(standin("rtmpose-t"), tmp_path / "t.onnx")
    slots = file_slots(onnx.load(str(path)))
    head = [(s.kind, s.shape, s.attrs.get("op")) for s in slots if s.kind != "conv"]
    assert head == [
        ("affine", (1,), "Mul"),  # mlp.0.g
        ("linear", (256, 48), None),  # mlp.1
        ("affine", (256,), "Mul"),  # gau.res_scale (the residual branch is the Add's first operand)
        ("affine", (1,), "Mul"),  # gau.ln.g
        ("linear", (1152, 256), None),  # gau.uv
        ("affine", (256,), "Mul"),  # gau.gamma
        ("affine", (256,), "Add"),  # gau.beta
        ("linear", (256, 512), None),  # gau.o
        ("linear", (384, 256), None),  # cls_x
        ("linear", (512, 256), None),  # cls_y
    ]


def test_named_arch_is_checked_with_the_first_mismatching_weights(tmp_path):
    path = export_onnx(standin("rtmpose-t"), tmp_path / "t.onnx")
    with pytest.raises(ConversionError) as info:
        convert_onnx(path, arch="rtmpose-s")
    text = str(info.value)
    assert text.startswith("the weights do not fit rtmpose-s 256x192, 133 keypoints: ")
    assert "backbone.stem.0.conv expects [16,3,3,3]" in text and "has [12,3,3,3]" in text
    assert "more)" in text  # further mismatches are counted, not listed
    with pytest.raises(
        ConversionError, match="the weights are a pose model, but --arch yolox-s is not"
    ):
        convert_onnx(path, arch="yolox-s")


def test_a_graph_of_another_architecture_is_refused(standins):
    with pytest.raises(
        ConversionError, match=r"^pose\.onnx: the graph has no SimCC classifiers: not an RTMPose"
    ):
        load_net(standins["pose"])
    with pytest.raises(
        ConversionError, match=r"^det\.onnx: the weights do not fit any official det"
    ):
        load_net(standins["det"])


def test_same_structure_other_function_is_refused_by_verification(tmp_path):
    """A file that pairs up but computes something else (here GAU's sqrt(s) changed)."""
    path = export_onnx(standin("rtmpose-t"), tmp_path / "t.onnx")
    proto = onnx.load(str(path))
    producer = {out: node for node in proto.graph.node for out in node.output}
    const = next(
        producer[n.input[1]]
        for n in proto.graph.node
        if n.op_type == "Div" and producer[n.input[1]].op_type == "Constant"
    )  # qk / sqrt(s), the only division by a constant
    const.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(np.array(3.0, np.float32)))
    onnx.save(proto, str(path))
    model, config = convert_onnx(path)  # the structure fits
    with pytest.raises(ConversionError, match=r"^the converted weights do not reproduce the file"):
        verify(model, path, config)
    with pytest.raises(ConversionError, match=r"^t\.onnx: the converted weights do not reproduce"):
        load_net(path)


def test_fixed_batch_file_is_verified_at_its_batch(tmp_path):
    path = export_onnx(standin("yolox-nano"), tmp_path / "d.onnx", (64, 96), dynamic_batch=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 64, 96]
    assert load_net(path).onnx_error <= EQUAL
