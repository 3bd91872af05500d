"""DWPOSE_MODEL: the detector and pose model the nodes share, under ComfyUI's memory management.

ComfyUI frees memory by unloading the models it lists in `comfy.model_management`
("Unload models", "Free model and node cache", room for a diffusion model on the GPU, an
out-of-memory error). `DWPoseModel` is listed there like a core ModelPatcher: it offers the
methods that `model_management.LoadedModel` calls (model_size, partially_load, detach...),
and is loaded through `load_models_gpu` before every run, which makes room for it on the
GPU. Unloading drops the weights outright (onnxruntime sessions cannot be moved between
devices), so their memory comes back: RAM on the CPU, VRAM on a GPU. The next run reads
them from disk again.

Options that do not change the weights (people, detector channels, fallback, thresholds)
are not part of a model: every run builds a `DWPose` on the loaded models
(`DWPose.from_models`), which reads nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

from .comfyui_dwpose.estimator import DWPose, load_models
from .comfyui_dwpose.runtime import CPU, Model

CACHE_SIZE = 2  # models kept by key (two nodes with different models do not thrash)


class DWPoseWeights:
    """What ComfyUI watches as the "real model" (a weak reference with a finalizer): the
    loaded detector and pose model, referenced by their `DWPoseModel` only."""

    detector: Model | None = None
    pose: Model | None = None


class DWPoseModel:
    """The DWPOSE_MODEL value: two model files and how to run them; loads on first use.

    detector: path, or None for the whole image as one person. backend, device, precision:
    as `runtime.load_model`. management: `comfy.model_management` inside ComfyUI, else None
    (then the weights stay loaded until `unload`).
    """

    parent = None  # ComfyUI follows a patcher's parent; this model is never a clone

    def __init__(
        self,
        detector: Path | None,
        pose: Path,
        backend: str = "auto",
        device: str = "auto",
        precision: str = "auto",
        management=None,
    ):
        self.files = (detector, pose)
        self.backend, self.device, self.precision = backend, device, precision
        self.management = management
        self.model = DWPoseWeights()
        self.loads = 0  # times the files were read
        self.load_device = management.get_torch_device() if management else torch.device("cpu")
        self.offload_device = torch.device("cpu")
        self.size = sum(os.path.getsize(f) for f in self.files if f is not None)

    @property
    def loaded(self) -> bool:
        return self.model.pose is not None

    def load(self) -> tuple[Model | None, Model]:
        """The loaded (detector, pose model): through ComfyUI's model management inside
        ComfyUI (room is made, the model is listed), directly outside."""
        if self.management is not None:
            self.management.load_models_gpu([self])
        self._load()
        return self.model.detector, self.model.pose

    def estimator(self, on_run: Callable[[], None] | None = None, **options) -> DWPose:
        """A `DWPose` with these options (`DWPose.from_models`) on the loaded models.
        on_run: called before every model run (ComfyUI's interrupt check and progress)."""
        detector, pose = self.load()
        if on_run is not None:
            detector = Watched(detector, on_run) if detector is not None else None
            pose = Watched(pose, on_run)
        return DWPose.from_models(detector, pose, **options)

    def unload(self) -> None:
        """Drop the weights and hand their memory back; the next run loads them again."""
        if self.loaded:
            self.model.detector = self.model.pose = None
            gc.collect()  # before the trim: anything a cycle held goes first
            return_freed_memory()

    @property
    def on_cpu(self) -> bool:
        """Whether the models run on the CPU (loaded, or as they will be loaded)."""
        if not self.loaded:
            return self.device == "cpu" or self.load_device.type == "cpu"
        device = getattr(self.model.pose, "device", None)  # torch's
        if device is not None:
            return device.type == "cpu"
        return getattr(self.model.pose, "provider", CPU) == CPU  # onnxruntime's

    @property
    def warnings(self) -> list[str]:
        """Why a model runs on a slower device than asked for (see `DWPose.warnings`)."""
        models = (self.model.detector, self.model.pose)
        return [m.fallback for m in models if getattr(m, "fallback", None)]

    def _load(self) -> None:
        if not self.loaded:
            detector, pose = self.files
            self.model.detector, self.model.pose = load_models(
                detector, pose, self.backend, self.device, self.precision
            )
            self.loads += 1

    # What comfy.model_management.LoadedModel calls. Sizes are of the load device's
    # memory: the files' bytes (about the float32 weights) where the models run on it,
    # 0 when they run on the CPU beside ComfyUI's GPU (they take no VRAM).

    def model_size(self) -> int:
        return 0 if self.on_cpu and self.load_device.type != "cpu" else self.size

    def loaded_size(self) -> int:
        return self.model_size() if self.loaded else 0

    def current_loaded_device(self) -> torch.device:
        return self.load_device if self.loaded else self.offload_device

    def model_dtype(self) -> torch.dtype:
        return torch.float32

    def model_patches_to(self, device) -> None:
        pass  # no patches

    def model_patches_models(self) -> list:
        return []

    def lowvram_patch_counter(self) -> int:
        return 0

    def is_clone(self, other) -> bool:
        return other is self

    def partially_load(self, device, extra_memory=0, force_patch_weights=False) -> int:
        before = self.loaded_size()
        self._load()
        return self.loaded_size() - before

    def partially_unload(self, device, memory_to_free=0) -> int:
        freed = self.loaded_size()
        self.unload()
        return freed

    def detach(self, unpatch_all: bool = True) -> DWPoseWeights:
        if unpatch_all:  # False: ComfyUI only re-lists a model it is about to load again
            self.unload()
        return self.model

    def __repr__(self) -> str:
        names = ", ".join(f.name if f else "no detector" for f in self.files)
        return f"DWPoseModel({names}, backend={self.backend}, device={self.device})"


class Watched:
    """A `Model` that calls `before_run` before each run (an interrupt check, progress)."""

    def __init__(self, model: Model, before_run: Callable[[], None]):
        self.model, self.before_run = model, before_run

    def run(self, batch):
        self.before_run()
        return self.model.run(batch)

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def return_freed_memory() -> None:
    """Give the heap's free pages back to the system. glibc keeps freed blocks below its
    mmap threshold for reuse, and the weights are hundreds of such blocks: without this,
    unloading frees them for this process only. Elsewhere (musl, macOS, Windows) a no-op."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


_MODELS: OrderedDict[tuple, DWPoseModel] = OrderedDict()


def cached_model(key: tuple, make: Callable[[], DWPoseModel]) -> DWPoseModel:
    """The model for `key` (names, backend, device, precision, folders), made once. Only
    the most recent `CACHE_SIZE` are kept here; ComfyUI's node cache may hold others."""
    if key in _MODELS:
        _MODELS.move_to_end(key)
        return _MODELS[key]
    model = _MODELS[key] = make()
    while len(_MODELS) > CACHE_SIZE:
        _MODELS.popitem(last=False)
    return model
