"""The torch backend: same numbers as onnxruntime, devices, precision, backend choice.

Models: the seeded reference weights (tests/data/openmmlab: RTMPose-t, YOLOX-nano)
and their ONNX exports. No GPU here: the GPU paths are checked on a lent machine (see the
report of issue 3); on the CPU, bfloat16 and float16 are emulated.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from conftest import IMAGE_IDS, ROOT, current_umask

from comfyui_dwpose import DWPose, hub, runtime_torch
from comfyui_dwpose import runtime as runtime_module
from comfyui_dwpose.images import load_image
from comfyui_dwpose.nets import export_onnx, load_net
from comfyui_dwpose.pose import box_center_scale, crop, normalize
from comfyui_dwpose.runtime import BackendUnavailableError, OnnxModel, load_model
from comfyui_dwpose.runtime_torch import TorchModel, precision_dtype, torch_device

SAME = 1e-4  # relative to the output's magnitude


@pytest.fixture(scope="module")
def models(openmmlab, tmp_path_factory):
    """The reference weights as .pt files and as ONNX (detector at its published 416x416,
    with a fixed batch of 1 like yolox_l.onnx)."""
    folder = tmp_path_factory.mktemp("torch_models")
    ref = openmmlab
    pose_pt, det_pt = ref / "rtmpose-t-wb-256.pt", ref / "yolox-nano.pt"
    return {
        "pose_pt": pose_pt,
        "det_pt": det_pt,
        "pose_onnx": export_onnx(load_net(pose_pt).module, folder / "pose.onnx"),
        "det_onnx": export_onnx(load_net(det_pt).module, folder / "det.onnx", dynamic_batch=False),
    }


@pytest.fixture(scope="module")
def crops(coco_images) -> np.ndarray:
    """Real whole-image crops, normalised as the pose model gets them."""
    out = []
    for image_id in IMAGE_IDS:
        image = load_image(coco_images[image_id])
        h, w = image.shape[:2]
        center, scale = box_center_scale(np.array([[0, 0, w, h]]), (256, 192))
        out.append(crop(image, center[0], scale[0], (256, 192)))
    return normalize(np.stack(out))


def rel_err(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    assert [g.shape for g in got] == [e.shape for e in expected]
    return max(float(np.abs(g - e).max() / np.abs(e).max()) for g, e in zip(got, expected))


def test_pose_outputs_equal_onnxruntime(models, crops):
    torch_model = TorchModel.from_file(models["pose_pt"], device="cpu")
    onnx_model = OnnxModel(models["pose_onnx"])
    for batch in (crops[:1], crops):
        assert rel_err(torch_model.run(batch), onnx_model.run(batch)) <= SAME


def test_cpu_batches_run_in_chunks_with_the_same_outputs(models, crops, monkeypatch):
    torch_model = TorchModel.from_file(models["pose_pt"], device="cpu")
    whole = torch_model.run(crops)
    calls = []
    run_net = torch_model._run_net
    monkeypatch.setattr(torch_model, "_run_net", lambda x: calls.append(len(x)) or run_net(x))
    monkeypatch.setattr(runtime_torch, "CPU_CHUNK", 2)
    chunked = torch_model.run(crops)
    assert calls == [2] * (len(crops) // 2) + [len(crops) % 2] * (len(crops) % 2)
    assert rel_err(chunked, whole) <= SAME
    empty = torch_model.run(crops[:0])
    assert [e.shape[0] for e in empty] == [0, 0] and calls[-1] == 0


def test_detector_outputs_equal_onnxruntime_at_any_batch(models):
    torch_model = TorchModel.from_file(models["det_onnx"], device="cpu")  # converted from ONNX
    onnx_model = OnnxModel(models["det_onnx"])  # fixed batch 1: fed in chunks
    images = np.random.default_rng(0).uniform(0, 255, (3, 3, 416, 416)).astype(np.float32)
    assert rel_err(torch_model.run(images), onnx_model.run(images)) <= SAME


def test_model_interface(models):
    pose = TorchModel.from_file(models["pose_pt"], device="cpu")
    assert pose.name == "rtmpose-t-wb-256.pt"
    assert pose.input_shape == (None, 3, 256, 192) and pose.input_size == (256, 192)
    assert pose.output_shapes == [(None, 133, 384), (None, 133, 512)]
    assert pose.dtype == torch.float32 and pose.device == torch.device("cpu")
    assert repr(pose) == (
        "TorchModel('rtmpose-t-wb-256.pt', rtmpose-t 256x192, 133 keypoints, device=cpu, float32)"
    )
    det = TorchModel.from_file(models["det_onnx"], device="cpu")
    assert det.input_shape == (None, 3, 416, 416) and det.output_shapes == [(None, 3549, 85)]
    # BatchNorm is folded into the convs for inference: no BatchNorm left to run.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in det.module.modules())
    det.release()  # nothing to free on the CPU; the model still runs
    assert det.run(np.zeros((1, 3, 416, 416), np.float32))[0].shape == (1, 3549, 85)


def test_no_graph_breaks_on_the_hot_path(models, crops):
    """One graph each, so torch.compile (fullgraph=True) can take each net whole."""
    for path, x in ((models["pose_pt"], crops), (models["det_pt"], np.zeros((2, 3, 96, 128)))):
        model = TorchModel.from_file(path, device="cpu")
        explained = torch._dynamo.explain(model._run_net)(torch.from_numpy(x).float())
        assert (explained.graph_count, explained.graph_break_count) == (1, 0)


@pytest.mark.parametrize(
    ("precision", "agree", "score_err"),
    [("bf16", 0.97, 0.05), ("fp16", 0.99, 0.01)],
)
def test_half_precision_emulated_on_the_cpu(models, crops, precision, agree, score_err):
    """The RTMPose backbone in half precision, the head in float32, against float32.

    Seeded weights give flat SimCC curves (near-ties flip); trained ones peak sharply.
    Measured: bf16 99.2% equal argmax, scores within 0.8%; fp16 100%, 0.1%.
    """
    full = TorchModel.from_file(models["pose_pt"], device="cpu", precision="fp32")
    half = TorchModel.from_file(models["pose_pt"], device="cpu", precision=precision)
    assert half.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert {p.dtype for p in half.module.head.parameters()} == {torch.float32}
    (fx, fy), (hx, hy) = full.run(crops), half.run(crops)
    same = np.concatenate([fx.argmax(2) == hx.argmax(2), fy.argmax(2) == hy.argmax(2)])
    assert same.mean() >= agree
    full_scores = np.minimum(fx.max(2), fy.max(2))
    half_scores = np.minimum(hx.max(2), hy.max(2))
    assert np.abs(half_scores - full_scores).max() <= score_err * np.abs(full_scores).max()


def test_estimator_agrees_between_backends(models, coco_images):
    """The whole pipeline, torch against onnxruntime: same people, boxes, keypoints, scores."""
    images = [load_image(coco_images[i]) for i in IMAGE_IDS]
    # 0.35: these seeded weights score many boxes just above upstream's 0.3.
    onnx = DWPose(
        models["det_onnx"], models["pose_onnx"], backend="onnxruntime", detector_score=0.35
    )
    torch_ = DWPose(
        models["det_pt"], models["pose_pt"], backend="torch", device="cpu", detector_score=0.35
    )
    assert "TorchModel" in repr(torch_)
    people = 0
    for a, b in zip(onnx(images), torch_(images)):
        assert len(a) == len(b)
        people += len(a)
        np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-3)
        # Boxes differ in the last float bits, so keypoints do too; a flipped SimCC argmax
        # (a near-tie under other rounding) would move a point by whole bins.
        close = np.abs(a.keypoints - b.keypoints).max(axis=-1) <= 1e-2
        assert close.mean() >= 0.99
        np.testing.assert_allclose(b.scores, a.scores, atol=SAME * np.abs(a.scores).max())
    assert people == 30
    torch_.release()


def test_estimator_paths_on_torch(models, coco_images):
    """Batches of frames, small pose batches, no detector, the whole-image fallback."""
    images = [load_image(coco_images[i]) for i in IMAGE_IDS]
    options = {"backend": "torch", "device": "cpu", "detector_score": 0.35}
    estimator = DWPose(models["det_pt"], models["pose_pt"], **options)
    batched = estimator(images)
    chunked = DWPose(models["det_pt"], models["pose_pt"], batch_size=3, **options)(images)
    for image, frame, small in zip(images, batched, chunked):
        alone = estimator(image)
        for other in (alone, small):  # other batch sizes: other kernels, last-bit differences
            np.testing.assert_allclose(other.boxes, frame.boxes, atol=1e-3)
            assert (np.abs(other.keypoints - frame.keypoints) <= 1e-2).mean() >= 0.99
    h, w = images[1].shape[:2]
    whole = DWPose(None, models["pose_pt"], backend="torch", device="cpu")(images[1])
    np.testing.assert_array_equal(whole.boxes, [[0, 0, w, h]])
    nobody = {**options, "detector_score": 0.99}
    assert len(DWPose(models["det_pt"], models["pose_pt"], **nobody)(images[1])) == 0
    fallback = DWPose(models["det_pt"], models["pose_pt"], whole_image_fallback=True, **nobody)
    np.testing.assert_array_equal(fallback(images[1]).keypoints, whole.keypoints)


def test_torch_devices(monkeypatch):
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device("auto") == torch.device("cpu")  # no GPU here
    with pytest.raises(
        BackendUnavailableError, match=r"device 'cuda' is not available to this torch"
    ):
        torch_device("cuda")
    with pytest.raises(BackendUnavailableError, match="not available"):
        torch_device("rocm:0")  # ROCm builds of torch call their devices cuda
    with pytest.raises(BackendUnavailableError, match=r"'dml' is not a torch device.*onnxruntime"):
        torch_device("dml")
    # Inside ComfyUI "auto" is ComfyUI's device (read from the loaded module, never imported).
    comfy = types.ModuleType("comfy.model_management")
    comfy.get_torch_device = lambda: torch.device("cpu", 0)
    monkeypatch.setitem(sys.modules, "comfy.model_management", comfy)
    assert torch_device("auto") == torch.device("cpu", 0)


def test_precision_choices():
    assert precision_dtype("auto", torch.device("cpu")) == torch.float32
    assert precision_dtype("auto", torch.device("cuda")) == torch.float16
    assert precision_dtype("auto", torch.device("mps")) == torch.float16
    assert precision_dtype("bf16", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be auto, fp32, fp16, bf16"):
        precision_dtype("int8", torch.device("cpu"))


def test_backend_choice(models, standins, monkeypatch, caplog):
    # No GPU here: "auto" runs ONNX files on onnxruntime, checkpoints on torch.
    assert isinstance(load_model(models["pose_onnx"]), OnnxModel)
    assert isinstance(load_model(models["pose_pt"]), TorchModel)
    assert isinstance(load_model(models["pose_onnx"], backend="torch"), TorchModel)
    assert isinstance(load_model(models["pose_onnx"], precision="bf16"), TorchModel)
    with pytest.raises(BackendUnavailableError, match=r"dwpose convert rtmpose-t-wb-256\.pt -o"):
        load_model(models["pose_pt"], backend="onnxruntime")
    with pytest.raises(BackendUnavailableError, match="precision 'fp16' needs the torch backend"):
        load_model(models["pose_onnx"], backend="onnxruntime", precision="fp16")
    # With a GPU, "auto" converts official ONNX files to torch; others stay on onnxruntime.
    monkeypatch.setattr(runtime_module, "_torch_has_gpu", lambda device: True)
    assert isinstance(load_model(models["det_onnx"]), TorchModel)
    with caplog.at_level(logging.WARNING, logger="comfyui_dwpose.runtime"):
        assert isinstance(load_model(standins["pose"]), OnnxModel)
    assert "pose.onnx: the graph has no SimCC classifiers" in caplog.text
    assert "running it on onnxruntime instead" in caplog.text


def test_auto_does_not_import_torch_on_a_machine_without_gpu(models):
    """Importing torch costs seconds and hundreds of MB; a CPU-only Linux box is known without."""
    code = (
        "import sys; from comfyui_dwpose.runtime import load_model; "
        f"print(type(load_model({str(models['pose_onnx'])!r})).__name__, 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.split() == ["OnnxModel", "False"], done.stderr


def test_registry_checkpoints_are_pose_models_for_the_estimator(tmp_path):
    """DWPose's .pth files are pose models the torch backend runs (not cached here: offline)."""
    with pytest.raises(hub.ModelError) as info:
        hub.resolve_model("dw-tt_ucoco.pth", kind="pose", cache_dir=tmp_path, local_files_only=True)
    assert not isinstance(info.value, hub.UnknownModelError)
    with pytest.raises(hub.UnknownModelError, match="is a checkpoint model, not a detector model"):
        hub.resolve_model("dw-tt_ucoco.pth", kind="detector", cache_dir=tmp_path)


