"""The `dwpose` command: outputs, exit codes and messages a script can rely on.

Commands that touch the Hugging Face cache run in a child process with their own
HF_HOME and HF_HUB_OFFLINE=1, as a user would run them.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, add_to_hf_cache, assert_same_image, outputs_in
from PIL import Image

from comfyui_dwpose import cli, from_pose_keypoint, render_pose
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


def errors(captured) -> list[str]:
    """The lines of dwpose's messages on stderr, without progress bars."""
    return [line for line in captured.err.splitlines() if line.startswith("dwpose: ")]


def read_map(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_pose_writes_map_and_keypoints(tmp_path, coco_images, models, capsys):
    image = coco_images["000000000785"]
    assert (
        main(["pose", str(image), "-o", str(tmp_path), *models, "--detector-channels", "rgb"]) == 0
    )
    assert outputs_in(tmp_path) == ["000000000785.json", "000000000785.png"]
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
    assert outputs_in(tmp_path / "out") == [
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


# ----------------------------------------------------------------- issue 12 (reliability)


def photos(folder, coco_images, names=("a", "b", "c")) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    ids = ["000000000785", "000000040083", "000000197388"]
    return [shutil.copy(coco_images[i], folder / f"{n}.jpg") for n, i in zip(names, ids)]


def test_outputs_never_replace_inputs(tmp_path, coco_images, models, capsys):
    """Case 1: `dwpose pose photo.png -o <its folder>` replaced the photo with its map."""
    photo = tmp_path / "photo.png"
    Image.open(coco_images["000000000785"]).save(photo)
    before = photo.read_bytes()
    assert main(["pose", str(photo), "-o", str(tmp_path), *models]) == 2
    assert capsys.readouterr().err == (
        f"dwpose: error: {tmp_path / 'photo.png'} would replace the input {photo}: choose "
        "another output folder (-o)\n"
    )
    (tmp_path / "same").symlink_to(tmp_path)  # the same folder under another name
    assert main(["pose", str(photo), "-o", str(tmp_path / "same"), *models]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert photo.read_bytes() == before and outputs_in(tmp_path) == ["photo.png", "same"]
    # retarget: the output is the dance it reads
    dance = tmp_path / "dance.json"
    dance.write_text(json.dumps([{"canvas_width": 8, "canvas_height": 8, "people": []}]))
    assert main(["retarget", str(dance), "--reference", str(dance), "-o", str(dance)]) == 2
    assert capsys.readouterr().err.endswith(
        f"{dance} would replace the input {dance}: choose another output (-o)\n"
    )
    # render: a POSE_KEYPOINT file named .png would be replaced by its own map
    (tmp_path / "poses.png").write_text(json.dumps([{"canvas_width": 8, "canvas_height": 8}]))
    assert main(["render", str(tmp_path / "poses.png"), "-o", str(tmp_path)]) == 2
    assert "poses.png would replace the input" in capsys.readouterr().err


def test_convert_never_replaces_its_input(tmp_path, tiny_models, capsys):
    model = tmp_path / "pose.onnx"
    shutil.copy(tiny_models["pose"], model)
    assert main(["convert", str(model), "-o", str(model)]) == 2
    assert capsys.readouterr().err == (
        f"dwpose: error: {model} would replace the input {model}: choose another output (-o)\n"
    )
    assert main(["export", str(model), "-o", str(model)]) == 2  # the trainer's export
    assert capsys.readouterr().err.endswith(
        f"{model} would replace the input {model}: choose another output (-o)\n"
    )
    assert model.read_bytes() == tiny_models["pose"].read_bytes()
    (tmp_path / "x.onnx").mkdir()  # case 7: the output is a folder
    assert main(["convert", str(model), "-o", str(tmp_path / "x.onnx")]) == 2
    assert capsys.readouterr().err == (
        f"dwpose: error: {tmp_path / 'x.onnx'} is a folder: give the file to write, e.g. "
        f"{tmp_path / 'x.onnx' / 'model.onnx'}\n"
    )


def test_render_goes_on_after_bad_files(tmp_path, capsys):
    """Case 3: render tracebacked on the first bad file and abandoned the batch. Each bad
    file is now one line naming the file, the frame and the field; the rest is drawn."""
    good = {"canvas_width": 64, "canvas_height": 48, "people": [{"pose_keypoints_2d": [
        30.0, 10.0, 1.0, float("nan"), 20.0, 1.0, 25.0, float("inf"), 1.0, *[0.0] * 45,
    ]}]}  # fmt: skip
    cases = {
        "good.json": [good],
        "nan_canvas.json": [{**good, "canvas_width": float("nan")}],
        "zero_canvas.json": [{**good, "canvas_height": 0}],
        "people.json": [good, {**good, "people": "nobody"}],
        "person.json": [{**good, "people": [[1, 2, 3]]}],
        "box.json": [{**good, "people": [{"box": [1, 2, 3, 4, 5, 6]}]}],
        "id.json": [{**good, "people": [{"person_id": 1e30}]}],
        "dict.json": [{**good, "people": [{"hand_left_keypoints_2d": [{"x": 1}] * 63}]}],
        "huge.json": [{**good, "canvas_width": 30_000, "canvas_height": 30_000}],
    }
    for name, value in cases.items():
        (tmp_path / name).write_text(json.dumps(value))  # json writes NaN/Infinity bare
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    inputs = [tmp_path / name for name in [*cases, "deep.json"]]
    assert main(["render", *map(str, inputs), "-o", str(tmp_path / "out")]) == 1
    err = errors(capsys.readouterr())
    t = tmp_path
    assert err == [
        f"dwpose: error: skipped: {t}/nan_canvas.json: frame 0: canvas_width: expected a whole number, got float nan",
        f"dwpose: error: skipped: {t}/zero_canvas.json: frame 0: canvas_height must be at least 1, got 0",
        f"dwpose: error: skipped: {t}/people.json: frame 1: people: expected a list, got str 'nobody'",
        f"dwpose: error: skipped: {t}/person.json: frame 0: people[0]: expected a dict, got list",
        f"dwpose: error: skipped: {t}/box.json: frame 0: people[0].box: expected [x1, y1, x2, y2] or [x1, y1, x2, y2, score], got 6 numbers",
        f"dwpose: error: skipped: {t}/id.json: frame 0: people[0].person_id: expected a whole number, got float 1e+30",
        f"dwpose: error: skipped: {t}/dict.json: frame 0: people[0].hand_left_keypoints_2d[0]: expected a number, got dict",
        f"dwpose: error: skipped: {t}/huge.json: frame 0: a 30000x30000 pose map is beyond the limit of 32,768 pixels a side and 268,435,456 pixels in all (about 768 MiB): choose a smaller resolution, or raise $DWPOSE_MAX_MAP_SIDE / $DWPOSE_MAX_MAP_PIXELS",
        f"dwpose: error: skipped: cannot read POSE_KEYPOINT JSON from {t}/deep.json: nested too deeply",
        f"dwpose: error: 9 of 10 input(s) failed: {', '.join(map(str, inputs[1:]))}",
    ]  # fmt: skip
    assert outputs_in(tmp_path / "out") == ["good.png"]
    drawn = read_map(tmp_path / "out" / "good.png")
    assert drawn.shape == (48, 64, 3) and drawn[10, 30].tolist() == [255, 0, 0]  # the nose


def test_render_refuses_maps_beyond_the_limits(tmp_path, capsys):
    """Case 4: canvas 1e9 (1.16 TiB) and 1x100000 at --resolution 512 (73 GiB) were
    allocated; they are refused before any allocation."""
    (tmp_path / "a.json").write_text(json.dumps([{"canvas_width": 1e9, "canvas_height": 1e9}]))
    (tmp_path / "b.json").write_text(json.dumps([{"canvas_width": 1, "canvas_height": 100_000}]))
    args = [str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o", str(tmp_path / "o")]
    assert main(["render", *args, "--resolution", "512"]) == 1
    err = errors(capsys.readouterr())
    assert err[0] == (
        f"dwpose: error: skipped: {tmp_path}/a.json: frame 0: canvas: 1000000000x1000000000 is "
        "1,000,000,000,000,000,000 pixels, beyond the limit of 900,000,000 (raise "
        "$DWPOSE_MAX_IMAGE_PIXELS to allow it)"
    )
    assert err[1].startswith(
        f"dwpose: error: skipped: {tmp_path}/b.json: frame 0: a 512x51200000 pose map is "
        "beyond the limit of 32,768 pixels a side"
    )


def test_normalised_file_renders_its_leg_below_the_frame(tmp_path):
    """Case 5: a normalised pose with one point off the canvas was read as pixels and
    drawn as a dot in the corner; --coordinates states the form when it is ambiguous."""
    flat = [0.0] * 54
    for j, (x, y) in {0: (0.5, 0.1), 1: (0.5, 0.25), 8: (0.45, 0.6), 9: (0.45, 0.9),
                      10: (0.45, 1.18)}.items():  # fmt: skip
        flat[3 * j : 3 * j + 3] = [x, y, 1.0]
    value = [{"canvas_width": 200, "canvas_height": 100, "people": [{"pose_keypoints_2d": flat}]}]
    (tmp_path / "editor.json").write_text(json.dumps(value))
    assert main(["render", str(tmp_path / "editor.json"), "-o", str(tmp_path / "o")]) == 0
    drawn = read_map(tmp_path / "o" / "editor.png")
    assert drawn[10, 100].tolist() == [255, 0, 0]  # the nose at (0.5, 0.1) of 200x100
    assert drawn[90, 90].any() and drawn[98, 90].any()  # right knee, shin towards y = 118
    assert not drawn[:5, :5].any()
    assert main(["render", str(tmp_path / "editor.json"), "-o", str(tmp_path / "p"),
                 "--coordinates", "pixels"]) == 0  # fmt: skip
    assert read_map(tmp_path / "p" / "editor.png")[10, 100].tolist() == [0, 0, 0]


class InterruptAt:
    """An estimator that behaves as if Ctrl-C were pressed during its call number `at`."""

    def __init__(self, estimator, at: int):
        self.estimator, self.at, self.calls = estimator, at, 0

    def __call__(self, images):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.estimator(images)


def test_ctrl_c_stops_pose_between_files(tmp_path, coco_images, models, monkeypatch, capsys):
    """Case 6 (pose): finished images are kept whole, the one in progress leaves nothing,
    a summary says what is left, exit 130."""
    images = photos(tmp_path / "in", coco_images)
    real = cli._estimator
    monkeypatch.setattr(cli, "_estimator", lambda *a: InterruptAt(real(*a), at=2))
    assert main(["pose", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *models]) == 130
    assert errors(capsys.readouterr()) == [
        f"dwpose: error: interrupted: 1 of 3 image(s) finished, 0 failed, 2 not finished "
        f"({images[1]}, {images[2]}); run the same command again to finish them"
    ]
    assert outputs_in(tmp_path / "out") == ["a.json", "a.png"]


def test_ctrl_c_stops_render_between_files(tmp_path, monkeypatch, capsys):
    value = json.dumps([{"canvas_width": 64, "canvas_height": 48, "people": []}])
    inputs = []
    for name in "abc":
        (tmp_path / f"{name}.json").write_text(value)
        inputs.append(tmp_path / f"{name}.json")
    real = cli.load_json
    calls = []

    def load(path, coordinates):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, coordinates)

    monkeypatch.setattr(cli, "load_json", load)
    assert main(["render", *map(str, inputs), "-o", str(tmp_path / "out")]) == 130
    assert errors(capsys.readouterr()) == [
        f"dwpose: error: interrupted: 2 of 3 file(s) finished, 0 failed, 1 not finished "
        f"({inputs[2]}); run the same command again to finish them"
    ]
    assert outputs_in(tmp_path / "out") == ["a.png", "b.png"]


def test_output_errors_are_one_line(tmp_path, coco_images, models, capsys):
    """Case 7: an output folder that is a file, an output name taken by a folder, a
    read-only folder and a full disk were tracebacks; each is one line naming the path."""
    images = photos(tmp_path / "in", coco_images)
    (tmp_path / "file").write_text("not a folder")
    assert main(["pose", str(images[0]), "-o", str(tmp_path / "file"), *models]) == 2
    assert capsys.readouterr().err == (
        f"dwpose: error: cannot write into {tmp_path / 'file'}: {tmp_path / 'file'} is a file, "
        "not a folder\n"
    )
    (tmp_path / "out" / "b.png").mkdir(parents=True)  # an output name taken by a folder
    assert main(["pose", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *models]) == 1
    assert errors(capsys.readouterr()) == [
        f"dwpose: error: cannot write {tmp_path / 'out' / 'b.png'}: Is a directory",
        f"dwpose: error: 1 of 3 input(s) failed: {images[1]}",
    ]
    assert outputs_in(tmp_path / "out") == ["a.json", "a.png", "b.png", "c.json", "c.png"]


def test_disk_full_stops_the_batch_and_leaves_no_partial(tmp_path, coco_images, models,
                                                         monkeypatch, capsys):  # fmt: skip
    """ENOSPC injected at the write call of the second map (a fault of the OS)."""
    images = photos(tmp_path / "in", coco_images)
    save = Image.Image.save
    writes = []

    def save_until_full(self, fp, *args, **kwargs):
        writes.append(fp)
        if len(writes) == 2:
            Path(fp).write_bytes(b"\x89PNG half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_until_full)
    assert main(["pose", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *models]) == 1
    assert errors(capsys.readouterr()) == [
        f"dwpose: error: cannot write {tmp_path / 'out' / 'b.png'}, {tmp_path / 'out' / 'b.json'}: "
        "No space left on device (free some space, or write elsewhere)",
        f"dwpose: error: stopped: 1 of 3 image(s) finished, 0 failed, 2 not finished "
        f"({images[1]}, {images[2]}); run the same command again to finish them",
    ]
    assert outputs_in(tmp_path / "out") == ["a.json", "a.png"]  # no partial, no lone map


def test_read_only_output_folder_is_refused_before_any_work(tmp_path, coco_images, models,
                                                            monkeypatch, capsys):  # fmt: skip
    """What a read-only folder answers, injected (the tests may run as root, which
    bypasses permissions); reported before the models are loaded."""
    import tempfile

    def read_only(**kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(cli, "_estimator", None)  # never reached
    assert main(["pose", str(coco_images["000000000785"]), "-o", str(tmp_path), *models]) == 2
    assert capsys.readouterr().err == (
        f"dwpose: error: cannot write into {tmp_path}: Permission denied\n"
    )


def test_readable_option_errors(capsys):
    """Issue 9: `--stick-width fat` printed "invalid _stick_width value"."""
    for option, value, message in (
        ("--stick-width", "fat", "expected a whole number of pixels or 'xinsr', got 'fat'"),
        ("--stick-width", "0", "must be at least 1 pixel or 'xinsr', got 0"),
        (
            "--resolution",
            "big",
            "expected a whole number of pixels (0: the image's size), got 'big'",
        ),
        ("--resolution", "-5", "must be 0 (the image's size) or more, got -5"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["render", "x.json", "-o", "out", option, value])
        assert info.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"dwpose render: error: argument {option}: {message}"
        )
