"""`dwpose retarget`: a dance's keypoints moved onto a reference person's proportions.

    dwpose retarget dance.json --reference character.png -o on_character.json --render maps/

DRIVING.json is POSE_KEYPOINT (`dwpose video`, the ComfyUI nodes, comfyui_controlnet_aux);
the reference is POSE_KEYPOINT too (its first frame) or an image, which DWPose reads first.
The output is POSE_KEYPOINT on the reference's canvas; --render also draws each frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from . import files
from .images import ImageError, load_image, save_image
from .result import PoseFrame, load_json, save_json, to_pose_keypoint
from .retarget import ANCHORS, MODES, retarget

JSON_SUFFIXES = {".json"}


def add_parser(commands) -> None:
    """Add `retarget` to the `dwpose` subcommands (cli.py has finished loading by now)."""
    from . import cli

    parser = commands.add_parser(
        "retarget",
        help="move a dance (POSE_KEYPOINT JSON) onto a reference person's proportions",
    )
    parser.add_argument("driving", type=Path, metavar="DRIVING.json", help="the dance's frames")
    parser.add_argument(
        "--reference",
        required=True,
        type=Path,
        metavar="REF",
        help="POSE_KEYPOINT JSON (its first frame) or an image, run through DWPose",
    )
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.json")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="bones",
        help="bones: every limb takes the reference's length (default); global: one scale",
    )
    parser.add_argument(
        "--anchor",
        choices=ANCHORS,
        default="auto",
        help="where the first frame lands on the reference: neck, hips, or ground (feet on "
        "its foot line, planted feet stay put); auto: ground when both show feet, else neck",
    )
    parser.add_argument(
        "--person",
        type=_ids,
        help="track ids of the dancers to move, e.g. 0,2 (default: the main one)",
    )
    parser.add_argument(
        "--reference-person",
        type=_ids,
        help="the reference's person for each, by index, e.g. 1,0 (default: the largest)",
    )
    parser.add_argument(
        "--render", type=Path, metavar="DIR", help="also draw each frame as DIR/OUT_NNNNN.png"
    )
    cli._add_drawing(parser)
    cli._add_estimator_options(parser)
    cli._add_model_source(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from . import cli

    inputs = [args.driving, args.reference]
    if code := cli._prepare_output(args.output.parent, [args.output], inputs, "another output"):
        return code
    try:
        frames = load_json(args.driving)
        reference = _reference(args)
    except (ValueError, ImageError) as exc:
        cli._error(str(exc))
        return cli.EXIT_FAILED_INPUTS
    try:
        out = retarget(
            frames, reference, mode=args.mode, anchor=args.anchor, person=_one(args.person),
            reference_person=_one(args.reference_person), threshold=args.threshold,
        )  # fmt: skip
    except ValueError as exc:
        return cli._usage(str(exc))
    maps = [] if args.render is None else [
        args.render / f"{args.output.stem}_{i:05d}.png" for i in range(len(out))
    ]  # fmt: skip
    if code := cli._prepare_output(args.render or args.output.parent, maps, inputs):
        return code
    files.make_folder(args.output.parent)
    save_json(to_pose_keypoint(out, args.threshold), args.output)
    if args.render is not None:
        files.make_folder(args.render)
        for i, frame in enumerate(tqdm(out, desc="render", unit="frame", disable=len(out) < 2)):
            save_image(cli._draw(frame, args), args.render / f"{args.output.stem}_{i:05d}.png")
    where = f", maps in {args.render}" if args.render is not None else ""
    print(
        f"{args.driving} -> {args.output} ({len(out)} frames on the reference's "
        f"{reference.width}x{reference.height} canvas{where})"
    )
    return cli.EXIT_OK


def _reference(args: argparse.Namespace) -> PoseFrame:
    """The reference frame: the first of a POSE_KEYPOINT file, or DWPose on an image."""
    from . import cli

    if args.reference.suffix.lower() in JSON_SUFFIXES:
        frames = load_json(args.reference)
        if not frames:
            raise ValueError(f"{args.reference}: the POSE_KEYPOINT file holds no frames")
        frame = frames[0]
    else:
        frame = cli._estimator(args, args.max_people)(load_image(args.reference))
    if len(frame) == 0:
        raise ValueError(f"{args.reference}: nobody found in the reference")
    return frame


def _ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected ids like 0,2, got {text!r}") from exc


def _one(ids: list[int] | None) -> int | list[int] | None:
    return ids[0] if ids is not None and len(ids) == 1 else ids
