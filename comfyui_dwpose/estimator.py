"""DWPose: a person detector and a whole-body pose model behind one call.

`DWPose()(image)` gives a `PoseFrame`; `DWPose()(frames)` gives one per frame, with the
people of all frames going through the pose model together in batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .detect import Detector
from .hub import DEFAULT_DETECTOR, DEFAULT_POSE_MODEL, resolve_model
from .images import as_rgb_uint8, image_list
from .pose import PoseModel
from .result import PoseFrame
from .runtime import Model, ModelLoadError, load_model

DEFAULT_REPO = "yzd-v/DWPose"
NUM_KEYPOINTS = 133


class DWPose:
    """Whole-body pose estimator (YOLOX detector + DWPose/RTMPose SimCC model).

    detector, pose_model: a registry name (e.g. "yolox_l.onnx"), a Hub reference
        "owner/repo/file.onnx" or a local path. Weights are fetched and cached on first use.
    backend: "auto" (torch on a GPU, onnxruntime on the CPU), "onnxruntime" or "torch".
    device: "auto", "cpu", "cuda", "cuda:N", "mps", ... precision (torch): "auto" (float16
        on GPUs, float32 on the CPU), "fp32", "fp16" or "bf16".
    detector_score: keep boxes scoring above this (upstream 0.3).
    nms_iou: boxes overlapping a better one above this IoU are dropped (upstream 0.45).
    detector_channels: "bgr" feeds the detector BGR as YOLOX was trained; "rgb" reproduces
        what ComfyUI and the ControlNet app do today.
    max_people: keep only the N largest boxes (None: all).
    whole_image_fallback: when nobody is found, run the pose model on the whole image
        (upstream's behaviour; off by default, as in ComfyUI).
    use_detector: False skips detection and treats the whole image as one person.
    max_side: larger images are first shrunk (area averaging) so their longer side is this;
        results are still in the caller's pixels. None disables.
    fit_detector_input: letterbox each frame for the detector onto a canvas fitted to its
        shape (sides multiples of 32: 640x384 for 16:9) instead of 640x640; same scale,
        less padding, less work. Needs a detector that takes any size: the torch backend,
        or an ONNX file from `dwpose convert --dynamic-size`. Off by default: how far real
        YOLOX-L boxes move with the smaller padding is not measured yet (README).
    """

    def __init__(
        self,
        detector: str | os.PathLike | None = DEFAULT_DETECTOR,
        pose_model: str | os.PathLike = DEFAULT_POSE_MODEL,
        backend: str = "auto",
        device: str = "auto",
        *,
        detector_score: float = 0.3,
        nms_iou: float = 0.45,
        detector_channels: str = "bgr",
        max_people: int | None = None,
        whole_image_fallback: bool = False,
        use_detector: bool = True,
        max_side: int | None = 4096,
        batch_size: int = 32,
        models_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None,
        precision: str = "auto",
        fit_detector_input: bool = False,
    ):
        _check_options(max_people, max_side)  # before any download or load
        fetch = {"models_dir": models_dir, "local_files_only": local_files_only}
        models = load_models(
            detector if use_detector else None, pose_model, backend, device, precision, **fetch
        )
        self._configure(
            *models, detector_score=detector_score, nms_iou=nms_iou,
            detector_channels=detector_channels, max_people=max_people,
            whole_image_fallback=whole_image_fallback, max_side=max_side, batch_size=batch_size,
            fit_detector_input=fit_detector_input,
        )  # fmt: skip

    @classmethod
    def from_models(
        cls,
        detector: Model | None,
        pose_model: Model,
        *,
        detector_score: float = 0.3,
        nms_iou: float = 0.45,
        detector_channels: str = "bgr",
        max_people: int | None = None,
        whole_image_fallback: bool = False,
        max_side: int | None = 4096,
        batch_size: int = 32,
        fit_detector_input: bool = False,
    ) -> DWPose:
        """An estimator on models already loaded (`load_models`): no file is read, so many
        option sets can share one pair of models (the ComfyUI nodes do). Options as above;
        detector None treats the whole image as one person."""
        estimator = cls.__new__(cls)
        estimator._configure(
            detector, pose_model, detector_score=detector_score, nms_iou=nms_iou,
            detector_channels=detector_channels, max_people=max_people,
            whole_image_fallback=whole_image_fallback, max_side=max_side, batch_size=batch_size,
            fit_detector_input=fit_detector_input,
        )  # fmt: skip
        return estimator

    def _configure(
        self, detector: Model | None, pose_model: Model, *, detector_score: float,
        nms_iou: float, detector_channels: str, max_people: int | None,
        whole_image_fallback: bool, max_side: int | None, batch_size: int,
        fit_detector_input: bool,
    ) -> None:  # fmt: skip
        _check_options(max_people, max_side)
        self.detector: Detector | None = None
        if detector is not None:
            self.detector = Detector(
                detector, detector_score, nms_iou, detector_channels, fit_detector_input
            )
        self.pose = PoseModel(pose_model, batch_size)
        self.max_people = max_people
        self.whole_image_fallback = whole_image_fallback
        self.max_side = max_side

    @classmethod
    def from_pretrained(
        cls,
        pretrained: str | os.PathLike = DEFAULT_REPO,
        detector: str = DEFAULT_DETECTOR,
        pose_model: str = DEFAULT_POSE_MODEL,
        **kwargs,
    ) -> DWPose:
        """Load from a Hub repo (default `yzd-v/DWPose`, upstream's files) or a local folder."""
        folder = Path(pretrained).expanduser()
        if folder.is_dir():
            return cls(folder / detector, folder / pose_model, **kwargs)
        if str(pretrained) == DEFAULT_REPO:
            return cls(detector, pose_model, **kwargs)
        return cls(f"{pretrained}/{detector}", f"{pretrained}/{pose_model}", **kwargs)

    def __call__(
        self, images: np.ndarray | Image.Image | Sequence[np.ndarray | Image.Image]
    ) -> PoseFrame | list[PoseFrame]:
        """One image (an HxWx3 RGB array or a PIL image) gives a `PoseFrame`; a list of them,
        or a BxHxWx3 array, a list. Pixel types as `images.as_rgb_uint8` reads them (uint8;
        floats in 0-1, or 0-255 detected); anything else is an `ImageError` saying what came."""
        batch, single = image_list(images)
        frames = self._estimate(
            [as_rgb_uint8(img, name=f"image {i}") for i, img in enumerate(batch)]
        )
        return frames[0] if single else frames

    def pose_on_boxes(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[np.ndarray],
        box_scores: Sequence[np.ndarray] | None = None,
    ) -> list[PoseFrame]:
        """The pose model alone on given person boxes (N,4 x1y1x2y2, the caller's pixels) of
        each image, no detector: the video path's frames between detections."""
        frames = []
        originals = [as_rgb_uint8(img, name=f"image {i}") for i, img in enumerate(images)]
        shrunk = [self._shrink(img) for img in originals]
        boxes = [np.asarray(b, np.float64).reshape(-1, 4) for b in boxes]
        if box_scores is None:
            box_scores = [np.zeros(len(b), np.float32) for b in boxes]
        poses = self.pose(
            [img for img, _ in shrunk], [b / np.tile(s, 2) for b, (_, s) in zip(boxes, shrunk)]
        )
        for original, (_, scale), b, bs, (keypoints, scores) in zip(
            originals, shrunk, boxes, box_scores, poses
        ):
            h, w = original.shape[:2]
            frames.append(PoseFrame(keypoints * scale, scores, b, bs, w, h))
        return frames

    def _estimate(self, originals: list[np.ndarray]) -> list[PoseFrame]:
        if not originals:
            return []
        images, scales = zip(*(self._shrink(img) for img in originals))
        if self.detector is None:
            detections = [(_whole(img), np.zeros(1, np.float32)) for img in images]
        else:
            detections = [
                self._keep(img, boxes, scores)
                for img, (boxes, scores) in zip(images, self.detector(list(images)))
            ]
        poses = self.pose(list(images), [boxes for boxes, _ in detections])
        frames = []
        for original, scale, (boxes, box_scores), (keypoints, scores) in zip(
            originals, scales, detections, poses
        ):
            h, w = original.shape[:2]
            frames.append(
                PoseFrame(keypoints * scale, scores, boxes * np.tile(scale, 2), box_scores, w, h)
            )
        return frames

    def _keep(
        self, image: np.ndarray, boxes: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Apply max_people and the whole-image fallback to one image's detections."""
        if len(boxes) == 0 and self.whole_image_fallback:
            return _whole(image), np.zeros(1, np.float32)
        if self.max_people is not None and len(boxes) > self.max_people:
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            keep = np.sort(np.argsort(-areas, kind="stable")[: self.max_people])
            boxes, scores = boxes[keep], scores[keep]
        return boxes, scores

    def _shrink(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The image to work on and the (x, y) factor back to the caller's pixels."""
        h, w = image.shape[:2]
        if self.max_side is None or max(h, w) <= self.max_side:
            return image, np.ones(2)
        ratio = self.max_side / max(h, w)
        size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return small, np.array([w / size[0], h / size[1]])

    @property
    def warnings(self) -> list[str]:
        """Why a model runs on a slower device than asked for (e.g. the CPU beside a GPU)."""
        models = (self.detector.model if self.detector else None, self.pose.model)
        return [m.fallback for m in models if getattr(m, "fallback", None)]

    def release(self) -> None:
        """Free the GPU memory the models hold (torch backend); they move back on the next call."""
        for model in (self.detector.model if self.detector else None, self.pose.model):
            if hasattr(model, "release"):
                model.release()

    def __repr__(self) -> str:
        detector = self.detector.model if self.detector else None
        return f"DWPose(detector={detector!r}, pose_model={self.pose.model!r})"


def _check_options(max_people: int | None, max_side: int | None) -> None:
    if max_people is not None and max_people < 1:
        raise ValueError(f"max_people must be at least 1 (or None for all), got {max_people}")
    if max_side is not None and max_side < 32:
        raise ValueError(f"max_side must be at least 32 pixels (or None), got {max_side}")


def load_models(
    detector: str | os.PathLike | None,
    pose_model: str | os.PathLike,
    backend: str = "auto",
    device: str = "auto",
    precision: str = "auto",
    *,
    models_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
) -> tuple[Model | None, Model]:
    """The detector (None: none asked for) and the pose model, fetched if needed, loaded on
    `backend`/`device`/`precision` (`runtime.load_model`) and checked to be of their kind."""
    fetch = {"models_dir": models_dir, "local_files_only": local_files_only}
    detector_model = None
    if detector is not None:
        path = resolve_model(detector, kind="detector", **fetch)
        detector_model = load_model(path, backend, device, precision)
        _check_detector(detector_model)
    pose = load_model(resolve_model(pose_model, kind="pose", **fetch), backend, device, precision)
    _check_pose(pose)
    return detector_model, pose


def _whole(image: np.ndarray) -> np.ndarray:
    """Upstream's whole-image box: [0, 0, width, height] (box score 0: no detector said so)."""
    return np.array([[0, 0, image.shape[1], image.shape[0]]], np.float64)


def _check_detector(model: Model) -> None:
    size = model.input_size
    anchors = sum((size[0] // s) * (size[1] // s) for s in (8, 16, 32)) if size else None
    # A dynamic-size detector's anchor count follows the size it is run at.
    expected = [(None, None if getattr(model, "dynamic_size", False) else anchors, 85)]
    if not _signature_ok(model, expected):
        raise ModelLoadError(
            f"{model.name} is not a YOLOX person detector of DWPose's layout: expected input "
            f"[N,3,H,W] and output [N,{anchors or 'A'},85], found input {_fmt(model.input_shape)} "
            f"and outputs {', '.join(_fmt(o) for o in model.output_shapes)}. Is it the pose model?"
        )


def _check_pose(model: Model) -> None:
    size = model.input_size
    expected = (
        [(None, NUM_KEYPOINTS, 2 * size[1]), (None, NUM_KEYPOINTS, 2 * size[0])] if size else []
    )
    if not _signature_ok(model, expected):
        raise ModelLoadError(
            f"{model.name} is not a whole-body SimCC pose model (DWPose/RTMPose): expected input "
            f"[N,3,H,W] and outputs simcc_x [N,133,2W], simcc_y [N,133,2H], found input "
            f"{_fmt(model.input_shape)} and outputs {', '.join(_fmt(o) for o in model.output_shapes)}. "
            "Is it the detector?"
        )


def _signature_ok(model: Model, expected: list[tuple]) -> bool:
    """Whether the model takes [N,3,H,W] at its input size and gives outputs of the expected
    shapes (None: any). Dimensions the file leaves symbolic (as torch.onnx.export writes
    them with dynamic axes) are found by running the model once on a blank batch."""
    shape, outputs = model.input_shape, model.output_shapes
    if (
        model.input_size is None
        or not expected
        or len(shape) != 4
        or shape[1] not in (3, None)
        or len(outputs) < len(expected)
    ):
        return False
    declared = list(zip(outputs, expected))
    if any(len(o) != len(e) for o, e in declared):
        return False
    if any(d is not None and w is not None and d != w for o, e in declared for d, w in zip(o, e)):
        return False  # a declared dimension that contradicts the layout
    if all(d is not None or w is None for o, e in declared for d, w in zip(o, e)):
        return True
    height, width = model.input_size
    try:
        ran = model.run(np.zeros((1, 3, height, width), np.float32))
    except Exception:  # onnxruntime raises its own types; any failure means "not this layout"
        return False
    return len(ran) >= len(expected) and all(
        r.ndim == len(e) and all(w is None or d == w for d, w in zip(r.shape, e))
        for r, e in zip(ran, expected)
    )


def _fmt(shape: tuple) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
