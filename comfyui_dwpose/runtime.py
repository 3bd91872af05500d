"""Inference backends behind one small interface, `Model`, and `load_model` to choose one.

onnxruntime runs the ONNX files as they are. The execution provider is chosen from what
is installed (CUDA, ROCm, DirectML, CoreML, then CPU), and a requested accelerator that
cannot start is an error, never a silent switch to the CPU. The torch backend
(`runtime_torch.py`) runs the official architectures on any torch device.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Protocol

import numpy as np

from .extras import MissingExtraError, require

log = logging.getLogger(__name__)

# Best first. The CPU provider is always the last resort.
ACCELERATORS = {
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
CPU = "CPUExecutionProvider"


class ModelLoadError(RuntimeError):
    """A model file that cannot be used: corrupt, truncated, or of the wrong kind."""


class BackendUnavailableError(RuntimeError):
    """The requested engine or device is not installed or cannot start."""


class Model(Protocol):
    """What the detector and the pose model need from a backend.

    A model that also runs other input sizes than `input_size` (a fully convolutional
    detector) says so with a true `dynamic_size` attribute; without it, it takes only
    `input_size`.
    """

    name: str
    input_shape: tuple  # (batch, 3, h, w); dims are ints, or None where dynamic
    output_shapes: list[tuple]

    @property
    def input_size(self) -> tuple[int, int] | None: ...

    def run(self, batch: np.ndarray) -> list[np.ndarray]: ...


def cpu_threads() -> int:
    """Cores this process may use (respects affinity and container CPU sets), or fewer when
    OMP_NUM_THREADS says so: Ray sets it to each actor's share of the cores, and several
    sessions each spinning threads on all cores slow each other down."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        cores = max(1, os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return min(cores, int(limit)) if limit.isdigit() and int(limit) > 0 else cores


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(
            "onnxruntime is not installed. Install the build for your machine, one of: "
            "`pip install onnxruntime` (CPU), `pip install onnxruntime-gpu` (NVIDIA CUDA), "
            "`pip install onnxruntime-directml` (Windows GPUs). Install only one: they share a folder."
        ) from exc
    return onnxruntime


def onnx_providers(device: str = "auto") -> list:
    """Execution providers for `device`: "auto", "cpu", "cuda", "cuda:N", "rocm", "dml", "coreml"."""
    ort = _import_onnxruntime()
    available = ort.get_available_providers()
    kind, _, index = device.partition(":")
    if kind == "auto":
        best = [p for p in ACCELERATORS.values() if p in available]
        return [*best[:1], CPU]
    if kind == "cpu":
        return [CPU]
    if kind not in ACCELERATORS:
        raise BackendUnavailableError(
            f"unknown device {device!r}: use auto, cpu, {', '.join(ACCELERATORS)}"
        )
    provider = ACCELERATORS[kind]
    if provider not in available:
        raise BackendUnavailableError(
            f"device {device!r} needs onnxruntime's {provider}, but this onnxruntime offers only "
            f"{', '.join(available)}. Install the matching build (e.g. onnxruntime-gpu for CUDA) in place "
            "of the CPU one, or choose device='cpu'."
        )
    options = {"device_id": int(index)} if index else {}
    return [(provider, options), CPU]


class OnnxModel:
    """An ONNX model in an onnxruntime session; runs batches of any size.

    `fallback` says why it runs on a slower device than asked for (None when it does not).
    """

    fallback: str | None = None

    def __init__(self, path: str | os.PathLike, device: str = "auto", threads: int | None = None):
        ort = _import_onnxruntime()
        self.path = Path(path)
        self.name = self.path.name
        providers = onnx_providers(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            raise ModelLoadError(_load_error(self.path, exc)) from exc
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        active = self.session.get_providers()
        if wanted not in active:
            message = (
                f"{self.name}: onnxruntime could not start {wanted} (its libraries, e.g. CUDA or cuDNN, "
                f"are missing or do not match) and would run on {', '.join(active)} instead."
            )
            if device != "auto":
                raise BackendUnavailableError(message + " Fix the install, or choose device='cpu'.")
            self.fallback = f"{message} Running on the CPU; it will be slow."
            log.warning(self.fallback)
        self.provider = active[0]
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = _dims(self.session.get_inputs()[0].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_shapes = [_dims(o.shape) for o in self.session.get_outputs()]
        self.dynamic_size = len(self.input_shape) == 4 and self.input_shape[2:] == (None, None)
        # Dynamic-size exports (`export_onnx(dynamic_size=True)`) record the size they were made for.
        self._nominal_size = parse_size(
            self.session.get_modelmeta().custom_metadata_map.get("input_size")
        )

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The fixed (h, w), or for a dynamic-size file the size recorded in it (else None)."""
        h, w = self.input_shape[2:4] if len(self.input_shape) == 4 else (None, None)
        return (h, w) if h and w else self._nominal_size

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for a (N,3,h,w) float32 batch; a model with a fixed batch size is fed in chunks."""
        fixed = self.input_shape[0]
        if not fixed or fixed == len(batch):
            return self.session.run(self.output_names, {self.input_name: batch})
        chunks = []
        for start in range(0, len(batch), fixed):
            part = batch[start : start + fixed]
            pad = fixed - len(part)
            if pad:
                part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), part.dtype)])
            outs = self.session.run(self.output_names, {self.input_name: part})
            chunks.append([o[: fixed - pad] for o in outs])
        return [np.concatenate(parts) for parts in zip(*chunks)]

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, input={self.input_shape}, provider={self.provider})"


