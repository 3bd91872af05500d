"""DWPose's two-stage distillation trainer (``dwpose train``, ``eval``, ``export``).

``simcc_labels`` needs only numpy; ``Distiller`` and the training loop need torch (the
``train`` extra), imported on first use so that ``import comfyui_dwpose.train`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .simcc import simcc_labels

if TYPE_CHECKING:
    from .distiller import Distiller

__all__ = ["Distiller", "simcc_labels"]


def __getattr__(name: str):
    if name == "Distiller":
        from .distiller import Distiller

        return Distiller
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
