"""The DWPose trainer: data, SimCC targets, losses, the two-stage Distiller, loop, evaluation.

Needs the `train` extra (torch, scipy): pip install -e ".[train]".
"""

# Data (datasets, augmentation, synthetic set).
from .annotations import Records, concat, load_coco_wholebody, load_ubody
from .augment import PRESETS as AUGMENT_PRESETS
from .augment import Augment
from .data import TopDownDataset, collate, make_loader

__all__ = [
    # data
    "AUGMENT_PRESETS",
    "Augment",
    "Records",
    "TopDownDataset",
    "collate",
    "concat",
    "load_coco_wholebody",
    "load_ubody",
    "make_loader",
]
