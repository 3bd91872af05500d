"""PyTorch weight files in and out, without ever running code from them.

Read: ``.pth``/``.pt`` through ``torch.load(weights_only=True)`` and ``.safetensors``.
Layouts understood (facts from mmengine, mmcv 1.x and DWPose's distiller):

- a plain state dict, or a trainer checkpoint ``{"meta", "state_dict", "optimizer",
  "message_hub", ...}``; without ``state_dict``, mmengine's ``ema_state_dict``;
- EMA: mmengine's EMAHook saves the averaged weights under the model's own names and the
  raw ones as ``ema_state_dict["module.<name>"]``; mmcv 1.x's EMAHook keeps ``ema_<name
  with _ for .>`` buffers beside them, again with the averaged weights under the model's
  names. So the model's own names are the weights to deploy, and ``ema_*`` copies are dropped;
- DWPose distillation checkpoints: ``student.`` and ``teacher.`` prefixes (plus loss
  modules). The deployable model (the default) is the student after stage 1, and after
  stage 2 (head-aware self-distillation) the teacher's backbone with the student's head, as
  mmpose's ``pth_transfer.py --two_dis`` takes it; ``teacher`` takes the teacher. The stage
  is read from the checkpoint's settings (``dwpose train``'s ``meta.config.stage``,
  mmengine's ``meta.cfg`` text with ``two_dis=True``), or follows from the weights (a
  feature-loss ``align`` conv or two different architectures: stage 1);
- ``module.`` prefixes of (Distributed)DataParallel.

Trainer checkpoints also pickle objects that ``weights_only`` refuses (numpy arrays in
``meta``, mmengine's ``HistoryBuffer`` in ``message_hub``). Those are read as inert
placeholders (never constructed, their data dropped) when they come from numpy or the
OpenMMLab packages; anything else is refused with the list of what the file asks for.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from .. import files
from ..extras import require
from .arch import ConversionError, NetConfig, candidates, choose, shape_text

# Modules whose pickled objects may be replaced by placeholders: what training code writes
# beside the weights (metadata, logs). Their content is never needed for inference.
PLACEHOLDER_MODULES = ("numpy", "mmengine", "mmcv", "mmpose", "mmdet", "mmrazor", "mmpretrain")
BRANCHES = ("student", "teacher")


class _Placeholder:
    """Stands in for a pickled object that is not needed: takes any arguments and state, keeps none."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


def read_pth(path: str | os.PathLike) -> object:
    """``torch.load(path, weights_only=True)``, with placeholders for trainer metadata objects.

    Both of torch.save's formats: the zip archive (torch 1.6 and later) and the legacy
    stream of pickles before it, whose globals are listed from its opcodes (pickletools)
    since torch's scanner reads archives only.
    """
    path = Path(path)
    legacy = path.is_file() and not zipfile.is_zipfile(path)
    needed = _legacy_globals(path) if legacy else _unsafe_globals(path)
    foreign = [name for name in needed if not _placeholder_ok(name, legacy)]
    if foreign and not legacy:
        raise ConversionError(_refusal(foreign))
    placeholders = [
        (_Placeholder, name) for name in needed if name.split(".")[0] in PLACEHOLDER_MODULES
    ]
    try:
        with torch.serialization.safe_globals(placeholders):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if legacy and foreign:  # weights_only refused a global torch does not allow
            raise ConversionError(_refusal(foreign)) from exc
        raise ConversionError(f"not a readable PyTorch checkpoint ({exc})") from exc
    except (RuntimeError, EOFError, ValueError) as exc:
        raise ConversionError(f"not a readable PyTorch checkpoint ({exc})") from exc


def _placeholder_ok(name: str, legacy: bool) -> bool:
    """Whether a global may be read: a placeholder module's, or (legacy files, whose list
    includes what weights_only allows) torch's own and the containers it allows."""
    root = name.split(".")[0]
    return root in PLACEHOLDER_MODULES or (legacy and root in ("torch", "collections", "builtins"))


