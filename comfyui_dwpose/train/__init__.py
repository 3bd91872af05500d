"""DWPose's two-stage distillation trainer (``dwpose train``, ``eval``, ``export``): data,
SimCC targets, losses, the Distiller, the loop, evaluation.

``simcc_labels`` needs only numpy; everything else needs torch (the ``train`` extra) and is
imported on first use, so that ``import comfyui_dwpose.train`` (and ``dwpose --help``) stays
light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .simcc import simcc_labels

if TYPE_CHECKING:
    from .annotations import Records, concat, load_coco_wholebody, load_ubody
    from .augment import PRESETS as AUGMENT_PRESETS
    from .augment import Augment
    from .data import TopDownDataset, collate, make_loader
    from .distiller import Distiller

# name -> (module, attribute)
_LAZY = {
    "Distiller": ("distiller", "Distiller"),
    "Records": ("annotations", "Records"),
    "concat": ("annotations", "concat"),
    "load_coco_wholebody": ("annotations", "load_coco_wholebody"),
    "load_ubody": ("annotations", "load_ubody"),
    "AUGMENT_PRESETS": ("augment", "PRESETS"),
    "Augment": ("augment", "Augment"),
    "TopDownDataset": ("data", "TopDownDataset"),
    "collate": ("data", "collate"),
    "make_loader": ("data", "make_loader"),
}

__all__ = [
    "AUGMENT_PRESETS",
    "Augment",
    "Distiller",
    "Records",
    "TopDownDataset",
    "collate",
    "concat",
    "load_coco_wholebody",
    "load_ubody",
    "make_loader",
    "simcc_labels",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    return getattr(importlib.import_module(f".{module}", __name__), attribute)
