"""Build the official architectures by name (timm style): ``build_model("rtmpose-l")``."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .rtmpose import RTMPose
from .yolox import YOLOX


@dataclass(frozen=True)
class ModelSpec:
    """Scaling factors and default input size ``(height, width)`` of one official size."""

    name: str
    kind: str  # "pose" or "det"
    deepen_factor: float
    widen_factor: float
    input_size: tuple[int, int]
    depthwise: bool = False


_SPECS = (
    # RTMPose whole-body. t/s/m are published at 256x192; l at 256x192 and 384x288
    # (DWPose's dw-ll_ucoco_384 is l at 384x288); x at 384x288.
    ModelSpec("rtmpose-t", "pose", 0.167, 0.375, (256, 192)),
    ModelSpec("rtmpose-s", "pose", 0.33, 0.5, (256, 192)),
    ModelSpec("rtmpose-m", "pose", 0.67, 0.75, (256, 192)),
    ModelSpec("rtmpose-l", "pose", 1.0, 1.0, (384, 288)),
    ModelSpec("rtmpose-x", "pose", 1.33, 1.25, (384, 288)),
    # YOLOX (mmdet configs): nano/tiny are trained at 416, the rest at 640.
    ModelSpec("yolox-nano", "det", 0.33, 0.25, (416, 416), depthwise=True),
    ModelSpec("yolox-tiny", "det", 0.33, 0.375, (416, 416)),
    ModelSpec("yolox-s", "det", 0.33, 0.5, (640, 640)),
    ModelSpec("yolox-m", "det", 0.67, 0.75, (640, 640)),
    ModelSpec("yolox-l", "det", 1.0, 1.0, (640, 640)),
    ModelSpec("yolox-x", "det", 1.33, 1.25, (640, 640)),
)
MODEL_SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def list_models(kind: str | None = None) -> list[str]:
    """Known architecture names, optionally only ``"pose"`` or ``"det"`` ones."""
    return [s.name for s in _SPECS if kind is None or s.kind == kind]


def get_spec(name: str) -> ModelSpec:
    """The spec of a known name; ``KeyError`` lists the known ones."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODEL_SPECS)}") from None


def build_model(
    name: str,
    input_size: tuple[int, int] | None = None,
    *,
    num_keypoints: int = 133,
    num_classes: int = 80,
) -> nn.Module:
    """A freshly initialised official architecture, in train mode like any nn.Module.

    ``input_size`` is ``(height, width)``. For RTMPose it shapes the head (SimCC bins and
    the token MLP), so it must match the checkpoint; for YOLOX it is only the default
    export size (the network is fully convolutional). ``num_keypoints`` (RTMPose) and
    ``num_classes`` (YOLOX) default to the DWPose values.
    """
    spec = get_spec(name)
    size = tuple(input_size) if input_size is not None else spec.input_size
    if spec.kind == "pose":
        return RTMPose(spec.deepen_factor, spec.widen_factor, size, num_keypoints)
    return YOLOX(spec.deepen_factor, spec.widen_factor, spec.depthwise, num_classes, size)