def _refusal(foreign: list[str]) -> str:
    return (
        f"the file refers to code that loading it would run ({', '.join(foreign[:5])}); "
        "it is refused because weights are never unpickled. If you trust the file, re-save "
        "its weights alone where you trust it, e.g. `torch.save(torch.load(f, weights_only=False)"
        '["state_dict"], "weights.pth")`, and convert that.'
    )


def _legacy_globals(path: Path) -> list[str]:
    """Every global a legacy torch.save file names: it is four pickles (magic number,
    protocol, system info, the object), read here as opcodes only, never executed."""
    names: list[str] = []
    try:
        with path.open("rb") as file:
            for _ in range(4):
                for op, arg, _ in pickletools.genops(file):
                    if op.name == "GLOBAL":
                        names.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL":
                        raise ConversionError(
                            "a legacy checkpoint in a pickle protocol this reader does not "
                            "scan; re-save it with torch 1.6 or newer"
                        )
    except (ValueError, EOFError, UnicodeDecodeError, pickle.UnpicklingError) as exc:
        raise ConversionError(f"not a readable PyTorch checkpoint ({exc})") from exc
    return list(dict.fromkeys(names))


def _unsafe_globals(path: Path) -> list[str]:
    """The globals the file needs beyond what ``weights_only`` allows."""
    if not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        raise ConversionError(
            f"reading .pth files safely needs torch 2.6 or newer (this is {torch.__version__}); "
            "upgrade torch, or use the model's .onnx or .safetensors file"
        )
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (RuntimeError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise ConversionError(f"not a readable PyTorch checkpoint ({exc})") from exc


def extract_state_dict(checkpoint: object, branch: str = "student") -> dict[str, torch.Tensor]:
    """The deployable weights of a checkpoint in any of the layouts above, model names only."""
    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"expected a dict of weights, found a {type(checkpoint).__name__}")
    state = checkpoint
    if isinstance(checkpoint.get("state_dict"), dict):
        state = checkpoint["state_dict"]
    elif isinstance(checkpoint.get("ema_state_dict"), dict):
        state = {k: v for k, v in checkpoint["ema_state_dict"].items() if k != "steps"}
    state = _strip_common_prefix(state, "module.")
    if any(k.startswith(f"{b}.") for b in BRANCHES for k in state):
        stage = 1 if branch == "teacher" else _distillation_stage(checkpoint, state)
        state = distilled_weights(state, branch, stage)
    if any(not k.startswith("ema_") for k in state):
        state = {k: v for k, v in state.items() if not k.startswith("ema_")}
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(list(checkpoint)[:8])
        raise ConversionError(f"no weights found (top-level keys: {keys})")
    return tensors


def distilled_weights(state: dict, branch: str = "student", stage: int = 1) -> dict:
    """One model of a distiller's state dict, prefixes dropped, order kept: ``branch``, or
    for the student after stage 2 the teacher's backbone with the student's head."""
    if branch == "student" and stage == 2:
        rules = (("teacher.backbone.", "backbone."), ("student.head.", "head."))
    else:
        rules = ((f"{branch}.", ""),)
    out = {}
    for name, value in state.items():
        for prefix, new in rules:
            if name.startswith(prefix):
                out[new + name[len(prefix) :]] = value
                break
    if not out:
        raise ConversionError(f"the distillation checkpoint holds no {branch} weights")
    return out


def _distillation_stage(checkpoint: dict, state: dict) -> int:
    """1 or 2, from the checkpoint's settings or, failing them, from its weights."""
    meta = checkpoint.get("meta")
    if isinstance(meta, dict):
        config = meta.get("config")  # dwpose train's last.pt
        if isinstance(config, dict) and config.get("stage") in (1, 2):
            return config["stage"]
        text = meta.get("cfg")  # mmengine keeps the config's text
        if isinstance(text, str) and "DWPoseDistiller" in text:
            return 2 if re.search(r"two_dis\s*=\s*True", text) else 1
    if any(k.startswith("distill_losses.loss_fea.") for k in state):
        return 1  # stage 2 has no feature loss
    shapes = {
        b: {k[len(b) + 1 :]: tuple(v.shape) for k, v in state.items() if k.startswith(f"{b}.")}
        for b in BRANCHES
    }
    if shapes["student"] != shapes["teacher"]:
        return 1  # stage 2 distils a model into its own architecture
    raise ConversionError(
        "a distillation checkpoint of two models of the same architecture, without its "
        "settings: the deployable model is the student after stage 1 but the teacher's "
        "backbone with the student's head after stage 2, and nothing here says which stage "
        "it is. Convert the checkpoint as training saved it (with its meta), or the model "
        "`dwpose export` (this trainer) or mmpose's pth_transfer.py [--two_dis] made from it"
    )


