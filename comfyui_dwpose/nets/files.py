"""Model files of every kind into an official net, and back out (``dwpose convert``).

In: ``.pth``/``.pt`` checkpoints (read with ``weights_only``), ``.safetensors``, and
official ``.onnx`` files (converted by structure, then verified against onnxruntime).
Out: ``.safetensors`` (the state dict, with the configuration as metadata) or ``.onnx``
(the official signature, dynamic batch).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..runtime import parse_size
from .arch import ConversionError, NetConfig
from .checkpoint import infer_config, load_weights, read_state_dict, save_safetensors
from .export import export_onnx
from .onnx_import import convert_onnx, verify

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
OUTPUT_SUFFIXES = (".onnx", ".safetensors")


@dataclass
class Net:
    """A loaded official net: the module (eval mode, float32, CPU) and its configuration."""

    module: nn.Module
    config: NetConfig
    source: Path
    onnx_error: float | None = None  # ONNX imports: largest relative difference to onnxruntime

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def load_net(
    path: str | os.PathLike,
    arch: str | None = None,
    input_size: tuple[int, int] | None = None,
    branch: str = "student",
) -> Net:
    """Load any supported file into its official architecture.

    ``arch`` (e.g. "rtmpose-l") is checked when given and found from the weights' shapes
    otherwise. ``input_size`` is (height, width): RTMPose weights fix it themselves;
    for YOLOX it is the inference size (default: the ONNX file's, else the published one).
    ``branch`` picks "student" or "teacher" weights of a distillation checkpoint.
    Errors are ``ConversionError``s that start with the file's name.
    """
    path = Path(path)
    try:
        return _load(path, arch, input_size, branch)
    except ConversionError as exc:
        raise ConversionError(f"{path.name}: {exc}") from exc


def _load(path: Path, arch: str | None, input_size: tuple[int, int] | None, branch: str) -> Net:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        module, config = convert_onnx(path, arch, input_size)
        try:
            error = verify(module, path, config)
        except ImportError:
            log.warning("%s: onnxruntime is not installed; the conversion is unverified", path.name)
            error = None
        return Net(module, config, path, error)
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ConversionError("unknown model file type; expected .onnx, .pth, .pt or .safetensors")
    state, metadata = read_state_dict(path, branch)
    config = infer_config(
        state, arch or metadata.get("arch"), input_size or parse_size(metadata.get("input_size"))
    )
    module = load_weights(config.build_meta(), state).eval()
    return Net(module, config, path)


def save_net(net: Net, path: str | os.PathLike, dynamic_size: bool = False) -> Path:
    """Write ``net`` as ``.onnx`` (official signature, dynamic batch, its configuration's
    input size; ``dynamic_size``: any height and width, for detectors) or ``.safetensors``
    (state dict and configuration)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return export_onnx(net.module, path, net.config.input_size, dynamic_size=dynamic_size)
    if suffix == ".safetensors":
        return save_safetensors(net.module, net.config, path)
    raise ConversionError(f"{path.name}: can write {' or '.join(OUTPUT_SUFFIXES)} only")
