"""DWPose whole-body pose estimation with exact ControlNet maps.

from comfyui_dwpose import DWPose, render_pose
est = DWPose.from_pretrained()          # yzd-v/DWPose: yolox_l.onnx + dw-ll_ucoco_384.onnx
frame = est(image)                      # HxWx3 RGB uint8 -> PoseFrame
pose_map = render_pose(frame)           # the OpenPose map ControlNet expects

DWPosePreprocessor (for diffusers ControlNet pipelines) is imported on first use.
"""

import logging

import cv2

from .estimator import DWPose
from .preprocessor import DWPosePreprocessor
from .render import render_pose
from .result import PoseFrame, from_pose_keypoint, to_pose_keypoint

# Maps, boxes and keypoints equal upstream's under OpenCV 4.8 to 4.14, every build
# (tests/opencv_matrix.py); OpenCV 5 resizes and warps images differently. Logged rather
# than warned, so that ComfyUI's console shows it whatever warning filters others set.
VERIFIED_OPENCV = ((4, 8), (5, 0))
if not VERIFIED_OPENCV[0] <= tuple(map(int, cv2.__version__.split(".")[:2])) < VERIFIED_OPENCV[1]:
    from importlib.metadata import packages_distributions

    import numpy

    package = (packages_distributions().get("cv2") or ["opencv-python-headless"])[0]
    logging.getLogger(__name__).warning(
        "OpenCV %s is not one of the versions (4.8 to 4.x) whose results equal upstream "
        "DWPose's: OpenCV 5 resizes and warps images differently (boxes and keypoints move "
        'by a pixel). For identical results install OpenCV 4 in its place: pip install "%s'
        '>=4.10,<5" numpy==%s',
        cv2.__version__,
        package,
        numpy.__version__,
    )

__all__ = [
    "DWPose",
    "DWPosePreprocessor",
    "PoseFrame",
    "from_pose_keypoint",
    "render_pose",
    "to_pose_keypoint",
]
