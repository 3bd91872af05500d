"""Model menus (comfyui_dwpose.catalog): kinds told apart by graph signature, registry
models labelled until they are on disk, comfyui_controlnet_aux's ckpts layout, placed
files with other bytes used as they are."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from conftest import add_to_hf_cache
from huggingface_hub import constants as hf_constants

from comfyui_dwpose import catalog
from comfyui_dwpose.hub import ChecksumError, ModelError, NotCachedError

onnx = pytest.importorskip("onnx")


def identity_onnx(path):
    """An ONNX graph that is neither a detector nor a pose model."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), path)
    return path


@pytest.fixture
def place(tmp_path, monkeypatch, standins):
    """models/ (ours) and aux/ckpts (comfyui_controlnet_aux's) with stand-ins and an
    unrelated graph; an empty Hugging Face cache, offline."""
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DWPOSE_MODELS_DIR", raising=False)
    models, custom_nodes = tmp_path / "models", tmp_path / "custom_nodes"
    ckpts = custom_nodes / "comfyui_controlnet_aux" / "ckpts"
    (models / "sub").mkdir(parents=True)
    shutil.copy(standins["det"], models / "my_det.onnx")
    shutil.copy(standins["pose"], models / "sub" / "my_pose.onnx")
    identity_onnx(models / "depth.onnx")
    (ckpts / "yzd-v" / "DWPose").mkdir(parents=True)
    shutil.copy(standins["pose"], ckpts / "yzd-v" / "DWPose" / "dw-ll_ucoco_384.onnx")
    (ckpts / "hr16" / "yolo-nas-fp16").mkdir(parents=True)
    identity_onnx(ckpts / "hr16" / "yolo-nas-fp16" / "yolo_nas_l_fp16.onnx")
    return [models, *catalog.controlnet_aux_ckpts([custom_nodes])]


def test_signatures_tell_detectors_from_pose_models(standins, tmp_path):
    assert catalog.onnx_kind(standins["det"]) == "detector"
    assert catalog.onnx_kind(standins["det_empty"]) == "detector"
    assert catalog.onnx_kind(standins["pose"]) == "pose"
    assert catalog.onnx_kind(identity_onnx(tmp_path / "x.onnx")) == "other"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(standins["pose"].read_bytes()[:5000])
    assert catalog.onnx_kind(broken) is None
    # Dynamic dims (None) still count.
    assert catalog.signature_kind([(None, 3, None, None)], [(None, None, 85)]) == "detector"
    assert catalog.signature_kind([(1, 3, 384, 288)], [(1, 133, 576), (1, 133, 768)]) == "pose"
    assert catalog.signature_kind([(1, 3, 384, 288)], [(1, 133, 576), (1, 17, 768)]) == "other"


def test_menus_hold_only_the_files_that_fit(place):
    assert catalog.menu("detector", place) == [
        "yolox_l.onnx (not downloaded)",
        "hr16/yolox-onnx/yolox_l.onnx (not downloaded)",
        "my_det.onnx",
    ]
    # aux's yzd-v/DWPose/dw-ll_ucoco_384.onnx is the registry's name, found: no label.
    assert catalog.menu("pose", place) == [
        "dw-ll_ucoco_384.onnx",
        "dw-ll_ucoco.onnx (not downloaded)",
        "sub/my_pose.onnx",
    ]


def test_a_model_in_the_hugging_face_cache_counts_as_downloaded(place, standins):
    add_to_hf_cache(
        Path(hf_constants.HF_HUB_CACHE),
        "yzd-v/DWPose",
        "yolox_l.onnx",
        standins["det"].read_bytes(),
    )
    assert catalog.menu("detector", place)[0] == "yolox_l.onnx"


def test_resolve_uses_placed_files_and_says_when_bytes_differ(place, caplog):
    with caplog.at_level(logging.WARNING, logger="comfyui_dwpose.catalog"):
        path = catalog.resolve("dw-ll_ucoco_384.onnx", "pose", place)
    assert path == place[1] / "yzd-v" / "DWPose" / "dw-ll_ucoco_384.onnx"
    [record] = caplog.records
    assert "is not the registry's dw-ll_ucoco_384.onnx" in record.getMessage()
    assert "using it as it is, its graph is a pose model" in record.getMessage()
    assert catalog.resolve("sub/my_pose.onnx", "pose", place) == place[0] / "sub" / "my_pose.onnx"


def test_resolve_refuses_the_wrong_kind_and_unreadable_registry_files(place, standins):
    with pytest.raises(ModelError, match=r"my_det.onnx is a detector model .* not a pose model"):
        catalog.resolve("my_det.onnx", "pose", place)
    with pytest.raises(ModelError, match="neither a detector nor a pose model"):
        catalog.resolve("depth.onnx", "detector", place)
    # A truncated file under a registry name: the checksum error and its advice, not a guess.
    (place[0] / "dw-ll_ucoco_384.onnx").write_bytes(standins["pose"].read_bytes()[:5000])
    with pytest.raises(ChecksumError, match="failed verification"):
        catalog.resolve("dw-ll_ucoco_384.onnx", "pose", place)


def test_a_labelled_registry_model_is_fetched_on_first_use(place):
    # Offline here: the download is attempted, into the first folder, and says so.
    with pytest.raises(NotCachedError, match=str(place[0] / "yolox_l.onnx")):
        catalog.resolve("yolox_l.onnx (not downloaded)", "detector", place)
    with pytest.raises(ModelError, match=r"'nothing.onnx' is not in the DWPose model folders"):
        catalog.resolve("nothing.onnx", "pose", place)
