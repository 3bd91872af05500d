"""ComfyUI nodes: thin adapters between ComfyUI's types and the bundled `comfyui_dwpose`.

IMAGE tensors become RGB uint8 arrays, widgets become options; the pose logic is the
library's. The library is imported relatively, so the copy in this folder is used even
when another version of `comfyui_dwpose` is installed, and ComfyUI's own top-level
`nodes` module (or comfyui_controlnet_aux's `dwpose`, `util`...) never shadows ours.
Outside ComfyUI (tests, scripts) the nodes still run: without progress bars, without
interrupt checks, with this folder's `models/` as the models folder.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from .comfy_models import DWPoseModel, cached_model
from .comfyui_dwpose import catalog
from .comfyui_dwpose.hub import DEFAULT_DETECTOR, DEFAULT_POSE_MODEL, MODELS_DIR_ENV
from .comfyui_dwpose.images import as_rgb_uint8
from .comfyui_dwpose.limits import check_map_size
from .comfyui_dwpose.pose_keypoint import COORDINATES
from .comfyui_dwpose.render import BODY_STICK_WIDTH, map_size, render_pose
from .comfyui_dwpose.result import (
    DEFAULT_THRESHOLD,
    PoseFrame,
    from_pose_keypoint,
    load_json,
    save_json,
    to_pose_keypoint,
)


def _comfy_module(name: str):
    """A ComfyUI module, or None outside ComfyUI (only its absence is tolerated)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name or name.startswith(f"{exc.name}."):
            return None
        raise


log = logging.getLogger(__name__)
folder_paths = _comfy_module("folder_paths")
comfy_utils = _comfy_module("comfy.utils")
model_management = _comfy_module("comfy.model_management")

PACK_DIR = Path(__file__).resolve().parent
MODELS_FOLDER = "dwpose"  # ComfyUI/models/dwpose
NO_DETECTOR = "none (whole image)"
# Frames per estimator call and crops per pose-model run. On a GPU, frames go together
# (people of all of them in one pose batch); on the CPU, one frame and 8 crops a run keep
# each run of the full-size models near a second, so progress and interrupt stay prompt.
FRAMES_PER_CALL = {"gpu": 8, "cpu": 1}
POSE_BATCH = {"gpu": 32, "cpu": 8}
CATEGORY = "DWPose"
MAX_RESOLUTION = 16384

# The example workflows' inputs (workflows/*.json name them), copied into ComfyUI's input
# folder where missing.
EXAMPLE_INPUTS = {
    "dwpose_skier.jpg": PACK_DIR / "assets" / "skier.jpg",
    "dwpose_skier_pan.mp4": PACK_DIR / "workflows" / "inputs" / "dwpose_skier_pan.mp4",
    "dwpose_skier_keypoints.json": PACK_DIR / "workflows" / "inputs" / "dwpose_skier_keypoints.json",
}  # fmt: skip


def install_example_inputs(input_dir: Path) -> list[Path]:
    """Copy the example inputs into `input_dir`; a file already there is never replaced
    (a copy lands under a temporary name, then is linked into place only if still free)."""
    copied = []
    for name, source in EXAMPLE_INPUTS.items():
        target = input_dir / name
        if target.exists() or not source.is_file():
            continue
        partial = input_dir / f".{name}.{os.getpid()}.partial"
        try:
            input_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, partial)
            try:
                os.link(partial, target)  # fails if the name was taken meanwhile
            except FileExistsError:
                continue
            except OSError:  # no hard links on this drive (FAT, some network shares)
                if target.exists():
                    continue
                os.replace(partial, target)
            copied.append(target)
        except OSError as exc:
            log.warning(
                "DWPose: could not copy the example input %s to %s: %s", name, input_dir, exc
            )
        finally:
            partial.unlink(missing_ok=True)
    return copied


if folder_paths is not None:
    folder_paths.add_model_folder_path(
        MODELS_FOLDER, os.path.join(folder_paths.models_dir, MODELS_FOLDER)
    )
    folder_paths.add_model_folder_path(MODELS_FOLDER, str(PACK_DIR / "models"))
    install_example_inputs(Path(folder_paths.get_input_directory()))


