"""DWPose whole-body pose estimation with exact ControlNet maps."""
