"""PyTorch checkpoints and safetensors: trainer layouts, safe loading, architecture inference.

The layouts are built here from the reference state dicts (seeded OpenMMLab weights,
tests/data/openmmlab) the way mmengine, mmcv 1.x and DWPose's distiller write
them; nothing in them is real training output.
"""

from __future__ import annotations

import os
import sys
import types
import zipfile

import numpy as np
import pytest
import torch
from test_nets import OFFICIAL, REL_TOL, rel_err

from comfyui_dwpose.nets import ConversionError, NetConfig, build_model, load_net, save_net
from comfyui_dwpose.nets.checkpoint import (
    extract_state_dict,
    infer_config,
    read_pth,
    read_state_dict,
)


@pytest.fixture(scope="module")
def reference(openmmlab):
    folder = openmmlab
    return {
        arch: (torch.load(folder / f"{arch}.pt", weights_only=True), dict(np.load(folder / f"{arch}.npz")))
        for arch in ("rtmpose-t-wb-256", "yolox-nano")
    }  # fmt: skip


@pytest.fixture
def mmengine_classes(monkeypatch):
    """A class pickled under mmengine's module path, as trainer checkpoints hold
    (``message_hub`` keeps ``HistoryBuffer`` objects); mmengine itself is not installed."""
    names = ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer")
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))

    class HistoryBuffer:
        def __init__(self) -> None:
            self._log_history = np.arange(4.0)

    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = names[-1], "HistoryBuffer"
    sys.modules[names[-1]].HistoryBuffer = HistoryBuffer
    return HistoryBuffer


def mmengine_checkpoint(state: dict, history_buffer) -> dict:
    return {
        "meta": {
            "epoch": 270,
            "seed": np.int64(21),
            "dataset_meta": {"sigmas": np.ones(133, np.float32), "flip_indices": list(range(133))},
            "cfg": "model = dict(type='TopdownPoseEstimator')",
        },
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.004}]},
        "message_hub": {"log_scalars": {"train/loss": history_buffer()}, "runtime_info": {}},
    }


def simcc(model: torch.nn.Module, ref: dict) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(ref["input"]))


def test_mmengine_checkpoint_loads_safely_and_reproduces_the_reference(
    tmp_path, reference, mmengine_classes
):
    state, ref = reference["rtmpose-t-wb-256"]
    path = tmp_path / "epoch_270.pth"
    torch.save(mmengine_checkpoint(state, mmengine_classes), path)
    with pytest.raises(Exception, match="Unsupported global"):  # what plain weights_only says
        torch.load(path, weights_only=True)
    net = load_net(path)
    assert net.config == NetConfig("rtmpose-t", (256, 192))
    simcc_x, simcc_y = simcc(net.module, ref)
    assert rel_err(simcc_x, ref["simcc_x"]) <= REL_TOL
    assert rel_err(simcc_y, ref["simcc_y"]) <= REL_TOL


def test_metadata_objects_become_inert_placeholders(tmp_path, reference, mmengine_classes):
    state, _ = reference["yolox-nano"]
    path = tmp_path / "ck.pth"
    torch.save(mmengine_checkpoint(state, mmengine_classes), path)
    checkpoint = read_pth(path)
    assert checkpoint["meta"]["epoch"] == 270 and checkpoint["meta"]["cfg"].startswith("model")
    buffer = checkpoint["message_hub"]["log_scalars"]["train/loss"]
    assert type(buffer).__name__ == "_Placeholder" and vars(buffer) == {}  # never constructed
    assert type(checkpoint["meta"]["dataset_meta"]["sigmas"]).__name__ == "_Placeholder"


def test_distillation_checkpoint_student_and_teacher(tmp_path, reference, mmengine_classes):
    """DWPose's distiller saves ``student.`` and ``teacher.`` (here a larger size) plus loss modules."""
    student, ref = reference["rtmpose-t-wb-256"]
    teacher = build_model("rtmpose-s", (256, 192)).state_dict()
    state = {f"student.{k}": v for k, v in student.items()}
    state |= {f"teacher.{k}": v for k, v in teacher.items()}
    state["distill_losses.loss_fea.align.weight"] = torch.zeros(512, 384, 1, 1)
    path = tmp_path / "dis.pth"
    torch.save(mmengine_checkpoint(state, mmengine_classes), path)
    net = load_net(path)
    assert net.config.arch == "rtmpose-t"
    assert rel_err(simcc(net.module, ref)[0], ref["simcc_x"]) <= REL_TOL
    assert load_net(path, branch="teacher").config.arch == "rtmpose-s"


