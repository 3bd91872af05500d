"""Several videos through the models together: the GPU pipeline of `dwpose video --workers N
--batch-videos`.

Each video runs in its own thread as `video.convert_video` runs it (decoding, tracking
with detector skipping, smoothing, drawing and writing, all on the CPU), and all of them
share one `BatchingEstimator`. Its calls do not run at once: they wait a moment for the
other videos' calls of the same step, then the detector runs once on every frame that
asked for it and the pose model once on every person crop, so a GPU gets batches of N
frames instead of one. While the models run, the other threads decode and write; PyAV
and the models release the GIL. Batching changes no result beyond floating-point
rounding: each video is tracked exactly as on its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .result import PoseFrame

LINGER = 0.02  # seconds a call waits for the other videos' calls before it runs anyway


@dataclass
class _Call:
    pose_only: bool  # pose_on_boxes (frames between detections) or the whole estimator
    images: list[np.ndarray]
    boxes: list[np.ndarray] | None = None
    box_scores: list[np.ndarray] | None = None
    result: list[PoseFrame] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


class BatchingEstimator:
    """A `DWPose` that gathers the calls of several threads into batches.

    Each converting thread holds `stream()` while it works; a call waits until every such
    thread has a call waiting, or `linger` seconds, and the thread that gets there first
    runs them all: one detector call for the frames that need detection, one pose call
    for the frames followed from their tracks. A call that fails in a batch is run again
    alone, so an error reaches only the video it belongs to.
    """

    def __init__(self, estimator: Any, linger: float = LINGER):
        self.estimator, self.linger = estimator, linger
        self._cond = threading.Condition()
        self._pending: list[_Call] = []
        self._streams = 0
        self._busy = False
        self.batches = 0  # model calls made, and the frames they carried (bench figures)
        self.frames = 0

    @contextlib.contextmanager
    def stream(self) -> Iterator[None]:
        """Mark the calling thread as one that will call (a video being converted)."""
        with self._cond:
            self._streams += 1
        try:
            yield
        finally:
            with self._cond:
                self._streams -= 1
                self._cond.notify_all()

    def __call__(self, images: Sequence[np.ndarray]) -> list[PoseFrame]:
        return self._submit(_Call(False, list(images)))

    def pose_on_boxes(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[np.ndarray],
        box_scores: Sequence[np.ndarray] | None = None,
    ) -> list[PoseFrame]:
        if box_scores is None:
            box_scores = [np.zeros(len(b), np.float32) for b in boxes]
        return self._submit(_Call(True, list(images), list(boxes), list(box_scores)))

    def _submit(self, call: _Call) -> list[PoseFrame]:
        deadline = time.monotonic() + self.linger
        with self._cond:
            self._pending.append(call)
            self._cond.notify_all()
            while not call.done:
                ready = len(self._pending) >= self._streams or time.monotonic() >= deadline
                if self._busy or not self._pending or not ready:
                    self._cond.wait(timeout=max(deadline - time.monotonic(), 0.001))
                    continue
                batch, self._pending, self._busy = self._pending, [], True
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        if call.error is not None:
            raise call.error
        return call.result

    def _run(self, batch: list[_Call]) -> None:
        for pose_only in (False, True):
            calls = [c for c in batch if c.pose_only == pose_only]
            if not calls:
                continue
            try:
                results = self._estimate(calls, pose_only)
            except Exception:
                for call in calls:  # which one failed: each alone, its error to its own video
                    try:
                        call.result = self._estimate([call], pose_only)
                    except Exception as exc:
                        call.error = exc
            else:
                start = 0
                for call in calls:
                    call.result = results[start : start + len(call.images)]
                    start += len(call.images)
            for call in calls:
                call.done = True

    def _estimate(self, calls: list[_Call], pose_only: bool) -> list[PoseFrame]:
        images = [image for call in calls for image in call.images]
        self.batches += 1
        self.frames += len(images)
        if not pose_only:
            return self.estimator(images)
        boxes = [b for call in calls for b in call.boxes]
        scores = [s for call in calls for s in call.box_scores]
        return self.estimator.pose_on_boxes(images, boxes, scores)


def streaming(estimator: Any) -> contextlib.AbstractContextManager:
    """`estimator.stream()` for a `BatchingEstimator`, else nothing to do."""
    return (
        estimator.stream() if isinstance(estimator, BatchingEstimator) else contextlib.nullcontext()
    )