# ------------------------------------------------------------ converted weights are kept


@pytest.fixture
def conversions(monkeypatch, tmp_path):
    """Counts ONNX conversions; the user cache folder in tmp_path."""
    from comfyui_dwpose.nets import files

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user_cache"))
    count = []
    real = files.convert_onnx

    def counted(*args, **kwargs):
        count.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(files, "convert_onnx", counted)
    return count


def test_onnx_is_converted_once_and_kept_beside_the_file(models, conversions, tmp_path):
    source = tmp_path / "models" / "det.onnx"
    source.parent.mkdir()
    source.write_bytes(models["det_onnx"].read_bytes())
    images = np.random.default_rng(1).uniform(0, 255, (2, 3, 416, 416)).astype(np.float32)
    first = TorchModel.from_file(source, device="cpu")
    kept = tmp_path / "models" / "det.onnx.torch.safetensors"
    assert len(conversions) == 1 and kept.is_file()
    assert oct(kept.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
    again = TorchModel.from_file(source, device="cpu")  # a restart: read, not converted
    assert len(conversions) == 1
    assert (
        repr(again)
        == repr(first)
        == ("TorchModel('det.onnx', yolox-nano 416x416, 80 classes, device=cpu, float32)")
    )
    for got, expected in zip(again.run(images), first.run(images)):
        np.testing.assert_array_equal(got, expected)
    # Another file under the same name (new weights) is converted anew, and replaces the kept one.
    source.write_bytes(models["pose_onnx"].read_bytes())
    pose = TorchModel.from_file(source, device="cpu")
    assert len(conversions) == 2 and pose.config.arch == "rtmpose-t"
    assert TorchModel.from_file(source, device="cpu").config.arch == "rtmpose-t"
    assert len(conversions) == 2 and not list(tmp_path.joinpath("user_cache").rglob("*"))


def test_converted_weights_go_to_the_cache_folder_where_the_file_folder_refuses(
    models, conversions, tmp_path
):
    source = tmp_path / "models" / "pose.onnx"
    source.parent.mkdir()
    source.write_bytes(models["pose_onnx"].read_bytes())
    # A folder in the way of the file (root writes read-only folders, so chmod cannot tell).
    (tmp_path / "models" / "pose.onnx.torch.safetensors").mkdir()
    TorchModel.from_file(source, device="cpu")
    TorchModel.from_file(source, device="cpu")
    [kept] = tmp_path.joinpath("user_cache", "comfyui-dwpose").iterdir()
    assert kept.name == f"{hub.file_sha256(source)[:16]}-pose.onnx.torch.safetensors"
    assert len(conversions) == 1
    assert not [p for p in source.parent.iterdir() if p.name.endswith(".tmp")]
