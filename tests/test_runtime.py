"""The onnxruntime backend: providers, batching, and model files that cannot be used."""

import numpy as np
import onnx
import pytest

from comfyui_dwpose import DWPose
from comfyui_dwpose.runtime import (
    BackendUnavailableError,
    ModelLoadError,
    OnnxModel,
    cpu_threads,
    load_model,
    onnx_providers,
)


def test_providers_on_this_machine():
    assert onnx_providers("auto") == ["CPUExecutionProvider"]  # no accelerator installed here
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", r"device 'cuda' needs onnxruntime's CUDAExecutionProvider.*onnxruntime-gpu"),
        ("cuda:1", "CUDAExecutionProvider"),
        ("dml", "DmlExecutionProvider"),
        ("tpu", r"unknown device 'tpu': use auto, cpu, cuda, rocm, dml, coreml"),
    ],
)
def test_unavailable_devices_are_errors_not_silent_cpu(device, message):
    with pytest.raises(BackendUnavailableError, match=message):
        onnx_providers(device)


def test_unknown_backend(standins):
    with pytest.raises(BackendUnavailableError, match="unknown backend 'tensorrt'"):
        load_model(standins["pose"], backend="tensorrt")


def test_session_metadata_and_threads(standins):
    pose = OnnxModel(standins["pose"])
    assert pose.input_shape == (None, 3, 384, 288) and pose.input_size == (384, 288)
    assert pose.output_shapes == [(None, 133, 576), (None, 133, 768)]
    assert pose.session.get_session_options().intra_op_num_threads == cpu_threads()
    det = OnnxModel(standins["det"])
    assert det.input_shape == (1, 3, 640, 640) and det.provider == "CPUExecutionProvider"


def test_fixed_batch_models_run_any_batch(tmp_path, standins):
    """Files with a fixed batch (e.g. batch-5 TorchScript exports) get chunks, padded."""
    graph = onnx.load(standins["pose"])
    for value in [*graph.graph.input, *graph.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 5
    onnx.save(graph, tmp_path / "pose_b5.onnx")
    fixed, dynamic = OnnxModel(tmp_path / "pose_b5.onnx"), OnnxModel(standins["pose"])
    assert fixed.input_shape[0] == 5
    batch = np.random.default_rng(0).normal(size=(7, 3, 384, 288)).astype(np.float32)
    for got, expected in zip(fixed.run(batch), dynamic.run(batch)):
        assert got.shape == expected.shape and got.shape[0] == 7
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cut", [0, 0.5, 0.9])
def test_corrupt_or_truncated_onnx(tmp_path, standins, cut):
    data = standins["pose"].read_bytes()
    path = tmp_path / "pose.onnx"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(
        ModelLoadError, match="not a valid ONNX model; the file is corrupt or truncated"
    ) as info:
        OnnxModel(path)
    assert str(path) in str(info.value) and "download it again" in str(info.value)


def test_garbage_onnx(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(1).bytes(10_000))
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        OnnxModel(path)


def test_models_of_the_wrong_kind(standins):
    with pytest.raises(
        ModelLoadError, match=r"pose\.onnx is not a YOLOX person detector.*Is it the pose model\?"
    ):
        DWPose(standins["pose"], standins["pose"])
    with pytest.raises(
        ModelLoadError,
        match=r"det\.onnx is not a whole-body SimCC pose model.*Is it the detector\?",
    ):
        DWPose(standins["det"], standins["det"])


def test_pose_model_of_the_wrong_shape(tmp_path, standins):
    """A 17-keypoint body model is not a whole-body model: said so, with the shapes found."""
    import torch

    from comfyui_dwpose.nets import build_model, export_onnx

    torch.manual_seed(0)
    body_only = build_model("rtmpose-t", input_size=(256, 192), num_keypoints=17)
    path = export_onnx(body_only, tmp_path / "body17.onnx")
    with pytest.raises(
        ModelLoadError,
        match=r"found input \[\?,3,256,192\] and outputs \[\?,17,384\], \[\?,17,512\]",
    ):
        DWPose(standins["det"], path)
