"""`dwpose convert`: checkpoints and official ONNX files into .onnx or .safetensors.

Inputs are the seeded reference weights (tests/data/openmmlab) in the layouts
users have: a trainer checkpoint, a plain state dict, an ONNX export.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import current_umask
from test_nets import REL_TOL, rel_err

from comfyui_dwpose.cli import main
from comfyui_dwpose.nets import NetConfig, export_onnx, load_net


@pytest.fixture(scope="module")
def reference(openmmlab):
    return openmmlab


def run_onnx(path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def test_checkpoint_to_onnx(tmp_path, reference, capsys):
    checkpoint = tmp_path / "best_coco-wholebody_AP_epoch_270.pth"
    state = torch.load(reference / "rtmpose-t-wb-256.pt", weights_only=True)
    torch.save({"meta": {"epoch": 270}, "state_dict": state, "optimizer": {}}, checkpoint)
    out = tmp_path / "rtmpose-t.onnx"
    assert main(["convert", str(checkpoint), "--arch", "rtmpose-t", "-o", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"{checkpoint} -> {out} (rtmpose-t 256x192, 133 keypoints, 5,519,779 parameters)\n"
    )
    ref = np.load(reference / "rtmpose-t-wb-256.npz")
    batch = np.repeat(ref["input"], 2, axis=0)  # dynamic batch
    simcc_x, simcc_y = run_onnx(out, batch)
    assert rel_err(simcc_x[1:], ref["simcc_x"]) <= REL_TOL
    assert rel_err(simcc_y[1:], ref["simcc_y"]) <= REL_TOL


def test_onnx_to_safetensors_is_verified(tmp_path, reference, capsys):
    source = export_onnx(load_net(reference / "yolox-nano.pt").module, tmp_path / "yolox.onnx")
    out = tmp_path / "yolox.safetensors"
    assert main(["convert", str(source), "-o", str(out)]) == 0  # the arch is found
    text = capsys.readouterr().out
    assert text.startswith(f"{source} -> {out} (yolox-nano 416x416, 80 classes, 912,159 parameters")
    assert "; equals the ONNX file to " in text
    # The usual permissions, as every other output (safetensors' own writer makes 0600).
    assert out.stat().st_mode & 0o777 == source.stat().st_mode & 0o777 == 0o666 & ~current_umask()
    net = load_net(out)
    assert net.config == NetConfig("yolox-nano", (416, 416))
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    with torch.no_grad():
        got = net.module(torch.from_numpy(x)).numpy()
    assert rel_err(got, run_onnx(source, x)[0]) <= REL_TOL


def test_safetensors_to_onnx_at_another_detector_size(tmp_path, reference, capsys):
    source = tmp_path / "nano.safetensors"
    assert main(["convert", str(reference / "yolox-nano.pt"), "-o", str(source)]) == 0
    out = tmp_path / "nano_640.onnx"
    assert main(["convert", str(source), "--input-size", "640x640", "-o", str(out)]) == 0
    assert "yolox-nano 640x640" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, 640, 640]
    assert session.get_outputs()[0].shape == ["batch", 8400, 85]


def test_teacher_of_a_distillation_checkpoint(tmp_path, reference, capsys):
    student = torch.load(reference / "rtmpose-t-wb-256.pt", weights_only=True)
    teacher = NetConfig("rtmpose-s", (256, 192)).build().state_dict()
    state = {f"student.{k}": v for k, v in student.items()}
    state |= {f"teacher.{k}": v for k, v in teacher.items()}
    checkpoint = tmp_path / "dw-ss_ucoco.pth"
    torch.save({"state_dict": state}, checkpoint)
    out = tmp_path / "teacher.safetensors"
    assert main(["convert", str(checkpoint), "--teacher", "-o", str(out)]) == 0
    assert "(rtmpose-s 256x192, 133 keypoints" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "rtmpose-xl"], "unknown --arch 'rtmpose-xl'; known: rtmpose-t, rtmpose-s"),
        (["-o", "out.pt"], "out.pt: the output must end in .onnx or .safetensors"),
        (["--input-size", "300x200"], "both sides must be multiples of 32"),
        (["--input-size", "big"], "expected HxW such as 384x288"),
    ],
)
def test_usage_errors(tmp_path, reference, capsys, args, message):
    output = [] if "-o" in args else ["-o", str(tmp_path / "x.onnx")]
    assert exit_code(["convert", str(reference / "rtmpose-t-wb-256.pt"), *output, *args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def exit_code(argv: list[str]) -> int:
    """main's return value, or the code of argparse's SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_model_errors(tmp_path, reference, capsys):
    out = str(tmp_path / "x.onnx")
    weights = str(reference / "rtmpose-t-wb-256.pt")
    assert main(["convert", weights, "--arch", "rtmpose-s", "-o", out]) == 3
    err = capsys.readouterr().err
    assert err.startswith(
        "dwpose: error: rtmpose-t-wb-256.pt: the weights do not fit rtmpose-s 256x192, 133 keypoints: "
        "backbone.stem.0.conv.weight is [12,3,3,3], expected [16,3,3,3]; "
    )
    assert main(["convert", weights, "--arch", "yolox-s", "-o", out]) == 3
    assert "the weights are a pose model, but --arch yolox-s is not" in capsys.readouterr().err

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"state_dict": {}, "x": Payload()}, tmp_path / "evil.pth")
    assert main(["convert", str(tmp_path / "evil.pth"), "-o", out]) == 3
    captured = capsys.readouterr()
    assert "refers to code that loading it would run (builtins.print)" in captured.err
    assert "ran" not in captured.out
    assert main(["convert", str(tmp_path / "missing.pth"), "-o", out]) == 3
    assert "missing.pth" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pth"]
