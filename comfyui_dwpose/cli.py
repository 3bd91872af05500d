"""The `dwpose` command: pose maps and keypoints for images, model downloads, re-rendering,
model conversion.

Exit codes: 0 everything done; 1 some inputs failed (the others were written); 2 bad
usage; 3 a model could not be fetched or loaded (nothing was processed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import cli_retarget, cli_video, hub
from .images import ImageError, load_image, save_image
from .render import BODY_STICK_WIDTH, map_size, render_pose
from .result import DEFAULT_THRESHOLD, PoseFrame, load_json, save_json, to_pose_keypoint
from .runtime import BackendUnavailableError, ModelLoadError
from .train import cli as train_cli

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (hub.ModelError, ModelLoadError, BackendUnavailableError) as exc:
        _error(str(exc))
        return EXIT_MODEL
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwpose",
        description="DWPose whole-body pose estimation with ControlNet-exact OpenPose maps.",
        epilog="Exit codes: 0 done; 1 some inputs failed; 2 bad usage; 3 a model could not be fetched or loaded.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    pose = commands.add_parser("pose", help="pose map (PNG) and POSE_KEYPOINT JSON for each image")
    pose.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files or folders of images")
    pose.add_argument(
        "-o", "--output", required=True, type=Path, metavar="DIR", help="output folder"
    )
    _add_estimator_options(pose)
    _add_model_source(pose)
    _add_drawing(pose)
    pose.set_defaults(run=_run_pose)

    video = commands.add_parser(
        "video",
        help="pose video (MP4), POSE_KEYPOINT JSON and .npz for each video, with tracking",
    )
    video.add_argument(
        "inputs", nargs="+", metavar="VIDEO", help="video files, folders of videos, glob patterns"
    )
    video.add_argument(
        "-o", "--output", required=True, type=Path, metavar="DIR", help="output folder"
    )
    _add_estimator_options(video)
    _add_model_source(video)
    _add_drawing(video)
    cli_video.add_options(video, _positive_int)
    video.set_defaults(run=_run_video)

    download = commands.add_parser(
        "download", help="fetch model files into the cache or a models folder"
    )
    download.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"registry names (default: {hub.DEFAULT_DETECTOR} {hub.DEFAULT_POSE_MODEL})",
    )
    download.add_argument(
        "--models-dir", type=Path, help="download into this folder instead of the HF cache"
    )
    download.set_defaults(run=_run_download)

    render = commands.add_parser("render", help="draw maps from POSE_KEYPOINT JSON files")
    render.add_argument("inputs", nargs="+", type=Path, metavar="JSON")
    render.add_argument(
        "-o", "--output", required=True, type=Path, metavar="DIR", help="output folder"
    )
    _add_drawing(render)
    render.set_defaults(run=_run_render)
    cli_retarget.add_parser(commands)

    convert = commands.add_parser(
        "convert",
        help="turn a .pth, .safetensors or official .onnx model into .onnx or .safetensors",
    )
    convert.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help=".pth, .pt, .safetensors or .onnx: a path, registry name or owner/repo/file",
    )
    convert.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUT",
        help="OUT.onnx or OUT.safetensors",
    )
    convert.add_argument(
        "--arch",
        help="rtmpose-t|s|m|l|x or yolox-nano|tiny|s|m|l|x (default: found from the weights)",
    )
    convert.add_argument(
        "--input-size",
        type=_input_size,
        metavar="HxW",
        help="detectors: the ONNX input size (default: the file's or the published one); "
        "pose weights fix their own",
    )
    convert.add_argument(
        "--dynamic-size",
        action="store_true",
        help="detectors, .onnx: any input height and width (for --fit-detector-input)",
    )
    convert.add_argument(
        "--teacher",
        action="store_true",
        help="take the teacher of a distillation checkpoint (default: the student)",
    )
    _add_model_source(convert)
    convert.set_defaults(run=_run_convert)
    train_cli.add_parsers(commands)
    return parser


def _add_estimator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detector", default=hub.DEFAULT_DETECTOR, help="registry name, owner/repo/file or path"
    )
    parser.add_argument(
        "--pose-model",
        default=hub.DEFAULT_POSE_MODEL,
        help="registry name, owner/repo/file or path",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        help="auto (torch on a GPU, else onnxruntime), onnxruntime or torch",
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N, rocm, mps, dml, coreml"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help="torch backend: auto is fp16 on GPUs, fp32 on the CPU",
    )
    parser.add_argument(
        "--detector-channels",
        choices=("bgr", "rgb"),
        default="bgr",
        help="bgr as YOLOX was trained (default); rgb as ComfyUI and the ControlNet app feed it",
    )
    parser.add_argument(
        "--detector-score", type=float, default=0.3, help="keep boxes scoring above this"
    )
    parser.add_argument(
        "--nms-iou", type=float, default=0.45, help="drop boxes overlapping a better one above this"
    )
    parser.add_argument("--max-people", type=_positive_int, help="keep only the N largest people")
    parser.add_argument(
        "--whole-image-fallback",
        action="store_true",
        help="when nobody is found, treat the whole image as one person (upstream)",
    )
    parser.add_argument(
        "--no-detector", action="store_true", help="skip detection: the whole image is one person"
    )
    parser.add_argument(
        "--fit-detector-input",
        action="store_true",
        help="letterbox frames for the detector onto a canvas fitted to their shape, not 640x640 "
        "(16:9: 640x384; faster; needs --backend torch or a `convert --dynamic-size` detector)",
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=4096,
        help="shrink larger images to this longer side before estimation (0: never)",
    )


def _add_model_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models-dir", type=Path, help="look for (and download) model files in this folder"
    )
    parser.add_argument(
        "--offline", action="store_true", help="never download; use cached or local files only"
    )


def _add_drawing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resolution",
        type=int,
        default=0,
        help="short side of the map in pixels; 0 (default) draws at the image size",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="keypoint score needed to draw or export a point (default 0.3)",
    )
    parser.add_argument(
        "--stick-width",
        type=_stick_width,
        default=BODY_STICK_WIDTH,
        help="body limb half-width in pixels, or 'xinsr' (scaled for xinsir's SDXL ControlNet)",
    )
    parser.add_argument("--no-body", dest="body", action="store_false", help="do not draw the body")
    parser.add_argument(
        "--no-hands", dest="hands", action="store_false", help="do not draw the hands"
    )
    parser.add_argument("--no-face", dest="face", action="store_false", help="do not draw the face")
    parser.add_argument(
        "--feet", action="store_true", help="draw the feet (OpenPose BODY_25 style)"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _input_size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    try:
        size = (int(height), int(width))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 384x288, got {text!r}") from None
    if min(size) < 32 or size[0] % 32 or size[1] % 32:
        raise argparse.ArgumentTypeError(f"both sides must be multiples of 32, got {text!r}")
    return size


def _stick_width(text: str) -> int | str:
    if text == "xinsr":
        return text
    return _positive_int(text)


def _estimator(args: argparse.Namespace, max_people: int | None = None):
    from .estimator import DWPose  # imported here so `dwpose download` works without onnxruntime

    return DWPose(
        args.detector, args.pose_model, args.backend, args.device,
        detector_score=args.detector_score, nms_iou=args.nms_iou,
        detector_channels=args.detector_channels, max_people=max_people,
        whole_image_fallback=args.whole_image_fallback, use_detector=not args.no_detector,
        max_side=args.max_side or None, models_dir=args.models_dir,
        local_files_only=True if args.offline else None, precision=args.precision,
        fit_detector_input=args.fit_detector_input,
    )  # fmt: skip


def _run_pose(args: argparse.Namespace) -> int:
    images = _collect_images(args.inputs)
    _check_unique_stems(images)
    estimator = _estimator(args, args.max_people)
    args.output.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in tqdm(images, desc="pose", unit="image", disable=len(images) < 2):
        try:
            frame = estimator(load_image(path))
        except ImageError as exc:
            _error(f"skipped: {exc}")
            failed.append(path)
            continue
        _write_frame(frame, args.output / path.stem, args)
        print(f"{path} -> {args.output / path.stem}.png, .json ({len(frame)} people)")
    return _summary(len(images), failed)


def _run_video(args: argparse.Namespace) -> int:
    try:
        videos = cli_video.videos_of(args)
    except ValueError as exc:
        return _usage(str(exc))
    estimator = _estimator(args)  # --max-people picks tracks, not detections, in videos
    return _summary(len(videos), cli_video.run(args, videos, estimator))


def _run_download(args: argparse.Namespace) -> int:
    names = args.names or [hub.DEFAULT_DETECTOR, hub.DEFAULT_POSE_MODEL]
    for path in hub.download(names, models_dir=args.models_dir):
        print(path)
    return EXIT_OK


def _run_convert(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() not in (".onnx", ".safetensors"):
        return _usage(f"{args.output}: the output must end in .onnx or .safetensors")
    try:
        from .nets import ConversionError, list_models, load_net, save_net
    except ImportError as exc:
        raise BackendUnavailableError(
            f"dwpose convert needs PyTorch: pip install torch ({exc})"
        ) from exc
    if args.arch is not None and args.arch not in list_models():
        return _usage(f"unknown --arch {args.arch!r}; known: {', '.join(list_models())}")
    source = hub.resolve_model(
        args.checkpoint,
        models_dir=args.models_dir,
        local_files_only=True if args.offline else None,
    )
    try:
        net = load_net(source, args.arch, args.input_size, "teacher" if args.teacher else "student")
        if args.dynamic_size and (
            net.config.kind != "det" or args.output.suffix.lower() != ".onnx"
        ):
            return _usage("--dynamic-size is for detectors written as .onnx")
        written = save_net(net, args.output, args.dynamic_size)
    except ConversionError as exc:
        _error(str(exc))
        return EXIT_MODEL
    check = "" if net.onnx_error is None else f"; equals the ONNX file to {net.onnx_error:.1e}"
    print(f"{source} -> {written} ({net.config}, {net.parameters:,} parameters{check})")
    return EXIT_OK


def _run_render(args: argparse.Namespace) -> int:
    args.output.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in args.inputs:
        try:
            frames = load_json(path)
        except ValueError as exc:
            _error(f"skipped: {exc}")
            failed.append(path)
            continue
        for i, frame in enumerate(frames):
            stem = path.stem if len(frames) == 1 else f"{path.stem}_{i:05d}"
            save_image(_draw(frame, args), args.output / f"{stem}.png")
        print(f"{path} -> {len(frames)} map(s) in {args.output}")
    return _summary(len(args.inputs), failed)


def _draw(frame: PoseFrame, args: argparse.Namespace) -> np.ndarray:
    width, height = map_size(frame.width, frame.height, args.resolution)
    return render_pose(
        frame, width, height, threshold=args.threshold, body=args.body, hands=args.hands,
        face=args.face, feet=args.feet, stick_width=args.stick_width,
    )  # fmt: skip


def _write_frame(frame: PoseFrame, stem: Path, args: argparse.Namespace) -> None:
    save_image(_draw(frame, args), stem.with_name(stem.name + ".png"))
    save_json(to_pose_keypoint(frame, args.threshold), stem.with_name(stem.name + ".json"))


def _collect_images(inputs: list[str]) -> list[Path]:
    images = []
    for item in map(Path, inputs):
        if item.is_dir():
            images += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            images.append(item)  # a missing file is reported when it is read
    if not images:
        raise SystemExit(_usage(f"no images found in {' '.join(inputs)}"))
    return images


def _check_unique_stems(images: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in images:
        if path.stem in seen and seen[path.stem] != path:
            raise SystemExit(
                _usage(f"{seen[path.stem]} and {path} would both write {path.stem}.png")
            )
        seen[path.stem] = path


def _summary(total: int, failed: list[Path]) -> int:
    if failed:
        _error(f"{len(failed)} of {total} input(s) failed: {', '.join(map(str, failed))}")
        return EXIT_FAILED_INPUTS
    return EXIT_OK


def _usage(message: str) -> int:
    _error(message)
    return EXIT_USAGE


def _error(message: str) -> None:
    print(f"dwpose: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
