"""Model files of every kind into an official net, and back out (``dwpose convert``).

In: ``.pth``/``.pt`` checkpoints (read with ``weights_only``), ``.safetensors``, and
official ``.onnx`` files (converted by structure, then verified against onnxruntime).
Out: ``.safetensors`` (the state dict, with the configuration as metadata) or ``.onnx``
(the official signature, dynamic batch).

The torch backend loads ``.onnx`` files with ``load_converted``: converted once, the
weights are kept as ``<file>.torch.safetensors`` beside the file (or in the user's cache
folder where that cannot be written), keyed by the file's sha256, so a restart reads
them instead of converting and verifying again, and a changed file is converted anew.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..files import OutputError
from ..hub import file_sha256
from ..runtime import parse_size
from .arch import ConversionError, NetConfig
from .checkpoint import infer_config, load_weights, read_state_dict, save_safetensors
from .export import export_onnx
from .onnx_import import convert_onnx, verify

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
OUTPUT_SUFFIXES = (".onnx", ".safetensors")
CONVERTED_SUFFIX = ".torch.safetensors"


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


def load_converted(path: str | os.PathLike) -> Net:
    """``load_net``, with an ``.onnx`` file converted only the first time (module docstring)."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        return load_net(path)
    key = file_sha256(path)
    places = converted_places(path, key)
    for place in places:
        net = _read_converted(place, path, key)
        if net is not None:
            return net
    log.info("%s: converting it for the torch backend (once; the result is kept)", path.name)
    net = load_net(path)
    extra = {"source": path.name, "source_sha256": key}
    if net.onnx_error is not None:
        extra["onnx_error"] = repr(net.onnx_error)
    for place in places:
        try:
            save_safetensors(net.module, net.config, place, extra)
        except (OSError, OutputError, ImportError) as exc:  # read-only folder; no safetensors
            log.info("%s: cannot keep the converted weights at %s (%s)", path.name, place, exc)
            continue
        log.info("%s: converted weights kept at %s", path.name, place)
        return net
    log.warning(
        "%s: the converted weights could not be kept; the next start converts again", path.name
    )
    return net


def converted_places(path: Path, key: str) -> list[Path]:
    """Where the converted weights of ``path`` are kept: beside it, else the cache folder."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [
        path.with_name(path.name + CONVERTED_SUFFIX),
        cache / "comfyui-dwpose" / f"{key[:16]}-{path.name}{CONVERTED_SUFFIX}",
    ]


def _read_converted(place: Path, source: Path, key: str) -> Net | None:
    """The net kept at ``place`` when it was converted from these very bytes, else None."""
    if not place.is_file():
        return None
    try:
        state, metadata = read_state_dict(place)
        if metadata.get("source_sha256") != key:
            return None  # converted from an earlier version of the file
        config = infer_config(state, metadata["arch"], parse_size(metadata["input_size"]))
    except (ConversionError, ImportError, KeyError) as exc:
        log.info("%s: ignoring %s (%s)", source.name, place, exc)
        return None
    module = load_weights(config.build_meta(), state).eval()
    error = metadata.get("onnx_error")
    return Net(module, config, source, float(error) if error else None)