def _strip_common_prefix(state: dict, prefix: str) -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def read_state_dict(
    path: str | os.PathLike, branch: str = "student"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Weights of a ``.pth``/``.pt`` checkpoint or a ``.safetensors`` file, and the
    metadata the file carries (what ``save_safetensors`` wrote; empty for ``.pth``)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return extract_state_dict(read_pth(path), branch), {}
    require("safetensors", f"reading {path.name}")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise ConversionError(f"not a readable safetensors file ({exc})") from exc


def infer_config(
    state: dict[str, torch.Tensor],
    arch: str | None = None,
    input_size: tuple[int, int] | None = None,
) -> NetConfig:
    """The configuration whose state dict has exactly these names and shapes.

    RTMPose weights fix their own input size (SimCC bins, token MLP) and keypoint count;
    YOLOX weights fix the class count, and ``input_size`` (default: the size's published
    one) only sets the default inference size.
    """
    if "head.cls_x.weight" in state:
        height, width = (
            state["head.cls_y.weight"].shape[0] // 2,
            state["head.cls_x.weight"].shape[0] // 2,
        )
        configs = candidates(
            "pose",
            arch,
            input_size or (height, width),
            num_keypoints=state["head.final_layer.weight"].shape[0],
        )
    elif "bbox_head.multi_level_conv_cls.0.weight" in state:
        classes = state["bbox_head.multi_level_conv_cls.0.weight"].shape[0]
        configs = candidates("det", arch, input_size, num_classes=classes)
    else:
        keys = ", ".join(list(state)[:5])
        raise ConversionError(
            "the weights are neither an RTMPose nor a YOLOX state dict in OpenMMLab naming "
            f"(first keys: {keys})"
        )
    return choose(configs, lambda config: _state_mismatches(config, state))


def _state_mismatches(config: NetConfig, state: dict[str, torch.Tensor]) -> list[str]:
    expected = config.build_meta().state_dict()
    problems = []
    for name, value in expected.items():
        if name not in state:
            if not name.endswith("num_batches_tracked"):
                problems.append(f"{name} missing (expected {shape_text(value.shape)})")
        elif state[name].shape != value.shape:
            problems.append(
                f"{name} is {shape_text(state[name].shape)}, expected {shape_text(value.shape)}"
            )
    problems += [
        f"{name} is not a parameter of {config.arch}" for name in state if name not in expected
    ]
    return problems


def load_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """``load_state_dict(strict=True)``, taking the tensors as they are (``assign``), so a
    model built on the meta device costs no initialisation. BatchNorm step counters a
    file lacks count as 0."""
    full = dict(state)
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked") and name not in full:
            full[name] = torch.zeros(value.shape, dtype=value.dtype)
    model.load_state_dict(full, strict=True, assign=True)
    return model


def save_safetensors(
    model: nn.Module,
    config: NetConfig,
    path: str | os.PathLike,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write the model's state dict with its configuration (and `extra_metadata`) as
    metadata, atomically."""
    require("safetensors", f"writing {Path(path).name}")
    from safetensors.torch import save

    path = Path(path)
    files.make_folder(path.parent)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "arch": config.arch,
        "input_size": f"{config.input_size[0]}x{config.input_size[1]}",
        "num_keypoints": str(config.num_keypoints),
        "num_classes": str(config.num_classes),
        **(extra_metadata or {}),
    }
    with files.replacing(path) as partial:
        # Written by us rather than safetensors' save_file, which makes the file private
        # (0600): the output gets the usual permissions, as every other file we write.
        partial.write_bytes(save(tensors, metadata=metadata))
    return path
