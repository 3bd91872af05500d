"""Frame-fitted detector input (detect.fitted_size): sizes, letterbox equivalence, anchor
grids at non-square sizes, dynamic-size models (ONNX export, torch backend), the option.

Boxes are compared on tests/local_detector.py, a hand-built detector whose outputs are
local to each anchor: that shows the coordinate plumbing. How far real YOLOX-L outputs move
when the padding shrinks is measured by bench/detector_input.py (on stand-in weights).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import onnx
import pytest
import torch
from local_detector import LocalDetector
from test_nets import REL_TOL, rel_err

from comfyui_dwpose import DWPose
from comfyui_dwpose.cli import main
from comfyui_dwpose.detect import Detector, anchor_grid, decode, fitted_size, letterbox
from comfyui_dwpose.images import load_image
from comfyui_dwpose.nets import build_model, export_onnx, load_net
from comfyui_dwpose.runtime import ModelLoadError, OnnxModel
from comfyui_dwpose.runtime_torch import TorchModel


@pytest.fixture(scope="module")
def frames(coco_images) -> list[np.ndarray]:
    """The COCO test images, and 16:9, 9:16 and 21:9 frames made from one of them."""
    images = [load_image(path) for path in coco_images.values()]
    wide = cv2.resize(images[0][:360, :640], (1280, 720), interpolation=cv2.INTER_LINEAR)
    cinema = cv2.resize(images[2][100:370, :640], (2560, 1080), interpolation=cv2.INTER_LINEAR)
    return [*images, wide, np.ascontiguousarray(wide.transpose(1, 0, 2)), cinema]


@pytest.fixture(scope="module")
def local_onnx(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit")
    return export_onnx(LocalDetector(), folder / "local.onnx", dynamic_size=True)


class Recording:
    """A model that records the batch shapes it is run on."""

    def __init__(self, model):
        self.model = model
        self.name, self.input_shape = model.name, model.input_shape
        self.output_shapes, self.input_size = model.output_shapes, model.input_size
        self.dynamic_size = model.dynamic_size
        self.shapes: list[tuple] = []

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.shapes.append(batch.shape)
        return self.model.run(batch)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of x1y1x2y2 boxes."""
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None] - inter)


def assert_same_boxes(got, expected) -> None:
    """Same number of boxes, each matched by one of IoU >= 0.95 (issue 3) with its score."""
    (boxes, scores), (ref_boxes, ref_scores) = got, expected
    assert len(boxes) == len(ref_boxes) > 0
    iou = box_iou(ref_boxes, boxes)
    best = iou.argmax(axis=1)
    assert iou.max(axis=1).min() >= 0.95
    np.testing.assert_allclose(scores[best], ref_scores, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "base", "fitted"),
    [
        ((720, 1280), (640, 640), (384, 640)),  # 16:9: 360 rows of image, 24 of padding
        ((1080, 1920), (640, 640), (384, 640)),
        ((1280, 720), (640, 640), (640, 384)),  # portrait
        ((1080, 2560), (640, 640), (288, 640)),  # 21:9: 270 rows
        ((480, 640), (640, 640), (480, 640)),  # 4:3 needs no padding at all
        ((425, 640), (640, 640), (448, 640)),
        ((333, 500), (640, 640), (448, 640)),  # 426.24 rows: rounded up before padding
        ((640, 640), (640, 640), (640, 640)),
        ((100, 4000), (640, 640), (32, 640)),
        ((720, 1280), (416, 416), (256, 416)),  # YOLOX-nano/tiny
    ],
)
def test_fitted_sizes(shape, base, fitted):
    assert fitted_size(shape, base) == fitted


def test_fitted_letterbox_is_the_full_one_with_less_padding():
    """Same ratio to the bit and the same pixels: the fitted canvas is the top-left of the
    full one, and all the full one has beyond it is padding."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = (int(s) for s in rng.integers(1, 1500, 2))
        base = [(640, 640), (416, 416), (640, 480)][int(rng.integers(3))]
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        size = fitted_size((h, w), base)
        full, ratio = letterbox(image, base)
        fitted, fitted_ratio = letterbox(image, size)
        assert fitted_ratio == ratio == min(base[0] / h, base[1] / w)
        assert size[0] % 32 == size[1] % 32 == 0 and size[0] <= base[0] and size[1] <= base[1]
        np.testing.assert_array_equal(fitted, full[: size[0], : size[1]])
        assert (full[size[0] :] == 114).all() and (full[:, size[1] :] == 114).all()
        # No whole stride-32 row or column of padding is left to compute.
        assert size[0] - int(h * ratio) <= 32 and size[1] - int(w * ratio) <= 32


def test_anchor_grid_and_decode_at_a_non_square_size():
    grid, strides = anchor_grid((384, 640))
    assert len(grid) == 48 * 80 + 24 * 40 + 12 * 20 == 5040
    assert grid[79].tolist() == [79, 0] and grid[80].tolist() == [0, 1]  # row-major, 80 wide
    assert grid[3840].tolist() == [0, 0] and strides[3840, 0] == 16
    assert grid[-1].tolist() == [19, 11] and strides[-1, 0] == 32
    output = np.zeros((5040, 85), np.float32)
    output[-1] = [0.5, 0.5, math.log(2), math.log(3), 0.9, 0.8, *[0] * 79]
    boxes, scores = decode(output, (384, 640), 0.5)
    centre, half = np.array([19.5, 11.5]) * 32, np.array([64, 96]) / 2
    np.testing.assert_allclose(boxes[-1], np.r_[centre - half, centre + half] / 0.5, rtol=1e-6)
    assert scores[-1] == np.float32(0.9) * np.float32(0.8)


def test_fitted_detector_finds_the_letterbox_boxes(local_onnx, frames):
    """All test frames in one call: grouped by fitted size, same boxes as letterboxed."""
    model = Recording(OnnxModel(local_onnx, device="cpu"))
    assert model.dynamic_size and model.input_size == (640, 640)
    expected = Detector(model)(frames)
    assert model.shapes == [(len(frames), 3, 640, 640)]
    model.shapes.clear()
    got = Detector(model, fit_input=True)(frames)
    # COCO 425 and 429 rows, 333x500 and 392x640, 16:9, 9:16, 21:9.
    assert sorted(model.shapes) == [
        (1, 3, 288, 640),
        (1, 3, 384, 640),
        (1, 3, 416, 640),
        (1, 3, 640, 384),
        (3, 3, 448, 640),
    ]
    for g, e in zip(got, expected, strict=True):
        assert_same_boxes(g, e)


def test_torch_backend_fits_and_equals_a_dynamic_onnx_export(tmp_path, tiny_models, frames):
    """DWPose's fixed-size ONNX runs fitted on torch; its dynamic re-export gives the same."""
    torch_model = Recording(TorchModel.from_file(tiny_models["det"], device="cpu"))
    assert torch_model.dynamic_size and torch_model.input_size == (416, 416)
    Detector(torch_model, fit_input=True)([frames[4]])
    assert torch_model.shapes == [(1, 3, 256, 416)]  # 16:9 at 416: 234 rows
    dynamic = export_onnx(
        load_net(tiny_models["det"]).module, tmp_path / "d.onnx", dynamic_size=True
    )
    onnx_model = OnnxModel(dynamic, device="cpu")
    for size in ((256, 416), (416, 256)):
        x = np.random.default_rng(1).uniform(0, 255, (2, 3, *size)).astype(np.float32)
        assert rel_err(torch_model.run(x)[0], onnx_model.run(x)[0]) <= REL_TOL


