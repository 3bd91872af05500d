"""DWPose whole-body pose estimation with exact ControlNet maps.

from comfyui_dwpose import DWPose, render_pose
est = DWPose.from_pretrained()          # yzd-v/DWPose: yolox_l.onnx + dw-ll_ucoco_384.onnx
frame = est(image)                      # HxWx3 RGB uint8 -> PoseFrame
pose_map = render_pose(frame)           # the OpenPose map ControlNet expects
"""

from .estimator import DWPose
from .render import render_pose
from .result import PoseFrame, from_pose_keypoint, to_pose_keypoint

__all__ = ["DWPose", "PoseFrame", "from_pose_keypoint", "render_pose", "to_pose_keypoint"]