# ------------------------------------------------------------------------------ models


def model_folders() -> list[Path]:
    """Folders searched for model files, in order; downloads go to the first one.

    In ComfyUI: the `dwpose` model folders (models/dwpose, extra_model_paths.yaml, this
    pack's models/), then comfyui_controlnet_aux's downloads (its ckpts/). Outside: this
    pack's models/. `$DWPOSE_MODELS_DIR` comes last.
    """
    if folder_paths is not None:
        folders = [Path(p) for p in folder_paths.get_folder_paths(MODELS_FOLDER)]
        custom_nodes = [Path(p) for p in folder_paths.get_folder_paths("custom_nodes")]
        folders += catalog.controlnet_aux_ckpts(custom_nodes)
    else:
        folders = [PACK_DIR / "models"]
    if os.environ.get(MODELS_DIR_ENV):
        folders.append(Path(os.environ[MODELS_DIR_ENV]).expanduser())
    return list(dict.fromkeys(folders))


def model_choices(kind: str) -> list[str]:
    """Combo values: registry models of this kind (default first; labelled when not on disk
    yet), then local files whose graph is a `kind` model (comfyui_dwpose.catalog)."""
    return catalog.menu(kind, model_folders())


def _model_path(name: str, kind: str, folders: list[Path]) -> Path:
    """A local file for a combo value: found in a model folder, or fetched from the Hub
    (registry names only) into the first folder. Registry files are verified."""
    return catalog.resolve(name, kind, folders)


def validate_models(detector: str | None = None, pose_model: str | None = None) -> bool | str:
    """ComfyUI's combo check for the model inputs, also passing a registry name with or
    without the "not downloaded" label (which comes and goes with the file)."""
    for value, kind, also in ((detector, "detector", [NO_DETECTOR]), (pose_model, "pose", [])):
        if value is None:
            continue
        offered = {catalog.menu_name(v) for v in [*model_choices(kind), *also]}
        if catalog.menu_name(value) not in offered:
            return f"{kind} model {value!r} is not offered (not a {kind} model, or not found)"
    return True


BACKENDS = ["auto", "onnxruntime", "torch"]
DEVICES = ["auto", "cpu"]
PRECISIONS = ["auto", "fp32", "fp16", "bf16"]


def get_model(
    detector: str,
    pose_model: str,
    backend: str = "auto",
    device: str = "auto",
    precision: str = "auto",
) -> DWPoseModel:
    """The DWPOSE_MODEL for these files and runtime, made once (files found or fetched
    then); its weights load on first use and go when ComfyUI unloads models."""
    folders = model_folders()
    detector, pose_model = catalog.menu_name(detector), catalog.menu_name(pose_model)
    key = (detector, pose_model, backend, device, precision, *folders)

    def make() -> DWPoseModel:
        det = _model_path(detector, "detector", folders) if detector != NO_DETECTOR else None
        pose = _model_path(pose_model, "pose", folders)
        return DWPoseModel(det, pose, backend, device, precision, model_management)

    return cached_model(key, make)


# ------------------------------------------------------------------------ conversions


def _frames(image: torch.Tensor, start: int, stop: int) -> list[np.ndarray]:
    """Frames start..stop of an IMAGE batch as RGB uint8 arrays."""
    chunk = image[start:stop].detach().cpu().float().numpy()
    return [as_rgb_uint8(f, name=f"IMAGE frame {start + i}") for i, f in enumerate(chunk)]


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise ValueError(f"expected an IMAGE batch [B,H,W,3], got {shape}")
    if len(image) == 0:
        raise ValueError("the IMAGE batch is empty (0 frames)")


def _to_image(maps: np.ndarray) -> torch.Tensor:
    """RGB uint8 maps (B,H,W,3) as a ComfyUI IMAGE: float32 0-1."""
    return torch.from_numpy(maps).float().div_(255.0)


