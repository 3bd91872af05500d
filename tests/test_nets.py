"""The network definitions against the official OpenMMLab builds.

Reference data (``tests/data/openmmlab``):
key lists of every official size, and seeded random-weight state dicts with their
outputs for RTMPose-t and YOLOX-nano, made with mmpose 1.3.2 / mmdet 3.3.0. The weights
are stand-ins, so these tests prove architecture and numerics, not accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from comfyui_dwpose.nets import build_model, export_onnx, get_spec, list_models

REF = Path(__file__).resolve().parent / "data" / "openmmlab"
REL_TOL = 1e-4

# name, input size (H, W), reference key list, official parameter count
OFFICIAL = [
    ("rtmpose-t", (256, 192), "rtmpose-t-wb-256", 5_519_779),
    ("rtmpose-s", (256, 192), "rtmpose-s-wb-256", 8_383_575),
    ("rtmpose-m", (256, 192), "rtmpose-m-wb-256", 17_953_039),
    ("rtmpose-l", (256, 192), "rtmpose-l-wb-256", 33_480_871),
    ("rtmpose-l", (384, 288), "rtmpose-l-wb-384", 33_610_919),
    ("rtmpose-x", (384, 288), "rtmpose-x-wb-384", 56_709_919),
    ("yolox-nano", None, "yolox-nano", 912_159),
    ("yolox-tiny", None, "yolox-tiny", 5_055_855),
    ("yolox-s", None, "yolox-s", 8_968_255),
    ("yolox-m", None, "yolox-m", 25_326_495),
    ("yolox-l", None, "yolox-l", 54_208_895),
    ("yolox-x", None, "yolox-x", 99_071_455),
]


def rel_err(got: torch.Tensor | np.ndarray, ref: np.ndarray) -> float:
    """Max abs difference relative to the reference's scale (max |ref|)."""
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else got
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def read_keys(arch: str) -> list[tuple[str, list[int], str]]:
    rows = []
    for line in (REF / "keys" / f"keys-{arch}.txt").read_text().splitlines():
        name, shape, dtype = line.split("\t")
        dims = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
        rows.append((name, dims, dtype))
    return rows


def load_reference(arch: str, name: str, input_size=None) -> tuple[torch.nn.Module, dict]:
    model = build_model(name, input_size).eval()
    state = torch.load(REF / f"{arch}.pt", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model, dict(np.load(REF / f"{arch}.npz"))


@pytest.mark.parametrize(("name", "size", "arch", "n_params"), OFFICIAL, ids=lambda v: str(v))
def test_parameter_count_and_state_dict_keys(name, size, arch, n_params):
    model = build_model(name, size)
    assert sum(p.numel() for p in model.parameters()) == n_params
    got = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in model.state_dict().items()
    ]
    assert got == read_keys(arch)  # names, shapes, dtypes and order


def test_known_names_and_defaults():
    assert list_models() == [
        "rtmpose-t", "rtmpose-s", "rtmpose-m", "rtmpose-l", "rtmpose-x",
        "yolox-nano", "yolox-tiny", "yolox-s", "yolox-m", "yolox-l", "yolox-x",
    ]  # fmt: skip
    assert list_models("pose") == [n for n in list_models() if n.startswith("rtmpose")]
    assert build_model("rtmpose-l").input_size == (384, 288)  # DWPose's dw-ll_ucoco_384
    assert build_model("rtmpose-t").input_size == (256, 192)
    assert get_spec("yolox-nano").input_size == (416, 416)
    with pytest.raises(KeyError, match="rtmpose-t"):
        build_model("rtmpose-xxl")
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model("rtmpose-t", (250, 192))


def test_rtmpose_t_matches_reference():
    model, ref = load_reference("rtmpose-t-wb-256", "rtmpose-t", (256, 192))
    feats = {}
    for name, module in model.named_modules():
        if f"feat__{name}" in ref:
            module.register_forward_hook(lambda m, i, o, name=name: feats.__setitem__(name, o))
    with torch.no_grad():
        simcc_x, simcc_y = model(torch.from_numpy(ref["input"]))
    assert simcc_x.shape == (1, 133, 384) and simcc_y.shape == (1, 133, 512)
    assert rel_err(simcc_x, ref["simcc_x"]) <= REL_TOL
    assert rel_err(simcc_y, ref["simcc_y"]) <= REL_TOL
    assert len(feats) == 8  # stem, 4 stages, final_layer, mlp, gau
    for name, value in feats.items():
        assert rel_err(value, ref[f"feat__{name}"]) <= REL_TOL, name


