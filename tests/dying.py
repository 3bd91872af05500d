"""An estimator whose Ray actor is killed (ray.kill) at the 4th frame of a video of a given
size: every time, or only the first time in the run (halfway through the video). Imported by Ray's workers (the tests put
this folder on their path)."""

import os
import time
from pathlib import Path

from comfyui_dwpose import DWPose


class Dying:
    def __init__(self, detector, pose, always: tuple, once: tuple, marker: Path):
        self.estimator = DWPose(detector, pose)
        self.always, self.once, self.marker = always, once, marker
        self.seen = 0

    def _maybe_die(self, image):
        size = image.shape[:2]
        self.seen = self.seen + 1 if size in (self.always, self.once) else 0
        if self.seen == 4 and (size == self.always or self._first()):
            import ray

            ray.kill(ray.get_runtime_context().current_actor)
            time.sleep(60)  # killed meanwhile

    def _first(self) -> bool:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False

    def __call__(self, images):
        self._maybe_die(images[0])
        return self.estimator(images)

    def pose_on_boxes(self, images, *args, **kwargs):
        self._maybe_die(images[0])
        return self.estimator.pose_on_boxes(images, *args, **kwargs)