def test_a_fixed_size_onnx_is_refused_with_the_way_out(tiny_models, standins, frames):
    with pytest.raises(ModelLoadError, match="416x416") as error:
        Detector(OnnxModel(tiny_models["det"], device="cpu"), fit_input=True)
    assert "backend='torch'" in str(error.value)
    assert "dwpose convert yolox_nano.onnx -o yolox_nano_dynamic.onnx --dynamic-size" in str(
        error.value
    )
    with pytest.raises(ModelLoadError, match="640x640 images"):
        DWPose(standins["det"], tiny_models["pose"], backend="onnxruntime", fit_detector_input=True)


def test_dynamic_size_export(tmp_path):
    torch.manual_seed(0)
    model = build_model("yolox-nano").eval()
    path = export_onnx(model, tmp_path / "nano.onnx", dynamic_size=True)
    proto = onnx.load(str(path))
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*proto.graph.input, *proto.graph.output]]  # fmt: skip
    assert dims == [["batch", 3, "height", "width"], ["batch", "anchors", 85]]
    assert {p.key: p.value for p in proto.metadata_props} == {"input_size": "416x416"}
    runner = OnnxModel(path, device="cpu")
    assert runner.input_shape == (None, 3, None, None) and runner.input_size == (416, 416)
    assert runner.dynamic_size and runner.output_shapes == [(None, None, 85)]
    for size in ((416, 416), (224, 416)):
        x = np.random.default_rng(0).uniform(0, 255, (2, 3, *size)).astype(np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        assert rel_err(runner.run(x)[0], expected) <= REL_TOL
    net = load_net(path)  # the recorded size comes back on import
    assert net.config.input_size == (416, 416) and net.onnx_error <= REL_TOL
    with pytest.raises(ValueError, match="dynamic size"):
        export_onnx(build_model("rtmpose-t"), tmp_path / "p.onnx", dynamic_size=True)


def test_convert_dynamic_size(tmp_path, tiny_models, capsys):
    out = tmp_path / "det_dynamic.onnx"
    assert main(["convert", str(tiny_models["det"]), "-o", str(out), "--dynamic-size"]) == 0
    converted = OnnxModel(out, device="cpu")
    assert converted.dynamic_size and converted.input_size == (416, 416)
    pose_out = str(tmp_path / "pose.onnx")
    assert main(["convert", str(tiny_models["pose"]), "-o", pose_out, "--dynamic-size"]) == 2
    assert "--dynamic-size is for detectors" in capsys.readouterr().err


def test_estimator_option(local_onnx, tiny_models, frames):
    wide = frames[4:]
    expected = DWPose(local_onnx, tiny_models["pose"], max_people=3)(wide)
    fitted = DWPose(local_onnx, tiny_models["pose"], max_people=3, fit_detector_input=True)
    assert (
        fitted.detector.fit_input and not DWPose(local_onnx, tiny_models["pose"]).detector.fit_input
    )
    for got, ref in zip(fitted(wide), expected, strict=True):
        assert_same_boxes((got.boxes, got.box_scores), (ref.boxes, ref.box_scores))
        np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=1e-3)


def test_cli_option(tmp_path, tiny_models, frames, capsys):
    image = tmp_path / "wide.png"
    cv2.imwrite(str(image), frames[4][:, :, ::-1])
    models = ["--detector", str(tiny_models["det"]), "--pose-model", str(tiny_models["pose"])]
    args = ["pose", str(image), "-o", str(tmp_path / "out"), *models, "--fit-detector-input"]
    assert main([*args, "--backend", "onnxruntime"]) == 3
    assert "--dynamic-size" in capsys.readouterr().err
    assert main([*args, "--backend", "torch"]) == 0
    assert (tmp_path / "out" / "wide.json").is_file()