def test_stage2_distillation_checkpoint_deploys_teacher_backbone_and_student_head(
    tmp_path, reference, mmengine_classes
):
    """After head-aware self-distillation the model is the (stage-1) teacher's backbone with
    the new student head (pth_transfer.py --two_dis); mmengine's meta.cfg says two_dis."""
    trained, _ = reference["rtmpose-t-wb-256"]
    torch.manual_seed(0)
    fresh = build_model("rtmpose-t", (256, 192)).state_dict()  # the never-run student backbone
    state = {f"teacher.{k}": v for k, v in trained.items()}
    state |= {f"student.{k}": v for k, v in fresh.items()}
    checkpoint = mmengine_checkpoint(state, mmengine_classes)
    checkpoint["meta"]["cfg"] = "model = dict(\n    type='DWPoseDistiller',\n    two_dis=True,\n)"
    got = extract_state_dict(checkpoint)
    assert list(got) == list(trained)
    assert all(got[k] is trained[k] for k in got if k.startswith("backbone."))
    assert all(got[k] is fresh[k] for k in got if k.startswith("head."))
    assert extract_state_dict(checkpoint, "teacher") == trained  # the stage-1 model
    # dwpose train's last.pt says its stage in meta.config
    ours = {"meta": {"config": {"stage": 2}}, "state_dict": state}
    assert all(extract_state_dict(ours)[k] is v for k, v in got.items())
    # stage 1 (no two_dis), same architectures: the student
    checkpoint["meta"]["cfg"] = "model = dict(type='DWPoseDistiller', two_dis=False)"
    assert all(extract_state_dict(checkpoint)[k] is v for k, v in fresh.items())
    # same architectures and nothing saying the stage: refused, with the ways out
    path = tmp_path / "bare.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ConversionError, match=r"nothing here says which stage.*dwpose export"):
        load_net(path)
    assert load_net(path, branch="teacher").config.arch == "rtmpose-t"


def test_ema_layouts_take_the_averaged_weights(reference):
    state, _ = reference["yolox-nano"]
    raw = {k: v + 1 for k, v in state.items()}  # the non-averaged weights
    # mmengine EMAHook: averaged weights under the model's names, raw ones in ema_state_dict.
    mmengine = {"state_dict": state, "ema_state_dict": {"steps": torch.tensor(9)}}
    mmengine["ema_state_dict"] |= {f"module.{k}": v for k, v in raw.items()}
    assert extract_state_dict(mmengine).keys() == state.keys()
    assert all(extract_state_dict(mmengine)[k] is v for k, v in state.items())
    # Only the EMA model saved: its "module." copy (without the step counter).
    only_ema = {"ema_state_dict": mmengine["ema_state_dict"]}
    assert all(torch.equal(extract_state_dict(only_ema)[k], v) for k, v in raw.items())
    # mmcv 1.x EMAHook: ema_<name with _> buffers beside the model's names.
    mmcv = dict(state) | {f"ema_{k.replace('.', '_')}": v for k, v in raw.items()}
    assert extract_state_dict({"state_dict": mmcv, "meta": {}}).keys() == state.keys()
    # (Distributed)DataParallel prefixes.
    wrapped = {f"module.{k}": v for k, v in state.items()}
    assert extract_state_dict(wrapped).keys() == state.keys()


def test_code_in_a_checkpoint_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": Payload()}, path)
    with pytest.raises(ConversionError) as info:
        load_net(path)
    assert str(info.value).startswith("evil.pth: the file refers to code that loading it would run")
    assert "posix.mkdir" in str(info.value) and "never unpickled" in str(info.value)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ConversionError, match=r"noise\.pth: not a readable PyTorch checkpoint"):
        load_net(path)
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(ConversionError, match="no weights found"):
        load_net(tmp_path / "list.pth")
    torch.save({"conv.weight": torch.ones(3)}, tmp_path / "other.pth")
    with pytest.raises(ConversionError, match="neither an RTMPose nor a YOLOX state dict"):
        load_net(tmp_path / "other.pth")