def _draw(frames: list[PoseFrame], options: dict) -> np.ndarray:
    """Maps of all frames at the requested resolution, stacked (B,H,W,3) uint8."""
    sizes = {map_size(f.width, f.height, options["resolution"]) for f in frames}
    if len(sizes) > 1:
        raise ValueError(
            f"the frames' maps would differ in size ({sorted(sizes)}); an IMAGE batch needs one "
            "size: set a resolution, or render frames of different canvases separately"
        )
    [(width, height)] = sizes
    return render_pose(
        frames,
        width,
        height,
        threshold=options["threshold"],
        body=options["body"],
        hands=options["hands"],
        face=options["face"],
        feet=options["feet"],
        stick_width="xinsr" if options["xinsr_stick_width"] else BODY_STICK_WIDTH,
    )


# ------------------------------------------------------------------------------ nodes


def _drawing_inputs() -> dict:
    """Widgets shared by the estimator and the render node (same names, same defaults)."""
    return {
        "resolution": ("INT", {
            "default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 64,
            "tooltip": "Short side of the pose map in pixels; 0 draws at the image's own size.",
        }),
        "body": ("BOOLEAN", {"default": True, "tooltip": "Draw the body."}),
        "hands": ("BOOLEAN", {"default": True, "tooltip": "Draw the hands."}),
        "face": ("BOOLEAN", {"default": True, "tooltip": "Draw the face."}),
        "feet": ("BOOLEAN", {
            "default": False,
            "tooltip": "Draw the feet (OpenPose BODY_25 style; upstream DWPose does not).",
        }),
        "threshold": ("FLOAT", {
            "default": DEFAULT_THRESHOLD, "min": 0.0, "max": 1.0, "step": 0.01,
            "tooltip": "Keypoint score needed to draw a point or mark it visible in POSE_KEYPOINT.",
        }),
        "xinsr_stick_width": ("BOOLEAN", {
            "default": False,
            "tooltip": "Scale the body limb width with the map size, for xinsir's SDXL OpenPose ControlNet.",
        }),
    }  # fmt: skip


def _model_inputs() -> dict:
    """The model menus, shared by the loader and the estimator (comfyui_dwpose.catalog)."""
    detectors, poses = [*model_choices("detector"), NO_DETECTOR], model_choices("pose")
    return {
        "detector": (detectors, {
            "default": detectors[0],
            "tooltip": "Person detector (YOLOX). Models marked 'not downloaded' are downloaded to models/dwpose on first use; YOLOX .onnx files in models/dwpose (or comfyui_controlnet_aux's ckpts) are listed too. 'none' treats the whole image as one person.",
        }),
        "pose_model": (poses, {
            "default": poses[0],
            "tooltip": "Whole-body pose model (DWPose / RTMPose SimCC ONNX); listed like the detectors.",
        }),
    }  # fmt: skip


