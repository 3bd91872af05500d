"""DWPose as a ControlNet preprocessor for diffusers pipelines.

dwpose = DWPosePreprocessor.from_pretrained()     # yzd-v/DWPose, fetched once and cached
control = dwpose(image)                           # PIL map: short side 512, sides multiples of 8
pipe(prompt, image=control)                       # any diffusers ControlNet pipeline

The map is drawn at the output size from the keypoints (never a resized picture), so it is
exactly `render_pose(frame, width, height)` of the returned frames. Nothing here imports
diffusers or torch: torch is used only when it gives the input or is asked for ("pt").
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from .estimator import DEFAULT_REPO, DWPose
from .extras import require
from .hub import DEFAULT_DETECTOR, DEFAULT_POSE_MODEL, resolve_model
from .images import ImageError, as_rgb_uint8, image_list
from .limits import SizeLimitError, check_map_size
from .render import BODY_STICK_WIDTH, map_size, render_pose
from .result import DEFAULT_THRESHOLD, PoseFrame

if TYPE_CHECKING:
    import torch

OUTPUT_TYPES = ("pil", "np", "pt")
# Stable Diffusion (1.x, 2.x, XL) pipelines need sides divisible by the VAE factor, 8.
SIZE_MULTIPLE = 8


class DWPosePreprocessor:
    """Images in, OpenPose control maps out, in the forms diffusers pipelines take.

    Takes the models and options `DWPose` takes (registry names, Hub references
    "owner/repo/file.onnx" or local paths; `detector_score`, `max_people`, ...).
    `device=None` picks the best accelerator the backend has, as `DWPose(device="auto")`.

    `reference`: a character image (estimated once, here) or its `PoseFrame`. The poses
    are then retargeted onto its proportions before drawing (`comfyui_dwpose.retarget`:
    bones, anchored automatically), and the maps take its canvas and aspect ratio.
    """

    def __init__(
        self,
        detector: str | os.PathLike | None = DEFAULT_DETECTOR,
        pose_model: str | os.PathLike = DEFAULT_POSE_MODEL,
        backend: str = "auto",
        device: str | None = None,
        *,
        reference: PoseFrame | Image.Image | np.ndarray | torch.Tensor | None = None,
        **options,
    ):
        self.device = "auto" if device is None else str(device)
        self._models = (detector, pose_model, backend, options)  # to rebuild on another device
        self.estimator = DWPose(detector, pose_model, backend, self.device, **options)
        if reference is not None and not isinstance(reference, PoseFrame):
            reference = self.estimator(_one_image(reference, "reference"))
            if len(reference) == 0:
                raise ValueError(
                    "nobody was found in the reference image: nothing to retarget onto"
                )
        self.reference = reference

    @classmethod
    def from_pretrained(
        cls,
        repo_or_path: str | os.PathLike = DEFAULT_REPO,
        detector: str | None = DEFAULT_DETECTOR,
        pose_model: str = DEFAULT_POSE_MODEL,
        backend: str = "auto",
        device: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        **options,
    ) -> DWPosePreprocessor:
        """Load the two models from a Hub repo (default yzd-v/DWPose) or a local folder.

        Files are cached in the Hugging Face cache (`cache_dir` to choose another) and
        verified where their checksum is known. `local_files_only=True` never downloads;
        False downloads what is missing unless HF_HUB_OFFLINE is set. `detector=None` (or
        `use_detector=False`) skips detection, and its file: the whole image is one person.
        """
        fetch = {
            "cache_dir": cache_dir,
            "local_files_only": local_files_only or None,  # None: HF_HUB_OFFLINE decides
            "models_dir": options.pop("models_dir", None),
        }
        detector_file = None
        if detector is not None and options.get("use_detector", True):
            detector_file = resolve_model(
                _reference(repo_or_path, detector), kind="detector", **fetch
            )
        pose_file = resolve_model(_reference(repo_or_path, pose_model), kind="pose", **fetch)
        return cls(detector_file, pose_file, backend, device, **options)

    def to(self, device: str) -> DWPosePreprocessor:
        """Run on `device` ("cpu", "cuda", "cuda:1", or a torch.device); returns self."""
        device = str(device)
        if hasattr(self.estimator, "to"):  # a backend that moves its weights itself
            self.estimator.to(device)
        elif device != self.device:
            detector, pose_model, backend, options = self._models
            self.estimator = DWPose(detector, pose_model, backend, device, **options)
        self.device = device
        return self

    def __call__(
        self,
        image: Image.Image | np.ndarray | torch.Tensor | Sequence | None = None,
        detect_resolution: int | None = 512,
        image_resolution: int | None = 512,
        *,
        include_body: bool = True,
        include_hand: bool = True,
        include_face: bool = True,
        include_feet: bool = False,
        output_type: str = "pil",
        return_keypoints: bool = False,
        threshold: float = DEFAULT_THRESHOLD,
        stick_width: int | str = BODY_STICK_WIDTH,
        track: bool = False,
        smooth: bool = False,
        fps: float = 30.0,
        **kwargs,
    ) -> Image.Image | list[Image.Image] | np.ndarray | torch.Tensor | tuple:
        """The control map of one image, or of a list / batch of images or video frames.

        image: a PIL image, an HxWxC numpy array, a CxHxW torch tensor (0-1, as diffusers
            uses; HxWxC too), or a list of them, or a BxHxWxC array or a Bx3xHxW tensor.
            Pixel types as `images.as_rgb_uint8` reads them: uint8, any integer type, floats
            in 0-1 or (detected) 0-255; a -1..1 image is refused. All frames of a list go
            through the models in shared batches. Maps beyond `limits.check_map_size` are
            refused before any work.
        detect_resolution: images whose short side is larger are shrunk (area-averaged) to
            this short side before estimation, as in the ControlNet app; smaller ones are not
            enlarged (that adds no detail). None or 0: always the full resolution. Keypoints
            come back in the caller's pixels either way.
        image_resolution: short side of the map; both sides are then rounded to multiples of
            8. None or 0: the image's own size (rounded to multiples of 8).
        include_body / include_hand / include_face / include_feet: parts to draw.
        output_type: "pil" gives a PIL image for one image and a list for a list; "np" a
            float32 array (B,H,W,3) in 0-1 and "pt" a float32 torch tensor (B,3,H,W) in 0-1,
            batched even for one image (B=1), as diffusers pipelines expect.
        return_keypoints: also return the `PoseFrame`s (one, or a list), in image pixels
            (with a `reference`: retargeted, in the reference's pixels).
        threshold, stick_width: as `render_pose` ("xinsr" for xinsir's SDXL ControlNet).
        track: the images are a video's frames, in order: give each person a stable id
            across them (`PoseFrame.track_ids`).
        smooth: track, then smooth each person's keypoints over the frames (One Euro filter
            run both ways, no lag) and fill short dropouts: steadier skeletons for video
            ControlNets. `fps` is the frames' rate (the filter works in seconds).

        controlnet_aux's and easy_dwpose's names also work: `input_image`, `include_hands`,
        `hand_and_face` and `return_pil` (both deprecated there, warned here).
        """
        image, include_hand, include_face, output_type = _upstream_arguments(
            kwargs, image, include_hand, include_face, output_type
        )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        for name, value in (("detect", detect_resolution), ("image", image_resolution)):
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 0):
                raise ValueError(
                    f"{name}_resolution must be a whole number of pixels >= 0 or None, got {value!r}"
                )
        images, single = _as_images(image)
        canvases = [(img.shape[1], img.shape[0]) for img in images]
        if self.reference is not None:  # the poses are drawn on the reference's canvas
            canvases = [(self.reference.width, self.reference.height)] * len(images)
        sizes = [_control_size(w, h, image_resolution or 0) for w, h in canvases]
        for i, (width, height) in enumerate(sizes):  # before any work or allocation
            try:
                check_map_size(width, height)
            except SizeLimitError as exc:
                raise SizeLimitError(f"image {i}: {exc}") from None
        if output_type != "pil" and len(set(sizes)) > 1:
            shown = ", ".join(f"{w}x{h}" for w, h in sorted(set(sizes)))
            raise ValueError(
                f"the maps would have different sizes ({shown}) and cannot form one batch for "
                f"output_type={output_type!r}: give images of one aspect ratio, or use output_type='pil'"
            )

        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        frames = self._estimate(images, detect_resolution or 0)
        if track or smooth:
            frames = _tracked(frames, smooth, fps)
        if self.reference is not None:
            from .retarget import retarget

            frames = retarget(frames, self.reference, threshold=threshold)
        maps = [
            render_pose(
                frame, width, height, threshold=threshold, body=include_body,
                hands=include_hand, face=include_face, feet=include_feet, stick_width=stick_width,
            )
            for frame, (width, height) in zip(frames, sizes)
        ]  # fmt: skip
        control = _convert(maps, output_type, single)
        if return_keypoints:
            return control, frames[0] if single else frames
        return control

    def _estimate(self, images: list[np.ndarray], detect_resolution: int) -> list[PoseFrame]:
        """Frames in the caller's pixels, estimated on images shrunk to `detect_resolution`."""
        small = [_shrink(img, detect_resolution) for img in images]
        frames = self.estimator(small)
        out = []
        for img, sm, frame in zip(images, small, frames):
            if sm is img:
                out.append(frame)
                continue
            h, w = img.shape[:2]
            scale = np.array([w / sm.shape[1], h / sm.shape[0]])
            out.append(
                PoseFrame(
                    frame.keypoints * scale, frame.scores, frame.boxes * np.tile(scale, 2),
                    frame.box_scores, w, h, frame.track_ids,
                )
            )  # fmt: skip
        return out

    def __repr__(self) -> str:
        return f"DWPosePreprocessor({self.estimator!r}, device={self.device!r})"


def _reference(repo_or_path: str | os.PathLike, name: str | os.PathLike) -> str | Path:
    """What `resolve_model` should look up for `name` in a repo or folder (as DWPose.from_pretrained)."""
    folder = Path(repo_or_path).expanduser()
    if folder.is_dir():
        return folder / name
    if str(repo_or_path) == DEFAULT_REPO:
        return name  # the registry's names: pinned sizes and checksums
    return f"{repo_or_path}/{name}"


def _tracked(frames: list[PoseFrame], smooth: bool, fps: float) -> list[PoseFrame]:
    """The frames with track ids, and smoothed over the whole list with `smooth`."""
    from . import temporal  # its tracker names the extra when scipy is missing

    smoother = temporal.Smoother(lookahead=None) if smooth else None
    return list(temporal.track_poses(frames, fps=fps, smoother=smoother))


def _upstream_arguments(kwargs: dict, image, include_hand, include_face, output_type):
    """Map controlnet_aux's and easy_dwpose's argument names; refuse anything else by name."""
    if "input_image" in kwargs:
        if image is not None:
            raise TypeError("pass the image once: as `image` or as `input_image`, not both")
        image = kwargs.pop("input_image")
    if image is None:
        raise TypeError("DWPosePreprocessor() needs an image (or a list of images)")
    include_hand = include_hand and kwargs.pop("include_hands", True)
    if "hand_and_face" in kwargs:
        warnings.warn(
            "hand_and_face is deprecated (as in controlnet_aux): use include_hand and include_face",
            DeprecationWarning,
            stacklevel=3,
        )
        include_hand = include_face = bool(kwargs.pop("hand_and_face"))
    if "return_pil" in kwargs:
        warnings.warn(
            "return_pil is deprecated (as in controlnet_aux): use output_type='pil' or 'np'",
            DeprecationWarning,
            stacklevel=3,
        )
        output_type = "pil" if kwargs.pop("return_pil") else "np"
    if kwargs:
        hint = ""
        if "draw_pose" in kwargs:
            hint = (
                " (easy_dwpose's custom drawing function: use return_keypoints=True and draw "
                "the returned PoseFrames yourself)"
            )
        raise TypeError(
            f"DWPosePreprocessor() got unexpected keyword arguments: {', '.join(sorted(kwargs))}"
            + hint
        )
    return image, include_hand, include_face, output_type


def _as_images(image) -> tuple[list[np.ndarray], bool]:
    """HxWx3 RGB uint8 arrays for every image, and whether one image was given."""
    if isinstance(image, (list, tuple)):
        if not image:
            raise ValueError("image is an empty list: give at least one image")
        image_list(image, "image")  # refuses nested lists of numbers, with their shape
        return [_one_image(img, f"image {i}") for i, img in enumerate(image)], False
    if _ndim(image) == 4:
        return [_one_image(img, f"image {i}") for i, img in enumerate(image)], False
    return [_one_image(image, "image")], True


def _ndim(image) -> int | None:
    return image.ndim if isinstance(image, np.ndarray) or _is_tensor(image) else None


def _is_tensor(image) -> bool:
    torch = sys.modules.get("torch")  # a tensor means torch is imported already
    return torch is not None and isinstance(image, torch.Tensor)


def _one_image(image, name: str) -> np.ndarray:
    if isinstance(image, (Image.Image, np.ndarray)):
        return as_rgb_uint8(image, name=name)
    if _is_tensor(image):
        return as_rgb_uint8(_tensor_to_hwc(image, name), name=name)
    raise TypeError(
        f"{name}: expected a PIL image, a numpy array or a torch tensor (or a list of them), "
        f"got {type(image).__name__}"
    )


def _tensor_to_hwc(tensor, name: str) -> np.ndarray:
    """A CxHxW (diffusers) or HxWxC (ComfyUI) tensor as an HxWxC numpy array."""
    tensor = tensor.detach().cpu()
    if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):
        tensor = tensor.permute(1, 2, 0)
    elif tensor.ndim not in (2, 3):
        raise ImageError(
            f"{name}: expected a tensor of shape CxHxW (or HxWxC) with C in 1, 3, 4, "
            f"got {tuple(tensor.shape)}"
        )
    if tensor.is_floating_point():
        tensor = tensor.float()  # numpy has no bfloat16; as_rgb_uint8 reads the range
    return tensor.numpy()


def _shrink(image: np.ndarray, resolution: int) -> np.ndarray:
    """The image with its short side at most `resolution` (area averaging); 0: unchanged."""
    h, w = image.shape[:2]
    if resolution <= 0 or min(h, w) <= resolution:
        return image
    return cv2.resize(image, map_size(w, h, resolution), interpolation=cv2.INTER_AREA)


def _control_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """Map size: short side `resolution` (0: the image's), sides to the nearest multiple of 8."""
    scale = resolution / min(width, height) if resolution > 0 else 1.0
    m = SIZE_MULTIPLE
    return max(m, int(width * scale / m + 0.5) * m), max(m, int(height * scale / m + 0.5) * m)


def _convert(maps: Sequence[np.ndarray], output_type: str, single: bool):
    if output_type == "pil":
        pil = [Image.fromarray(m) for m in maps]
        return pil[0] if single else pil
    batch = np.stack(maps).astype(np.float32)
    batch /= 255.0  # in place: one float copy of the maps, not two
    if output_type == "np":
        return batch
    torch = require("torch", "output_type='pt'")
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