def test_rtmpose_batch_norm_eps_is_the_configs_one():
    """RTMPose configs use plain BN (eps 1e-5), not mmdet's CSPNeXt default (1e-3)."""
    model, ref = load_reference("rtmpose-t-wb-256", "rtmpose-t", (256, 192))
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps == {1e-5}
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3
    with torch.no_grad():
        simcc_x, _ = model(torch.from_numpy(ref["input"]))
    assert rel_err(simcc_x, ref["simcc_x"]) > 5 * REL_TOL  # the reference tells them apart


def test_yolox_nano_matches_reference():
    model, ref = load_reference("yolox-nano", "yolox-nano")
    x = torch.from_numpy(ref["input"])
    with torch.no_grad():
        feats = model.backbone(x)
        neck = model.neck(feats)
        cls_scores, bbox_preds, objectnesses = model.forward_levels(x)
        flat = model(x)
    for i in range(3):
        assert rel_err(feats[i], ref[f"backbone_out_{i}"]) <= REL_TOL
        assert rel_err(neck[i], ref[f"neck_out_{i}"]) <= REL_TOL
        assert rel_err(cls_scores[i], ref[f"cls_score_l{i}"]) <= REL_TOL
        assert rel_err(bbox_preds[i], ref[f"bbox_pred_l{i}"]) <= REL_TOL
        assert rel_err(objectnesses[i], ref[f"objectness_l{i}"]) <= REL_TOL
    assert flat.shape == (1, 3549, 85)
    assert rel_err(flat, ref["megvii_flat"]) <= REL_TOL


def test_yolox_anchor_count_at_640():
    model = build_model("yolox-nano").eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 640, 640))
    assert out.shape == (1, 8400, 85)  # 80^2 + 40^2 + 20^2, as yolox_l.onnx


def _dims(value_info) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _check_onnx(path: Path, model: torch.nn.Module, x: torch.Tensor) -> list[float]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model(x)
    ref = ref if isinstance(ref, tuple) else (ref,)
    return [rel_err(o, r.numpy()) for o, r in zip(outs, ref, strict=True)]


def test_onnx_export_pose_official_signature(tmp_path):
    torch.manual_seed(0)
    model = build_model("rtmpose-t", (256, 192))
    path = export_onnx(model, tmp_path / "rtmpose-t.onnx")
    assert model.training  # mode restored
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 17
    assert [(v.name, _dims(v)) for v in proto.graph.input] == [("input", ["batch", 3, 256, 192])]
    assert [(v.name, _dims(v)) for v in proto.graph.output] == [
        ("simcc_x", ["batch", 133, 384]),
        ("simcc_y", ["batch", 133, 512]),
    ]
    errs = _check_onnx(path, model.eval(), torch.randn(3, 3, 256, 192))  # batch 3
    assert max(errs) <= REL_TOL, errs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rtmpose-t.onnx"]


@pytest.mark.parametrize(
    ("name", "size", "anchors"),
    [("yolox-nano", (416, 416), 3549), ("yolox-tiny", (128, 160), 420)],
)
def test_onnx_export_detector_official_signature(tmp_path, name, size, anchors):
    torch.manual_seed(0)
    model = build_model(name)
    path = export_onnx(model, tmp_path / "det.onnx", input_size=size)
    proto = onnx.load(str(path))
    assert [(v.name, _dims(v)) for v in proto.graph.input] == [("images", ["batch", 3, *size])]
    assert [(v.name, _dims(v)) for v in proto.graph.output] == [("output", ["batch", anchors, 85])]
    x = torch.rand(2, 3, *size) * 255
    assert max(_check_onnx(path, model.eval(), x)) <= REL_TOL


def test_onnx_export_static_batch(tmp_path):
    model = build_model("yolox-nano")
    path = export_onnx(model, tmp_path / "det.onnx", (64, 64), dynamic_batch=False)
    proto = onnx.load(str(path))
    assert _dims(proto.graph.input[0]) == [1, 3, 64, 64]
    assert _dims(proto.graph.output[0]) == [1, 8 * 8 + 4 * 4 + 2 * 2, 85]


def test_onnx_export_failure_leaves_no_file(tmp_path, monkeypatch):
    def broken_export(model, args, f, **kwargs):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(build_model("yolox-nano"), tmp_path / "det.onnx", (64, 64))
    assert list(tmp_path.iterdir()) == []


def test_onnx_export_pose_refuses_other_input_size(tmp_path):
    with pytest.raises(ValueError, match="head is sized"):
        export_onnx(build_model("rtmpose-t"), tmp_path / "p.onnx", (384, 288))
    assert list(tmp_path.iterdir()) == []