class DWPoseModelLoader:
    """Detector + pose model -> DWPOSE_MODEL, loaded once and unloaded by ComfyUI."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                **_model_inputs(),
                "backend": (BACKENDS, {
                    "default": "auto",
                    "tooltip": "auto: torch on a GPU, onnxruntime on the CPU. onnxruntime runs the ONNX files as they are; torch converts them once to the official networks.",
                }),
                "device": (DEVICES, {
                    "default": "auto",
                    "tooltip": "auto: ComfyUI's device (the GPU when it has one). cpu: keep the GPU for the diffusion model.",
                }),
                "precision": (PRECISIONS, {
                    "default": "auto",
                    "tooltip": "torch backend only: auto is fp16 on GPUs and fp32 on the CPU. onnxruntime runs the files as they are (auto/fp32).",
                }),
            }
        }  # fmt: skip

    @classmethod
    def VALIDATE_INPUTS(cls, detector: str | None = None, pose_model: str | None = None):
        return validate_models(detector, pose_model)

    RETURN_TYPES = ("DWPOSE_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded models, for the estimator's model input.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Load the DWPose detector and pose model once. Estimator options never reload them; "
        "ComfyUI's model management makes room for them on the GPU and frees them on "
        "'Unload models' or when another model needs the memory."
    )

    def load(
        self,
        detector: str = DEFAULT_DETECTOR,
        pose_model: str = DEFAULT_POSE_MODEL,
        backend: str = "auto",
        device: str = "auto",
        precision: str = "auto",
    ) -> tuple[DWPoseModel]:
        model = get_model(detector, pose_model, backend, device, precision)
        model.load()  # errors (missing file, wrong kind) show on this node
        return (model,)


class DWPoseEstimator:
    """IMAGE (one frame or a batch of video frames) -> pose maps and POSE_KEYPOINT."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        models = _model_inputs()
        for name in models:
            models[name][1]["tooltip"] += " Ignored when a model is connected."
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "One image or a batch of video frames, in order."}),
                **models,
                **_drawing_inputs(),
                "detector_channels": (["bgr", "rgb"], {
                    "default": "bgr",
                    "tooltip": "bgr: as YOLOX was trained (better boxes). rgb: what other DWPose nodes and the ControlNet app feed it.",
                }),
                "max_people": ("INT", {
                    "default": 0, "min": 0, "max": 1000,
                    "tooltip": "Keep only the N largest people: per frame, or in video mode the N largest over the whole batch (steady). 0 keeps all.",
                }),
                "whole_image_fallback": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "When nobody is detected, treat the whole image as one person (upstream DWPose's behaviour).",
                }),
            },
            "optional": {
                "model": ("DWPOSE_MODEL", {"tooltip": "Models from DWPose Model Loader (loaded once, managed by ComfyUI). Without it, the detector and pose_model above with the default runtime."}),
                "detect_every": ("INT", {
                    "default": 1, "min": 1, "max": 1000,
                    "tooltip": "Video mode when above 1: run the detector on every N-th frame (and whenever tracking weakens) and follow people from their keypoints between, with track ids (person_id). 1: every frame on its own.",
                }),
                "smooth": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Video mode: track people and smooth their keypoints over the frames (One Euro filter both ways: no lag), filling short dropouts. Also turns video mode on with detect_every 1.",
                }),
                "fps": ("FLOAT", {
                    "default": 30.0, "min": 1.0, "max": 240.0, "step": 0.5,
                    "tooltip": "Video mode: the frames' rate; the smoothing filter works in seconds.",
                }),
            },
        }  # fmt: skip

    @classmethod
    def VALIDATE_INPUTS(cls, detector: str | None = None, pose_model: str | None = None):
        return validate_models(detector, pose_model)

    RETURN_TYPES = ("IMAGE", "POSE_KEYPOINT")
    RETURN_NAMES = ("pose_map", "pose_keypoint")
    OUTPUT_TOOLTIPS = (
        "OpenPose-style maps for ControlNet, one per frame.",
        "Keypoints: one OpenPose-format dict per frame (real scores in extra keys; person_id in video mode).",
    )
    FUNCTION = "estimate"
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "DWPose whole-body pose estimation (body, feet, face, hands) with exact OpenPose maps. "
        "For a video batch, detect_every > 1 or smooth turns on video mode: the engine of "
        "`dwpose video` (detector skipping, track ids, smoothing, steady max_people)."
    )

    def estimate(
        self,
        image: torch.Tensor,
        detector: str = DEFAULT_DETECTOR,
        pose_model: str = DEFAULT_POSE_MODEL,
        detector_channels: str = "bgr",
        max_people: int = 0,
        whole_image_fallback: bool = False,
        model: DWPoseModel | None = None,
        detect_every: int = 1,
        smooth: bool = False,
        fps: float = 30.0,
        **drawing,
    ) -> dict:
        _check_image(image)
        options = _drawing_options(drawing)
        check_map_size(*map_size(image.shape[2], image.shape[1], options["resolution"]))
        model = model or get_model(detector, pose_model)
        video = detect_every > 1 or smooth
        total = len(image)
        progress = Progress(total)
        on = "cpu" if model.on_cpu else "gpu"
        estimator = model.estimator(
            progress.check,
            detector_channels=detector_channels,
            max_people=None if video else max_people or None,  # video: over the batch
            whole_image_fallback=whole_image_fallback,
            batch_size=POSE_BATCH[on],
        )
        if video:
            from .comfyui_dwpose.temporal import TrackingEstimator
            from .comfyui_dwpose.video import track_frames

            tracking = TrackingEstimator(estimator, detect_every)
            frames = list(track_frames(
                (_frames(image, i, i + 1)[0] for i in range(total)), tracking, fps=fps,
                smooth=smooth, people=max_people or None, batch_frames=FRAMES_PER_CALL[on],
                on_frame=progress.frame,
            ))  # fmt: skip
            detections = tracking.detections
        else:
            frames = []
            for start in range(0, total, FRAMES_PER_CALL[on]):
                batch = estimator(_frames(image, start, start + FRAMES_PER_CALL[on]))
                frames += batch
                for _ in batch:
                    progress.frame()
            detections = total if model.files[0] is not None else 0
        pose_keypoint = to_pose_keypoint(frames, options["threshold"])
        people = sum(len(f) for f in frames)
        summary = f"{total} frame(s), {people} people found, detector run on {detections}"
        return {
            # e.g. the CPU on a GPU machine is said on the node, not only logged
            "ui": {"text": [summary, *model.warnings], "pose_keypoint": pose_keypoint},
            "result": (_to_image(_draw(frames, options)), pose_keypoint),
        }


