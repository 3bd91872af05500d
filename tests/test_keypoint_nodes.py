"""Keypoint files in ComfyUI: Save Keypoints' file reference, Load Keypoints (input folder,
[output] files, strict reading), the example inputs copied into the input folder, and the
model menus' labels accepted by validation."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_nodes import as_image, env, estimated, frames, nodes, pack  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def folders(nodes, tmp_path, monkeypatch):  # noqa: F811
    """Input and output folders of their own (outside ComfyUI: ./input, ./output)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input").mkdir()
    return tmp_path / "input", tmp_path / "output"


def test_save_returns_comfyui_file_reference_and_load_reads_it_back(nodes, estimated, folders):  # noqa: F811
    _, pose_keypoint = estimated
    saved = nodes.DWPoseSaveKeypoints().save(pose_keypoint, "dwpose/run")
    assert saved["ui"]["keypoints"] == [
        {"filename": "run_00001.json", "subfolder": "dwpose", "type": "output"}
    ]
    assert saved["result"] == ("dwpose/run_00001.json [output]",)
    assert (folders[1] / "dwpose" / "run_00001.json").is_file()
    top = nodes.DWPoseSaveKeypoints().save(pose_keypoint, "top")
    assert top["ui"]["keypoints"][0]["subfolder"] == ""

    (folders[0] / "sub").mkdir()
    shutil.copy(ROOT / "workflows" / "inputs" / "dwpose_skier_keypoints.json", folders[0] / "sub")
    choices = nodes.DWPoseLoadKeypoints.INPUT_TYPES()["required"]["keypoints_file"][0]
    assert choices == [
        "sub/dwpose_skier_keypoints.json",
        "dwpose/run_00001.json [output]",
        "top_00001.json [output]",
    ]
    (loaded,) = nodes.DWPoseLoadKeypoints().load(saved["result"][0])
    assert loaded == pose_keypoint  # the estimator's value, whole
    # Drawn from the loaded file: the estimator's own maps.
    (maps,) = nodes.DWPoseRender().render(loaded)
    assert np.array_equal(maps.numpy(), estimated[0].numpy())


def test_load_refuses_bad_files_and_paths(nodes, folders):  # noqa: F811
    bad = folders[0] / "bad.json"
    bad.write_text(
        json.dumps(
            [{"canvas_width": 64, "canvas_height": 48, "people": [{"pose_keypoints_2d": [1, 2]}]}]
        )
    )
    with pytest.raises(ValueError, match=r"bad.json: frame 0: people\[0\].pose_keypoints_2d"):
        nodes.DWPoseLoadKeypoints().load("bad.json")
    (folders[0] / "empty.json").write_text("[]")
    with pytest.raises(ValueError, match="holds no frames"):
        nodes.DWPoseLoadKeypoints().load("empty.json")
    with pytest.raises(ValueError, match="points outside"):
        nodes.DWPoseLoadKeypoints().load("../secret.json")
    assert nodes.DWPoseLoadKeypoints.VALIDATE_INPUTS("missing.json") == (
        "keypoints file 'missing.json' not found"
    )
    assert nodes.DWPoseLoadKeypoints.VALIDATE_INPUTS("bad.json") is True
    before = nodes.DWPoseLoadKeypoints.IS_CHANGED("bad.json")
    bad.write_text("[]")
    os.utime(bad, ns=(1, 1))
    assert nodes.DWPoseLoadKeypoints.IS_CHANGED("bad.json") != before


def test_example_inputs_are_copied_once_and_never_replace_a_file(nodes, tmp_path):  # noqa: F811
    mine = tmp_path / "dwpose_skier.jpg"
    mine.write_bytes(b"my own photo")
    copied = nodes.install_example_inputs(tmp_path)
    assert sorted(p.name for p in copied) == ["dwpose_skier_keypoints.json", "dwpose_skier_pan.mp4"]
    assert mine.read_bytes() == b"my own photo"
    for name in ("dwpose_skier_keypoints.json", "dwpose_skier_pan.mp4"):
        assert (tmp_path / name).read_bytes() == nodes.EXAMPLE_INPUTS[name].read_bytes()
    assert nodes.install_example_inputs(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dwpose_skier.jpg", "dwpose_skier_keypoints.json", "dwpose_skier_pan.mp4",
    ]  # fmt: skip


def test_model_menus_and_their_validation(nodes, env, tmp_path, monkeypatch):  # noqa: F811
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing downloaded
    required = nodes.DWPoseEstimator.INPUT_TYPES()["required"]
    detectors, poses = required["detector"][0], required["pose_model"][0]
    # Labelled registry names, then the stand-ins, each in its own menu only.
    assert detectors == [
        "yolox_l.onnx (not downloaded)", "hr16/yolox-onnx/yolox_l.onnx (not downloaded)",
        "det.onnx", "none (whole image)",
    ]  # fmt: skip
    assert poses == [
        "dw-ll_ucoco_384.onnx (not downloaded)", "dw-ll_ucoco.onnx (not downloaded)", "pose.onnx",
    ]  # fmt: skip
    assert required["detector"][1]["default"] == detectors[0]
    validate = nodes.DWPoseEstimator.VALIDATE_INPUTS
    assert validate(detector="yolox_l.onnx", pose_model="dw-ll_ucoco_384.onnx") is True
    assert validate(detector=detectors[0], pose_model="pose.onnx") is True
    assert validate(detector="none (whole image)") is True
    assert "not offered" in validate(detector="pose.onnx")
    assert "not offered" in nodes.DWPoseRetarget.VALIDATE_INPUTS(pose_model="det.onnx")


@pytest.mark.parametrize(
    "key",
    ["DWPoseWB_Render", "DWPoseWB_TrackSmooth", "DWPoseWB_Retarget", "DWPoseWB_SaveKeypoints",
     "DWPoseWB_LoadKeypoints"],
)  # fmt: skip
def test_every_input_and_output_is_explained(pack, key):  # noqa: F811
    cls = pack.NODE_CLASS_MAPPINGS[key]
    types_ = cls.INPUT_TYPES()
    for name, spec in {**types_["required"], **types_.get("optional", {})}.items():
        assert len(spec) == 2 and len(spec[1].get("tooltip", "")) > 10, (key, name)
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
    assert len(cls.DESCRIPTION) > 40