@pytest.mark.parametrize(("name", "size", "arch", "n_params"), OFFICIAL, ids=lambda v: str(v))
def test_every_official_size_is_recognised_from_its_shapes(name, size, arch, n_params):
    config = NetConfig(name, size or build_model(name).input_size)
    state = config.build_meta().state_dict()
    assert infer_config(state) == config


def test_a_named_size_that_does_not_fit_lists_the_first_differences(tmp_path, reference):
    state = dict(reference["rtmpose-t-wb-256"][0])
    with pytest.raises(ConversionError) as info:
        load_net(_save(tmp_path / "dw-tt.pth", state), arch="rtmpose-s")
    text = str(info.value)
    assert text.startswith("dw-tt.pth: the weights do not fit rtmpose-s 256x192, 133 keypoints: ")
    assert "backbone.stem.0.conv.weight is [12,3,3,3], expected [16,3,3,3]" in text
    assert "more)" in text
    del state["head.gau.gamma"]
    with pytest.raises(ConversionError, match=r"head\.gau\.gamma missing \(expected \[2,128\]\)"):
        infer_config(state)


def test_safetensors_round_trip_keeps_the_configuration(tmp_path, reference):
    state, _ = reference["yolox-nano"]
    net = load_net(_save(tmp_path / "nano.pth", state), input_size=(320, 320))
    path = save_net(net, tmp_path / "nano.safetensors")
    again = load_net(path)
    assert again.config == NetConfig("yolox-nano", (320, 320))  # from the file's metadata
    assert again.module.state_dict().keys() == net.module.state_dict().keys()
    assert all(torch.equal(again.module.state_dict()[k], v) for k, v in state.items())
    _, metadata = read_state_dict(path)
    assert metadata["arch"] == "yolox-nano" and metadata["input_size"] == "320x320"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nano.pth", "nano.safetensors"]


def test_missing_batch_norm_counters_are_tolerated(tmp_path, reference):
    state, ref = reference["rtmpose-t-wb-256"]
    trimmed = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    net = load_net(_save(tmp_path / "t.pth", trimmed))
    assert rel_err(simcc(net.module, ref)[1], ref["simcc_y"]) <= REL_TOL


def _save(path, state):
    torch.save(state, path)
    return path


def test_a_legacy_checkpoint_loads_with_weights_only(tmp_path, reference, mmengine_classes):
    """Issue 12, case 9: a pre-1.6 torch.save file (a stream of pickles, not a zip) was
    refused as "not a readable PyTorch checkpoint"; torch's weights_only loader reads it,
    and its globals are listed from the pickle opcodes for the same placeholder rule."""
    state, ref = reference["rtmpose-t-wb-256"]
    path = tmp_path / "legacy.pth"
    torch.save(
        mmengine_checkpoint(state, mmengine_classes), path, _use_new_zipfile_serialization=False
    )
    assert not zipfile.is_zipfile(path)
    net = load_net(path)
    assert net.config == NetConfig("rtmpose-t", (256, 192))
    simcc_x, simcc_y = simcc(net.module, ref)
    assert rel_err(simcc_x, ref["simcc_x"]) <= REL_TOL
    assert rel_err(simcc_y, ref["simcc_y"]) <= REL_TOL
    plain = tmp_path / "plain.pth"
    torch.save(state, plain, _use_new_zipfile_serialization=False)
    assert read_pth(plain).keys() == state.keys()


def test_code_in_a_legacy_checkpoint_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pth"
    torch.save(
        {"state_dict": {"w": torch.ones(1)}, "meta": Payload()},
        path,
        _use_new_zipfile_serialization=False,
    )
    with pytest.raises(ConversionError) as info:
        load_net(path)
    assert str(info.value).startswith(
        "evil.pth: the file refers to code that loading it would run (posix.mkdir)"
    )
    assert not marker.exists()