class Progress:
    """ComfyUI's progress bar over frames and its interrupt check, at every model run."""

    def __init__(self, total: int):
        self.done = 0
        self.bar = comfy_utils.ProgressBar(total) if comfy_utils is not None else None

    def check(self) -> None:
        """Before each model run: stop if the user cancelled, and show that work goes on."""
        if model_management is not None:
            model_management.throw_exception_if_processing_interrupted()
        if self.bar is not None:
            self.bar.update_absolute(self.done)

    def frame(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update_absolute(self.done)


class DWPoseRender:
    """POSE_KEYPOINT (this pack's or comfyui_controlnet_aux's) -> pose maps."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pose_keypoint": ("POSE_KEYPOINT", {"tooltip": "One dict per frame (OpenPose format): from DWPose, Load Keypoints, Retarget or comfyui_controlnet_aux."}),
                **_drawing_inputs(),
            }
        }  # fmt: skip

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("pose_map",)
    OUTPUT_TOOLTIPS = ("OpenPose-style maps for ControlNet, one per frame.",)
    FUNCTION = "render"
    CATEGORY = CATEGORY
    DESCRIPTION = "Draw POSE_KEYPOINT as OpenPose-style maps; with the estimator's settings the maps are identical to its own."

    def render(self, pose_keypoint: list[dict] | dict, **drawing) -> tuple[torch.Tensor]:
        frames = from_pose_keypoint(pose_keypoint)
        if not frames:
            raise ValueError("POSE_KEYPOINT holds no frames")
        return (_to_image(_draw(frames, _drawing_options(drawing))),)


class DWPoseTrackSmooth:
    """POSE_KEYPOINT of a video's frames -> the same with stable person ids, smoothed."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pose_keypoint": ("POSE_KEYPOINT", {"tooltip": "One dict per video frame, in order (this pack's or comfyui_controlnet_aux's)."}),
                "smooth": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Smooth each person's keypoints over the frames (One Euro filter run both ways: no lag) and fill short dropouts. Off: only track.",
                }),
                "fps": ("FLOAT", {
                    "default": 30.0, "min": 1.0, "max": 240.0, "step": 0.5,
                    "tooltip": "The video's frame rate: the filter works in seconds.",
                }),
                "max_people": ("INT", {
                    "default": 0, "min": 0, "max": 1000,
                    "tooltip": "Keep the N people largest over the whole video (steady, no flicker); 0 keeps all.",
                }),
                "threshold": ("FLOAT", {
                    "default": DEFAULT_THRESHOLD, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Keypoint score needed to count a point as seen (use the estimator's).",
                }),
            }
        }  # fmt: skip

    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("pose_keypoint",)
    OUTPUT_TOOLTIPS = (
        "The frames with person_id per person, smoothed; draw them with DWPose Render.",
    )
    FUNCTION = "track"
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Video poses: stable person ids across frames (through crossings and short occlusions), "
        "steadier skeletons, the N main people."
    )

    def track(
        self,
        pose_keypoint: list[dict] | dict,
        smooth: bool = True,
        fps: float = 30.0,
        max_people: int = 0,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> tuple[list[dict]]:
        from .comfyui_dwpose.temporal import Smoother, Tracker, track_poses  # scipy

        frames = from_pose_keypoint(pose_keypoint)
        if not frames:
            raise ValueError("POSE_KEYPOINT holds no frames")
        smoother = Smoother(lookahead=None, threshold=threshold) if smooth else None
        tracked = track_poses(
            frames, fps=fps, tracker=Tracker(threshold=threshold), smoother=smoother,
            people=max_people or None,
        )  # fmt: skip
        return (to_pose_keypoint(list(tracked), threshold),)


class DWPoseRetarget:
    """POSE_KEYPOINT of a dance + a reference pose or image -> the dance on the reference's
    proportions (comfyui_dwpose.retarget), as POSE_KEYPOINT on the reference's canvas."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pose_keypoint": ("POSE_KEYPOINT", {"tooltip": "The dance: one dict per video frame, in order (tracked by DWPose Track & Smooth for several dancers)."}),
                "mode": (["bones", "global"], {
                    "default": "bones",
                    "tooltip": "bones: every limb takes the reference's length, keeping the dance's directions. global: one scale for the whole body.",
                }),
                "anchor": (["auto", "neck", "hips", "ground"], {
                    "default": "auto",
                    "tooltip": "Where the first frame lands on the reference. ground: feet on its foot line, planted feet do not slide. auto: ground when both show feet, else neck.",
                }),
                "person": ("INT", {
                    "default": -1, "min": -1, "max": 100000,
                    "tooltip": "Track id (person_id) of the dancer to move; -1: the main dancer.",
                }),
                "reference_person": ("INT", {
                    "default": -1, "min": -1, "max": 1000,
                    "tooltip": "Which person of the reference, by position in its list; -1: the largest.",
                }),
                "threshold": ("FLOAT", {
                    "default": DEFAULT_THRESHOLD, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Keypoint score needed to count a point as seen (use the estimator's).",
                }),
            },
            "optional": {
                "reference_pose": ("POSE_KEYPOINT", {"tooltip": "The character's pose (its first frame). Connect this or reference_image."}),
                "reference_image": ("IMAGE", {"tooltip": "The character's image, run through DWPose with the models below."}),
                "detector": (model_choices("detector"), {
                    "default": model_choices("detector")[0], "tooltip": "Person detector for reference_image.",
                }),
                "pose_model": (model_choices("pose"), {
                    "default": model_choices("pose")[0], "tooltip": "Pose model for reference_image.",
                }),
            },
        }  # fmt: skip

    @classmethod
    def VALIDATE_INPUTS(cls, detector: str | None = None, pose_model: str | None = None):
        return validate_models(detector, pose_model)

    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("pose_keypoint",)
    OUTPUT_TOOLTIPS = (
        "The dance on the reference's proportions and canvas; draw it with DWPose Render.",
    )
    FUNCTION = "retarget"
    CATEGORY = CATEGORY
    DESCRIPTION = "Move a dance onto a character's proportions (limb lengths, head and hand sizes) before drawing, so the video model is not shown the dancer's body."

    def retarget(
        self,
        pose_keypoint: list[dict] | dict,
        mode: str = "bones",
        anchor: str = "auto",
        person: int = -1,
        reference_person: int = -1,
        threshold: float = DEFAULT_THRESHOLD,
        reference_pose: list[dict] | dict | None = None,
        reference_image: torch.Tensor | None = None,
        detector: str = DEFAULT_DETECTOR,
        pose_model: str = DEFAULT_POSE_MODEL,
    ) -> tuple[list[dict]]:
        from .comfyui_dwpose.retarget import retarget

        if (reference_pose is None) == (reference_image is None):
            raise ValueError("connect one reference: reference_pose or reference_image")
        if reference_image is not None:
            _check_image(reference_image)
            reference = get_model(detector, pose_model).estimator()(
                _frames(reference_image, 0, 1)[0]
            )
        else:
            references = from_pose_keypoint(reference_pose)
            if not references:
                raise ValueError("reference_pose holds no frames")
            reference = references[0]
        frames = from_pose_keypoint(pose_keypoint)
        out = retarget(
            frames, reference, mode=mode, anchor=anchor, threshold=threshold,
            person=None if person < 0 else person,
            reference_person=None if reference_person < 0 else reference_person,
        )  # fmt: skip
        return (to_pose_keypoint(out, threshold),)


class DWPoseSaveKeypoints:
    """Write POSE_KEYPOINT to the output folder as one JSON file (`dwpose render` reads it)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pose_keypoint": ("POSE_KEYPOINT", {"tooltip": "The keypoints to save: one dict per frame (this pack's or comfyui_controlnet_aux's)."}),
                "filename_prefix": ("STRING", {
                    "default": "dwpose/keypoints",
                    "tooltip": "File name prefix inside the output folder; may contain subfolders. A number is added: prefix_00001.json, ...",
                }),
            }
        }  # fmt: skip

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("file",)
    OUTPUT_TOOLTIPS = (
        "The file as DWPose Load Keypoints lists it (`dwpose/keypoints_00001.json [output]`).",
    )
    OUTPUT_NODE = True
    FUNCTION = "save"
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Save POSE_KEYPOINT as a JSON file (prefix_00001.json, ...) in the output folder; "
        "DWPose Load Keypoints reads it back."
    )

    def save(self, pose_keypoint: list[dict] | dict, filename_prefix: str = "dwpose/keypoints"):
        value = [pose_keypoint] if isinstance(pose_keypoint, dict) else list(pose_keypoint)
        output_dir = output_directory().resolve()
        path = next_json_path(output_dir, filename_prefix)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(value, path)  # temporary name, then rename
        subfolder = path.parent.relative_to(output_dir).as_posix()
        reference = {
            "filename": path.name,
            "subfolder": "" if subfolder == "." else subfolder,
            "type": "output",
        }  # as SaveImage reports its files; /view?filename=...&subfolder=...&type=output
        name = path.relative_to(output_dir).as_posix() + OUTPUT_ANNOTATION
        return {"ui": {"keypoints": [reference], "text": [name]}, "result": (name,)}


