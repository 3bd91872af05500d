"""The `dwpose` command: pose maps and keypoints for images, model downloads, re-rendering,
model conversion.

Exit codes: 0 everything done; 1 some inputs failed or an output could not be written
(the others were written); 2 bad usage, including an output that would replace an input
and an output folder that cannot be written (nothing was processed); 3 a model, or a
package it needs, could not be fetched or loaded (nothing was processed); 130 interrupted
(Ctrl-C: what was finished is kept whole, partial files are removed, and a summary says
what is left).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import cli_retarget, cli_video, files, hub
from .extras import MissingExtraError, require
from .images import ImageError, load_image, save_image
from .limits import SizeLimitError, check_map_size
from .pose_keypoint import COORDINATES, PoseKeypointError
from .render import BODY_STICK_WIDTH, map_size, render_pose
from .result import DEFAULT_THRESHOLD, PoseFrame, dumps, load_json, to_pose_keypoint
from .runtime import BackendUnavailableError, ModelLoadError
from .train import cli as train_cli

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE, EXIT_MODEL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
# What makes one input fail while the batch goes on.
INPUT_ERRORS = (ImageError, PoseKeypointError, SizeLimitError)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (hub.ModelError, ModelLoadError, BackendUnavailableError, MissingExtraError) as exc:
        _error(str(exc))
        return EXIT_MODEL
    except files.OutputError as exc:
        _error(str(exc))
        return EXIT_FAILED_INPUTS
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwpose",
        description="DWPose whole-body pose estimation with ControlNet-exact OpenPose maps.",
        epilog="Exit codes: 0 done; 1 some inputs failed or an output could not be written; "
        "2 bad usage (nothing processed); 3 a model (or a package it needs) could not be "
        "fetched or loaded; "
        "130 interrupted.",
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
        "download",
        help="fetch model files into the cache or a models folder",
        epilog=_known_models(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    download.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="known names (below) or owner/repo/file on the Hub; default: the two defaults",
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
    render.add_argument(
        "--coordinates",
        choices=COORDINATES,
        default="auto",
        help="how other tools' OpenPose parts are given: pixels, normalised (0-1 of the "
        "canvas), or auto (normalised when every point lies within [-1, 2] and most in [0, 1])",
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


def _known_models() -> str:
    defaults = {hub.DEFAULT_DETECTOR, hub.DEFAULT_POSE_MODEL}
    lines = ["known models (README.md, Models, says what each is):"]
    for kind in hub.KINDS:
        names = [f"{n} (default)" if n in defaults else n for n in hub.known_names(kind)]
        lines.append(f"  {kind:<11} {', '.join(names)}")
    return "\n".join(lines)


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
        type=_max_side,
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
        type=_resolution,
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


def _whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _whole(text, "a whole number of at least 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _resolution(text: str) -> int:
    value = _whole(text, "a whole number of pixels (0: the image's size)")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (the image's size) or more, got {value}")
    return value


def _max_side(text: str) -> int:
    value = _whole(text, "a whole number of pixels (0: never shrink)")
    if value != 0 and value < 32:
        raise argparse.ArgumentTypeError(f"must be 0 (never shrink) or at least 32, got {value}")
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
    value = _whole(text, "a whole number of pixels or 'xinsr'")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 pixel or 'xinsr', got {value}")
    return value
    return value


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
    planned = [args.output / f"{p.stem}{suffix}" for p in images for suffix in (".png", ".json")]
    if code := _prepare_output(args.output, planned, images):
        return code
    estimator = _estimator(args, args.max_people)

    def one(path: Path) -> None:
        image = load_image(path)
        try:
            check_map_size(*map_size(image.shape[1], image.shape[0], args.resolution))
        except SizeLimitError as exc:
            raise SizeLimitError(f"{path}: {exc}") from None
        frame = estimator(image)
        stem = args.output / path.stem
        with _stem_lock(stem, [".png", ".json"]):
            _write_frame(frame, stem, args)
        print(f"{path} -> {args.output / path.stem}.png, .json ({len(frame)} people)")

    return _each(images, one, args.output, "image")


def _run_video(args: argparse.Namespace) -> int:
    try:
        videos = cli_video.videos_of(args)
    except ValueError as exc:
        return _usage(str(exc))
    ray = ("ray",) if args.ray is not None else ()
    for package in ("av", "scipy", *ray):  # before the models load: one line, not one per video
        require(package, "dwpose video")
    if code := _prepare_output(args.output, cli_video.planned_outputs(args, videos), videos):
        return code
    if args.ray is not None:  # each Ray actor loads the models itself
        report = cli_video.run_on_ray(args, videos, functools.partial(_estimator, args))
    else:
        estimator = _estimator(args)  # --max-people picks tracks, not detections, in videos
        report = cli_video.run(args, videos, estimator)
    if report.interrupted or report.unfinished:
        return _stopped(report.interrupted, len(videos), report.unfinished, "video", report.failed)
    return _summary(len(videos), report.failed)


def _run_download(args: argparse.Namespace) -> int:
    names = args.names or [hub.DEFAULT_DETECTOR, hub.DEFAULT_POSE_MODEL]
    for path in hub.download(names, models_dir=args.models_dir):
        print(path)
    return EXIT_OK


def _run_convert(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() not in (".onnx", ".safetensors"):
        return _usage(f"{args.output}: the output must end in .onnx or .safetensors")
    if args.output.is_dir():
        return _usage(
            f"{args.output} is a folder: give the file to write, e.g. {args.output / 'model.onnx'}"
        )
    require("torch", "dwpose convert")
    from .nets import ConversionError, list_models, load_net, save_net

    if args.arch is not None and args.arch not in list_models():
        return _usage(f"unknown --arch {args.arch!r}; known: {', '.join(list_models())}")
    source = hub.resolve_model(
        args.checkpoint,
        models_dir=args.models_dir,
        local_files_only=True if args.offline else None,
    )
    if code := _prepare_output(args.output.parent, [args.output], [Path(source)], "another output"):
        return code
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
    except files.OutputError as exc:
        _error(str(exc))
        return EXIT_FAILED_INPUTS
    check = "" if net.onnx_error is None else f"; equals the ONNX file to {net.onnx_error:.1e}"
    print(f"{source} -> {written} ({net.config}, {net.parameters:,} parameters{check})")
    return EXIT_OK


def _run_render(args: argparse.Namespace) -> int:
    stems = "|".join(re.escape(p.stem) for p in args.inputs)
    maps = re.compile(rf"({stems})(_\d{{5}})?\.png")  # STEM.png, or STEM_00000.png per frame
    planned = [args.output / f"{p.stem}.png" for p in args.inputs]
    if args.output.is_dir():
        planned += [p for p in args.output.iterdir() if maps.fullmatch(p.name)]
    if code := _prepare_output(args.output, planned, args.inputs):
        return code

    def one(path: Path) -> None:
        frames = load_json(path, args.coordinates)
        sizes = [map_size(f.width, f.height, args.resolution) for f in frames]
        for i, (width, height) in enumerate(sizes):
            try:
                check_map_size(width, height)
            except SizeLimitError as exc:
                raise SizeLimitError(f"{path}: frame {i}: {exc}") from None
        for i, frame in enumerate(frames):
            stem = args.output / (path.stem if len(frames) == 1 else f"{path.stem}_{i:05d}")
            with _stem_lock(stem, [".png"]):
                save_image(_draw(frame, args), stem.with_name(stem.name + ".png"))
        print(f"{path} -> {len(frames)} map(s) in {args.output}")

    return _each(args.inputs, one, args.output, "file")


def _prepare_output(
    folder: Path, planned: list[Path], inputs: list[Path], hint: str = "another output folder"
) -> int:
    """Refuse outputs that would replace inputs and folders that cannot be written, before
    any work: EXIT_USAGE with the message, else 0."""
    try:
        files.refuse_inputs(planned, inputs, f": choose {hint} (-o)")
        files.check_folder(folder)
    except files.OutputError as exc:
        return _usage(str(exc))
    return EXIT_OK


@contextlib.contextmanager
def _stem_lock(stem: Path, suffixes: list[str]) -> Iterator[None]:
    """Hold the lock of an output stem (a second dwpose run writing it waits, and says
    so) and remove what a killed run left of its files."""

    def waiting() -> None:
        tqdm.write(f"waiting for another dwpose run writing {stem}", file=sys.stderr)

    with files.locked(stem, on_wait=waiting):
        for suffix in suffixes:
            files.clean_partials(stem.with_name(stem.name + suffix))
        yield


def _each(items: list[Path], work: Callable[[Path], None], output: Path, what: str) -> int:
    """Run `work` on every input. A failing input is reported and the batch goes on; a
    write error that every later file would meet too (disk full, read-only) ends it, as
    Ctrl-C does between files. Returns the exit code."""
    files.make_folder(output)
    failed: list[Path] = []
    for i, path in enumerate(tqdm(items, desc=what, unit=what, disable=len(items) < 2)):
        try:
            work(path)
        except KeyboardInterrupt:
            return _stopped(True, len(items), items[i:], what, failed)
        except INPUT_ERRORS as exc:
            _error(f"skipped: {exc}")
            failed.append(path)
        except files.OutputError as exc:
            _error(str(exc))
            if exc.fatal:
                return _stopped(False, len(items), items[i:], what, failed)
            failed.append(path)
    return _summary(len(items), failed)


def _draw(frame: PoseFrame, args: argparse.Namespace) -> np.ndarray:
    width, height = map_size(frame.width, frame.height, args.resolution)
    return render_pose(
        frame, width, height, threshold=args.threshold, body=args.body, hands=args.hands,
        face=args.face, feet=args.feet, stick_width=args.stick_width,
    )  # fmt: skip


def _write_frame(frame: PoseFrame, stem: Path, args: argparse.Namespace) -> None:
    """The map and its JSON, both or neither (a full disk leaves no lone map)."""
    names = [stem.with_name(stem.name + suffix) for suffix in (".png", ".json")]
    with files.replacing_together(names) as (png, json):
        Image.fromarray(_draw(frame, args)).save(png, format="PNG")
        json.write_text(dumps(to_pose_keypoint(frame, args.threshold)), encoding="utf-8")


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


def _stopped(
    interrupted: bool, total: int, unfinished: list[Path], what: str, failed: list[Path]
) -> int:
    """Report a batch that ended early; the exit code (130 for Ctrl-C, else 1)."""
    shown = ", ".join(map(str, unfinished[:5])) + (
        f" and {len(unfinished) - 5} more" if len(unfinished) > 5 else ""
    )
    done = total - len(unfinished) - len(failed)
    why = "interrupted" if interrupted else "stopped"
    _error(
        f"{why}: {done} of {total} {what}(s) finished, {len(failed)} failed, "
        f"{len(unfinished)} not finished ({shown}); run the same command again to finish them"
    )
    return EXIT_INTERRUPTED if interrupted else EXIT_FAILED_INPUTS


def _summary(total: int, failed: list[Path]) -> int:
    if failed:
        _error(f"{len(failed)} of {total} input(s) failed: {', '.join(map(str, failed))}")
        return EXIT_FAILED_INPUTS
    return EXIT_OK


def _usage(message: str) -> int:
    _error(message)
    return EXIT_USAGE


def _error(message: str) -> None:
    tqdm.write(f"dwpose: error: {message}", file=sys.stderr)  # clears a progress bar first


if __name__ == "__main__":
    sys.exit(main())
