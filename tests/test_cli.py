"""The `dwpose` command: outputs, exit codes and messages a script can rely on.

Commands that touch the Hugging Face cache run in a child process with their own
HF_HOME and HF_HUB_OFFLINE=1, as a user would run them.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, add_to_hf_cache, assert_same_image
from PIL import Image

from comfyui_dwpose import from_pose_keypoint, render_pose
from comfyui_dwpose.cli import main
from comfyui_dwpose.render import map_size


@pytest.fixture
def models(standins) -> list[str]:
    return ["--detector", str(standins["det"]), "--pose-model", str(standins["pose"])]


def dwpose(*args, home=None) -> subprocess.CompletedProcess:
    """`dwpose ARGS` in a child process, offline, with HF_HOME=home."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_CACHE", None)
    if home is not None:
        env["HF_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "comfyui_dwpose.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )


def read_map(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_pose_writes_map_and_keypoints(tmp_path, coco_images, models, capsys):
    image = coco_images["000000000785"]
    assert (
        main(["pose", str(image), "-o", str(tmp_path), *models, "--detector-channels", "rgb"]) == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000000785.json", "000000000785.png"]
    value = json.loads((tmp_path / "000000000785.json").read_text())
    assert isinstance(value, list) and len(value) == 1 and len(value[0]["people"]) == 2
    [frame] = from_pose_keypoint(value)
    pose_map = read_map(tmp_path / "000000000785.png")
    assert pose_map.shape == (425, 640, 3)
    assert_same_image(pose_map, render_pose(frame))
    assert "(2 people)" in capsys.readouterr().out


def test_resolution_and_render_round_trip(tmp_path, coco_images, models):
    image = coco_images["000000040083"]  # 500x333
    assert (
        main(
            [
                "pose",
                str(image),
                "-o",
                str(tmp_path / "a"),
                *models,
                "--resolution",
                "512",
                "--feet",
            ]
        )
        == 0
    )
    pose_map = read_map(tmp_path / "a" / "000000040083.png")
    assert pose_map.shape == (512, 769, 3) and map_size(500, 333, 512) == (769, 512)
    [frame] = json.loads((tmp_path / "a" / "000000040083.json").read_text())
    assert (frame["canvas_width"], frame["canvas_height"]) == (
        500,
        333,
    )  # keypoints stay in image pixels
    out = tmp_path / "b"
    assert (
        main(
            [
                "render",
                str(tmp_path / "a" / "000000040083.json"),
                "-o",
                str(out),
                "--resolution",
                "512",
                "--feet",
            ]
        )
        == 0
    )
    assert_same_image(read_map(out / "000000040083.png"), pose_map)


def test_folder_with_a_bad_image_goes_on(tmp_path, coco_images, models, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(coco_images["000000000785"], folder / "a.jpg")
    (folder / "b.jpg").write_bytes(coco_images["000000196141"].read_bytes()[:5000])  # truncated
    shutil.copy(coco_images["000000197388"], folder / "c.jpg")
    (folder / "notes.txt").write_text("not an image, not picked up")
    code = main(["pose", str(folder), "-o", str(tmp_path / "out"), *models])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.json",
        "a.png",
        "c.json",
        "c.png",
    ]
    assert "b.jpg: the image data is corrupt or truncated" in err
    assert "1 of 3 input(s) failed" in err


def test_same_output_name_twice_is_a_usage_error(tmp_path, coco_images, models, capsys):
    (tmp_path / "x").mkdir()
    shutil.copy(coco_images["000000000785"], tmp_path / "x" / "pic.jpg")
    shutil.copy(coco_images["000000000785"], tmp_path / "pic.png")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "pose",
                str(tmp_path / "x" / "pic.jpg"),
                str(tmp_path / "pic.png"),
                "-o",
                str(tmp_path / "o"),
                *models,
            ]
        )
    assert exit_info.value.code == 2
    assert "would both write pic.png" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_render_refuses_bad_json(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("[{]")
    assert main(["render", str(tmp_path / "bad.json"), "-o", str(tmp_path / "o")]) == 1
    assert "cannot read POSE_KEYPOINT JSON" in capsys.readouterr().err


def test_unknown_model_name(tmp_path, coco_images, standins):
    image = coco_images["000000000785"]
    done = dwpose(
        "pose",
        image,
        "-o",
        tmp_path / "o",
        "--detector",
        standins["det"],
        "--pose-model",
        "dw-huge",
        home=tmp_path,
    )
    assert done.returncode == 3
    assert "dwpose: error: " in done.stderr and "dw-huge" in done.stderr
    assert "dw-ll_ucoco_384.onnx" in done.stderr  # lists the known names


def test_offline_without_cached_weights(tmp_path, coco_images):
    done = dwpose("pose", coco_images["000000000785"], "-o", tmp_path / "o", home=tmp_path)
    assert done.returncode == 3
    message = done.stderr
    assert "yolox_l.onnx" in message and "yzd-v/DWPose" in message
    assert "https://huggingface.co/yzd-v/DWPose/resolve/main/yolox_l.onnx" in message
    assert str(tmp_path / "hub") in message  # where it looked
    assert not (tmp_path / "o").exists()


def test_demo_command_against_a_prepopulated_cache(tmp_path, standins):
    """`make demo` runs `dwpose pose assets/skier.jpg`; here against a Hugging Face cache
    holding stand-in models (real weights are unreachable), offline."""
    add_to_hf_cache(tmp_path / "hub", "standins/dwpose", "det.onnx", standins["det"].read_bytes())
    add_to_hf_cache(tmp_path / "hub", "standins/dwpose", "pose.onnx", standins["pose"].read_bytes())
    out = tmp_path / "demo"
    done = dwpose(
        "pose", ROOT / "assets" / "skier.jpg", "-o", out,
        "--detector", "standins/dwpose/det.onnx", "--pose-model", "standins/dwpose/pose.onnx", home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skier.jpg ->" in done.stdout
    [frame] = from_pose_keypoint(json.loads((out / "skier.json").read_text()))
    assert len(frame) == 2
    assert_same_image(read_map(out / "skier.png"), render_pose(frame))


def test_official_names_refuse_files_that_are_not_the_official_ones(tmp_path, standins):
    """Stand-ins cached under the official names fail their pinned size/sha256."""
    add_to_hf_cache(tmp_path / "hub", "yzd-v/DWPose", "yolox_l.onnx", standins["det"].read_bytes())
    add_to_hf_cache(
        tmp_path / "hub", "yzd-v/DWPose", "dw-ll_ucoco_384.onnx", standins["pose"].read_bytes()
    )
    done = dwpose("pose", ROOT / "assets" / "skier.jpg", "-o", tmp_path / "o", home=tmp_path)
    assert done.returncode == 3
    assert "yolox_l.onnx" in done.stderr and "216,746,733" in done.stderr
    done = dwpose("download", "dw-ll_ucoco_384.onnx", home=tmp_path)
    assert done.returncode == 3
    assert "dw-ll_ucoco_384.onnx" in done.stderr and "134,399,116" in done.stderr


def test_download_from_the_cache(tmp_path, standins):
    snapshot = add_to_hf_cache(
        tmp_path / "hub", "standins/dwpose", "pose.onnx", standins["pose"].read_bytes()
    )
    done = dwpose("download", "standins/dwpose/pose.onnx", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(snapshot)


def test_usage_errors():
    assert dwpose().returncode == 2
    assert dwpose("pose", "x.jpg").returncode == 2  # no -o
    helped = dwpose("--help")
    assert helped.returncode == 0 and "Exit codes" in helped.stdout