OUTPUT_ANNOTATION = " [output]"  # ComfyUI's suffix for a file in the output folder


class DWPoseLoadKeypoints:
    """A POSE_KEYPOINT JSON file (ComfyUI's input folder, an upload, or Save Keypoints'
    output) -> POSE_KEYPOINT, read strictly (comfyui_dwpose.pose_keypoint)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "keypoints_file": (keypoint_files(), {
                    "tooltip": "A POSE_KEYPOINT JSON file: from ComfyUI's input folder (put or upload it there), or one DWPose Save Keypoints wrote ([output]).",
                }),
                "coordinates": (list(COORDINATES), {
                    "default": "auto",
                    "tooltip": "How the file's OpenPose points are given: pixels, normalised (0-1 of the canvas, as some pose editors write), or auto (told apart per file).",
                }),
            }
        }  # fmt: skip

    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("pose_keypoint",)
    OUTPUT_TOOLTIPS = ("One dict per frame, in canvas pixels; draw it with DWPose Render.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Load keypoints from a JSON file (this pack's, comfyui_controlnet_aux's, OpenPose "
        "editors'); a malformed file is an error naming the frame and the field."
    )

    @classmethod
    def IS_CHANGED(cls, keypoints_file: str, coordinates: str = "auto") -> str:
        path = keypoint_file_path(keypoints_file)
        return f"{path.stat().st_mtime_ns}:{path.stat().st_size}" if path.is_file() else ""

    @classmethod
    def VALIDATE_INPUTS(cls, keypoints_file: str) -> bool | str:
        if not keypoint_file_path(keypoints_file).is_file():
            return f"keypoints file {keypoints_file!r} not found"
        return True

    def load(self, keypoints_file: str, coordinates: str = "auto") -> tuple[list[dict]]:
        path = keypoint_file_path(keypoints_file)
        frames = load_json(path, coordinates)
        if not frames:
            raise ValueError(f"{keypoints_file}: the file holds no frames")
        return (to_pose_keypoint(frames),)


def output_directory() -> Path:
    """ComfyUI's output folder; outside ComfyUI, ./output."""
    if folder_paths is not None:
        return Path(folder_paths.get_output_directory())
    return Path("output").resolve()


