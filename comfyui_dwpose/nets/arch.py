"""Which official architecture a set of weights belongs to.

Weights arrive without a reliable name (a ``.pth`` from a trainer, an ONNX file), so the
architecture is found by comparing parameter shapes with every official size, or checked
against the one the user names. When nothing fits, the error lists the first parameters
that differ for the closest size, which is what a user needs to see a wrong file or size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .factory import build_model, get_spec, list_models

SHOWN_MISMATCHES = 5


class ConversionError(ValueError):
    """Weights that fit no official architecture, or a file that cannot be read safely."""


@dataclass(frozen=True)
class NetConfig:
    """An official architecture with the sizes its weights imply."""

    arch: str  # a name of MODEL_SPECS, e.g. "rtmpose-l"
    input_size: tuple[int, int]  # (height, width)
    num_keypoints: int = 133  # pose models
    num_classes: int = 80  # detectors

    @property
    def kind(self) -> str:
        return get_spec(self.arch).kind

    def build(self) -> nn.Module:
        """A freshly initialised module of this configuration (on the current default device)."""
        return build_model(
            self.arch,
            self.input_size,
            num_keypoints=self.num_keypoints,
            num_classes=self.num_classes,
        )

    def build_meta(self) -> nn.Module:
        """The module on the meta device: shapes without memory, for matching."""
        with torch.device("meta"):
            return self.build()

    def __str__(self) -> str:
        h, w = self.input_size
        count = (
            f"{self.num_keypoints} keypoints"
            if self.kind == "pose"
            else f"{self.num_classes} classes"
        )
        return f"{self.arch} {h}x{w}, {count}"


def candidates(
    kind: str,
    arch: str | None = None,
    input_size: tuple[int, int] | None = None,
    num_keypoints: int = 133,
    num_classes: int = 80,
) -> list[NetConfig]:
    """Configurations to try: the named ``arch``, or every official size of ``kind``.

    A size without ``input_size`` gets its published default.
    """
    if arch is not None:
        spec = get_spec(arch)
        if spec.kind != kind:
            noun = "pose model" if kind == "pose" else "detector"
            raise ConversionError(f"the weights are a {noun}, but --arch {arch} is not")
        names = [arch]
    else:
        names = list_models(kind)
    return [
        NetConfig(
            name,
            tuple(input_size) if input_size else get_spec(name).input_size,
            num_keypoints,
            num_classes,
        )
        for name in names
    ]


def choose(configs: list[NetConfig], mismatches: Callable[[NetConfig], list[str]]) -> NetConfig:
    """The first configuration without mismatches; otherwise an error naming the closest one's."""
    found = []
    for config in configs:
        problems = mismatches(config)
        if not problems:
            return config
        found.append((config, problems))
    config, problems = min(found, key=lambda item: len(item[1]))
    what = (
        f"{config}" if len(configs) == 1 else f"any official {config.kind} size (closest: {config})"
    )
    shown = "; ".join(problems[:SHOWN_MISMATCHES])
    more = (
        f" (and {len(problems) - SHOWN_MISMATCHES} more)"
        if len(problems) > SHOWN_MISMATCHES
        else ""
    )
    raise ConversionError(f"the weights do not fit {what}: {shown}{more}")


def shape_text(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"