def parse_size(text: str | None) -> tuple[int, int] | None:
    """(h, w) from the "HxW" `input_size` metadata our exports carry, or None."""
    height, _, width = (text or "").partition("x")
    return (int(height), int(width)) if height.isdigit() and width.isdigit() else None


def _dims(shape) -> tuple:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def _load_error(path: Path, exc: Exception) -> str:
    size = path.stat().st_size if path.exists() else 0
    text = str(exc)
    if "Protobuf parsing failed" in text or "INVALID_PROTOBUF" in text or size == 0:
        return (
            f"{path}: not a valid ONNX model; the file is corrupt or truncated ({size:,} bytes). "
            "Delete it and download it again (`dwpose download NAME`), or check where it came from."
        )
    return f"{path}: onnxruntime cannot load this model: {text.strip().splitlines()[-1] if text.strip() else exc!r}"


ONNXRUNTIME_NAMES = ("onnxruntime", "onnx", "ort")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")


def load_model(
    path: str | os.PathLike,
    backend: str = "auto",
    device: str = "auto",
    precision: str = "auto",
) -> Model:
    """A `Model` for `path` on `backend`: "auto", "onnxruntime" or "torch".

    "auto" runs the torch backend where torch has a GPU for `device` (CUDA, ROCm, MPS;
    ComfyUI's device inside ComfyUI), or for PyTorch checkpoints (.pth, .safetensors),
    and onnxruntime otherwise. An .onnx file on torch is first converted into the official
    architecture and checked against onnxruntime (`nets.load_net`); under "auto" a file
    that cannot be converted runs on onnxruntime instead. `precision` ("auto", "fp32",
    "fp16", "bf16") applies to torch; onnxruntime runs the file as it is.
    """
    if backend not in ("auto", "torch", *ONNXRUNTIME_NAMES):
        raise BackendUnavailableError(
            f"unknown backend {backend!r}: use 'auto', 'onnxruntime' or 'torch'"
        )
    path = Path(path)
    checkpoint = path.suffix.lower() in CHECKPOINT_SUFFIXES
    if backend == "torch" or (backend == "auto" and checkpoint):
        return _torch_model(path, device, precision)
    if checkpoint:
        raise BackendUnavailableError(
            f"{path.name} is a PyTorch checkpoint: run it with backend='torch', or convert it "
            f"for onnxruntime with `dwpose convert {path.name} -o {path.stem}.onnx`"
        )
    failed = None
    if backend == "auto" and (precision not in ("auto", "fp32") or _torch_has_gpu(device)):
        try:
            return _torch_model(path, device, precision)
        except (ModelLoadError, BackendUnavailableError) as exc:
            failed = exc
    if precision not in ("auto", "fp32"):
        raise BackendUnavailableError(
            f"precision {precision!r} needs the torch backend; onnxruntime runs {path.name} as it is"
        )
    model = OnnxModel(path, device=device)
    if failed is not None:
        # Never silent: the caller (the ComfyUI node) shows `fallback` beside its output.
        where = "on the CPU, much slower" if model.provider == CPU else f"on {model.provider}"
        model.fallback = f"{failed}; running it on onnxruntime instead, {where}"
        log.warning(model.fallback)
    return model


def _torch_model(path: Path, device: str, precision: str) -> Model:
    try:
        require("torch", "the torch backend")
    except MissingExtraError as exc:
        raise BackendUnavailableError(f"{exc}; or use backend='onnxruntime'") from exc
    from .runtime_torch import TorchModel

    return TorchModel.from_file(path, device, precision)


# Device files a Linux GPU driver creates (NVIDIA, ROCm, WSL2's GPU bridge).
LINUX_GPU_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def _torch_has_gpu(device: str) -> bool:
    """Whether the torch backend would run on a GPU for `device` (False without torch).

    Importing torch costs seconds and hundreds of MB, so where torch is not loaded yet,
    a Linux machine without GPU device files is answered without it.
    """
    if device.partition(":")[0] in ("cpu", "dml", "coreml"):
        return False
    if (
        "torch" not in sys.modules
        and sys.platform.startswith("linux")
        and not any(os.path.exists(f) for f in LINUX_GPU_FILES)
    ):
        return False
    try:
        from .runtime_torch import torch_device
    except ImportError:
        return False
    try:
        return torch_device(device).type != "cpu"
    except BackendUnavailableError:
        return False