def input_directory() -> Path:
    """ComfyUI's input folder; outside ComfyUI, ./input."""
    if folder_paths is not None:
        return Path(folder_paths.get_input_directory())
    return Path("input").resolve()


def keypoint_files() -> list[str]:
    """JSON files in the input folder (and its subfolders), then the output folder's,
    marked " [output]" as ComfyUI names files there."""
    names = []
    for folder, suffix in ((input_directory(), ""), (output_directory(), OUTPUT_ANNOTATION)):
        found = [
            Path(root, f).relative_to(folder).as_posix()
            for root, _, files in os.walk(folder, followlinks=True)
            for f in files
            if f.lower().endswith(".json")
        ]
        names += [name + suffix for name in sorted(found)]
    return names


def keypoint_file_path(name: str) -> Path:
    """The file for a combo value, kept inside the input (or output) folder."""
    folder = input_directory()
    if name.endswith(OUTPUT_ANNOTATION):
        name, folder = name.removesuffix(OUTPUT_ANNOTATION), output_directory()
    folder = folder.resolve()
    path = (folder / name).resolve()
    if folder not in path.parents:
        raise ValueError(f"keypoints file {name!r} points outside {folder}")
    return path


def next_json_path(output_dir: Path, prefix: str) -> Path:
    """`<prefix>_NNNNN.json` with the next free number, kept inside `output_dir`."""
    output_dir = output_dir.resolve()
    target = (output_dir / (prefix.strip() or "keypoints")).resolve()
    if output_dir not in target.parents:
        raise ValueError(f"filename_prefix {prefix!r} points outside the output folder")
    pattern = re.compile(re.escape(target.name) + r"_(\d+)\.json")
    taken = [0]
    if target.parent.is_dir():
        taken += [int(m[1]) for p in target.parent.iterdir() if (m := pattern.fullmatch(p.name))]
    return target.with_name(f"{target.name}_{max(taken) + 1:05d}.json")


