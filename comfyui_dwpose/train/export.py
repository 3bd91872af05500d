"""Deployable pose models from training: ``.safetensors`` (weights + architecture
metadata) or ``.onnx`` (the official signature), loadable by ``DWPose``, the nodes and the
preprocessor by path; ``register`` copies one into the local models folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from .. import files
from ..hub import MODELS_DIR_ENV
from ..nets import NetConfig, export_onnx
from ..nets.checkpoint import load_weights, read_state_dict, save_safetensors
from .distiller import deploy_state_dict

SUFFIXES = (".safetensors", ".onnx")
PACK_MODELS = Path(__file__).resolve().parents[2] / "models"


def pose_model(state: dict[str, torch.Tensor], arch: str, input_size: tuple[int, int]):
    """An eval-mode RTMPose holding ``state`` (a deployable state dict)."""
    config = NetConfig(arch, tuple(input_size))
    return load_weights(config.build_meta(), state).eval(), config


def save_pose_model(
    state: dict[str, torch.Tensor], arch: str, input_size: tuple[int, int], path: Path
) -> Path:
    """Write a deployable state dict as ``.safetensors`` or ``.onnx`` (by suffix)."""
    path = Path(path)
    model, config = pose_model({k: v.cpu() for k, v in state.items()}, arch, input_size)
    if path.suffix.lower() == ".onnx":
        return export_onnx(model, path, config.input_size)
    if path.suffix.lower() == ".safetensors":
        return save_safetensors(model, config, path)
    raise ValueError(f"{path.name}: the output must end in {' or '.join(SUFFIXES)}")


def export_checkpoint(checkpoint_path: Path, output: Path) -> Path:
    """A training checkpoint (``last.pt``) into a deployable model file."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    config = checkpoint["meta"]["config"]
    state = deploy_state_dict(checkpoint["state_dict"], config["stage"])
    return save_pose_model(state, config["student"], config["input_size"], output)


def register(path: Path, models_dir: str | os.PathLike | None = None) -> Path:
    """Copy a model file into a models folder the nodes and ``dwpose`` list: ``models_dir``,
    else ``$DWPOSE_MODELS_DIR``, else this pack's ``models/``."""
    folder = Path(models_dir or os.environ.get(MODELS_DIR_ENV) or PACK_MODELS)
    target = files.make_folder(folder) / Path(path).name
    try:
        files.refuse_inputs([target], [Path(path)])
    except files.OutputError:
        return target  # it is there already
    with files.replacing(target) as partial:
        shutil.copyfile(path, partial)
    return target


def read_weights(path: str | os.PathLike, branch: str = "student") -> dict[str, torch.Tensor]:
    """Pose-model weights from any checkpoint file (mmpose, pth_transfer output, ours)."""
    return read_state_dict(path, branch)[0]
