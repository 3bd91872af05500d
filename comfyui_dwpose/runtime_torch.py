"""The torch backend: the official nets (``nets/``) on any torch device, half precision on GPUs.

Its own module because it is its own job and imports torch, which the onnxruntime path
must not need. Only the networks run here: letterboxing, YOLOX decoding and NMS, crops
and SimCC decoding stay in numpy (detect.py, pose.py), so both backends share the exact
post-processing.

Precision: "auto" is float16 on CUDA and MPS, float32 on the CPU. The RTMPose backbone
runs in the chosen precision; its RTMCC head (about 1% of the work) always runs in
float32, because its attention squares raw logits, which can leave float16's range.
"fp32" on CUDA follows torch's TF32 settings, which the process owns (cuDNN convolutions
default to TF32 on Ampere and later, as onnxruntime's CUDA provider does); set
``torch.backends.cudnn.conv.fp32_precision = "ieee"`` for IEEE float32.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
from torch import nn

from .nets import ConversionError, Net
from .nets.files import load_converted
from .nets.layers import ConvModule
from .runtime import BackendUnavailableError, ModelLoadError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# On the CPU, big batches run slower per item (their activations no longer fit the caches):
# RTMPose-l 384x288 took 127 ms a crop in batches of 8 and 247 ms in one batch of 32 on
# 2 cores (bench/speed.py), so CPU batches go through in chunks of this size.
CPU_CHUNK = 8
GPU_TYPES = ("cuda", "mps")


def torch_device(device: str = "auto") -> torch.device:
    """The torch device for "auto", "cpu", "cuda", "cuda:N", "rocm[:N]" or "mps".

    "auto" is ComfyUI's device inside ComfyUI, else CUDA (or ROCm), then MPS, then the CPU.
    """
    kind, _, index = device.partition(":")
    if kind == "auto":
        comfy = sys.modules.get("comfy.model_management")  # read, never imported, from here
        if comfy is not None:
            return torch.device(comfy.get_torch_device())
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "rocm":  # ROCm builds of torch call their devices "cuda"
        kind = "cuda"
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda" and torch.cuda.is_available():
        if index and int(index) >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device(f"cuda:{index}" if index else "cuda")
    if kind == "mps" and torch.backends.mps.is_available():
        return torch.device("mps")
    if kind in ("cuda", "mps"):
        raise BackendUnavailableError(
            f"device {device!r} is not available to this torch ({torch.__version__}): "
            "install a torch build for your GPU, or choose device='cpu'"
        )
    raise BackendUnavailableError(
        f"device {device!r} is not a torch device: use auto, cpu, cuda, cuda:N, rocm or mps "
        "(or backend='onnxruntime' for dml and coreml)"
    )


def precision_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype for "auto", "fp32", "fp16" or "bf16" on ``device``."""
    if precision == "auto":
        return torch.float16 if device.type in GPU_TYPES else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, {', '.join(PRECISIONS)}; got {precision!r}")
    return PRECISIONS[precision]


class TorchModel:
    """An official net behind the `Model` interface: eval mode, inference mode, any batch."""

    def __init__(self, net: Net, device: str = "auto", precision: str = "auto") -> None:
        self.name = net.source.name
        self.config = net.config
        self.device = torch_device(device)
        self.dtype = precision_dtype(precision, self.device)
        module = _fuse_batch_norm(net.module.eval())
        if self.config.kind == "pose":
            module.backbone.to(self.dtype)  # the head stays float32 (see the module docstring)
        else:
            module.to(self.dtype)
        self.module = module.to(self.device)
        self._on_device = True
        height, width = self.config.input_size
        self.input_shape = (None, 3, height, width)
        self.output_shapes = _output_shapes(module, self.config.input_size)
        self.dynamic_size = self.config.kind == "det"  # YOLOX is fully convolutional

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, device: str = "auto", precision: str = "auto"
    ) -> TorchModel:
        """Load a .pth, .safetensors or official .onnx file (see ``nets.load_net``); an
        .onnx file is converted once and the result kept (``nets.files.load_converted``)."""
        try:
            net = load_converted(path)
        except ConversionError as exc:
            raise ModelLoadError(str(exc)) from exc
        return cls(net, device, precision)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.config.input_size

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs (float32 numpy) for a (N,3,h,w) float32 batch of any size."""
        if not self._on_device:
            self.module.to(self.device)
            self._on_device = True
        chunk = CPU_CHUNK if self.device.type == "cpu" else max(len(batch), 1)
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(batch), chunk) or [0]:
                part = np.ascontiguousarray(batch[start : start + chunk], np.float32)
                x = _to_device(torch.from_numpy(part), self.device)
                outputs.append([out.cpu().numpy() for out in self._run_net(x)])
        if len(outputs) == 1:
            return outputs[0]
        return [np.concatenate(parts) for parts in zip(*outputs)]

    def _run_net(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The networks alone: one graph, no breaks (``torch.compile(fullgraph=True)`` takes it)."""
        x = x.to(self.dtype)
        if self.config.kind == "pose":
            feats = self.module.backbone(x)
            return self.module.head(tuple(f.float() for f in feats))
        return (self.module(x).float(),)

    def release(self) -> None:
        """Give the accelerator memory back (the weights move to the CPU until the next run)."""
        if self.device.type == "cpu" or not self._on_device:
            return
        self.module.to("cpu")
        self._on_device = False
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()

    def __repr__(self) -> str:
        precision = str(self.dtype).removeprefix("torch.")
        return f"TorchModel({self.name!r}, {self.config}, device={self.device}, {precision})"


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch onto the device; to CUDA through page-locked memory, whose copy runs
    asynchronously on the stream (the net's kernels queue behind it)."""
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def _fuse_batch_norm(module: nn.Module) -> nn.Module:
    """Fold each ConvModule's BatchNorm into its conv: one kernel instead of two, same function."""
    for block in module.modules():
        if isinstance(block, ConvModule) and isinstance(block.bn, nn.BatchNorm2d):
            block.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(block.conv, block.bn)
            block.bn = nn.Identity()
    return module


def _output_shapes(module: nn.Module, input_size: tuple[int, int]) -> list[tuple]:
    height, width = input_size
    if getattr(module, "kind", None) == "pose":
        k, ratio = module.num_keypoints, module.split_ratio
        return [(None, k, int(width * ratio)), (None, k, int(height * ratio))]
    anchors = sum((height // s) * (width // s) for s in module.strides)
    return [(None, anchors, 5 + module.num_classes)]