def _drawing_options(drawing: dict) -> dict:
    """The drawing widgets with their defaults filled in; unknown names are an error."""
    defaults = {name: spec[1]["default"] for name, spec in _drawing_inputs().items()}
    unknown = set(drawing) - set(defaults)
    if unknown:
        raise TypeError(f"unknown drawing option(s): {', '.join(sorted(unknown))}")
    return {**defaults, **drawing}


NODE_CLASS_MAPPINGS = {
    "DWPoseWB_ModelLoader": DWPoseModelLoader,
    "DWPoseWB_Estimator": DWPoseEstimator,
    "DWPoseWB_Render": DWPoseRender,
    "DWPoseWB_TrackSmooth": DWPoseTrackSmooth,
    "DWPoseWB_Retarget": DWPoseRetarget,
    "DWPoseWB_SaveKeypoints": DWPoseSaveKeypoints,
    "DWPoseWB_LoadKeypoints": DWPoseLoadKeypoints,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "DWPoseWB_ModelLoader": "DWPose Model Loader",
    "DWPoseWB_Estimator": "DWPose Whole-Body Estimator",
    "DWPoseWB_Render": "DWPose Render Keypoints",
    "DWPoseWB_TrackSmooth": "DWPose Track & Smooth (video)",
    "DWPoseWB_Retarget": "DWPose Retarget",
    "DWPoseWB_SaveKeypoints": "DWPose Save Keypoints (JSON)",
    "DWPoseWB_LoadKeypoints": "DWPose Load Keypoints (JSON)",
}
