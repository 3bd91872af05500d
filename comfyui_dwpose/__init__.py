"""DWPose whole-body pose estimation with exact ControlNet maps.

from comfyui_dwpose import DWPose, render_pose
est = DWPose.from_pretrained()          # yzd-v/DWPose: yolox_l.onnx + dw-ll_ucoco_384.onnx
frame = est(image)                      # HxWx3 RGB uint8 -> PoseFrame
pose_map = render_pose(frame)           # the OpenPose map ControlNet expects

DWPosePreprocessor (for diffusers ControlNet pipelines) is imported on first use.
"""

import warnings

import cv2

from .estimator import DWPose
from .preprocessor import DWPosePreprocessor
from .render import render_pose
from .result import PoseFrame, from_pose_keypoint, to_pose_keypoint

# OpenCV rasterises and warps: versions outside this range move pixels of the maps.
VERIFIED_OPENCV = ((4, 10), (4, 13))
if not VERIFIED_OPENCV[0] <= tuple(map(int, cv2.__version__.split(".")[:2])) < VERIFIED_OPENCV[1]:
    warnings.warn(
        f"OpenCV {cv2.__version__} draws and warps slightly differently from the OpenCV that "
        "upstream DWPose used: maps may differ from upstream's by a few pixels. For exact maps "
        "install opencv-python-headless>=4.10,<4.13 (or the same range of your OpenCV package).",
        stacklevel=2,
    )

__all__ = [
    "DWPose",
    "DWPosePreprocessor",
    "PoseFrame",
    "from_pose_keypoint",
    "render_pose",
    "to_pose_keypoint",
]
