"""`dwpose video`: videos, folders of them and glob patterns into pose videos and keypoints.

Each video is tracked and smoothed (comfyui_dwpose.temporal) and written as video.py
describes. Finished videos are skipped (resume) unless --overwrite; a bad or truncated one
is reported and the batch goes on. --workers N converts N videos at once, in threads that
share one estimator (onnxruntime sessions run from several threads).
"""

from __future__ import annotations

import argparse
import queue
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from .video import Drawing, Outputs, collect_videos, convert_video, is_done, probe


def add_options(parser: argparse.ArgumentParser, positive_int) -> None:
    parser.add_argument(
        "--detect-every",
        type=positive_int,
        default=8,
        help="run the detector on every N-th frame, and whenever tracking weakens (default 8; "
        "1: every frame)",
    )
    parser.add_argument(
        "--no-smooth", dest="smooth", action="store_false", help="do not smooth keypoints"
    )
    parser.add_argument(
        "--lookahead",
        type=int,
        default=20,
        help="frames the smoother looks ahead (default 20); 0 streams: no delay, no gap filling",
    )
    parser.add_argument(
        "--max-gap",
        type=int,
        default=8,
        help="fill dropouts of up to N frames by interpolation (default 8; at most lookahead-1)",
    )
    parser.add_argument(
        "--track-ids",
        type=_ids,
        help="keep only these tracked people, e.g. 0,2 (ids as in the JSON)",
    )
    parser.add_argument(
        "--overlay", action="store_true", help="also STEM_overlay.mp4: maps over the source frames"
    )
    parser.add_argument("--frames", action="store_true", help="also STEM_frames/: a PNG per frame")
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="videos converted at once (default 1)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo videos whose outputs already exist"
    )


def _ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected ids like 0,2, got {text!r}") from exc


def videos_of(args: argparse.Namespace) -> list[Path]:
    """The videos to convert; ValueError (a usage error) when there are none, two share a
    name, or an option does not apply to videos."""
    if args.resolution:
        raise ValueError("pose videos keep the source's size: --resolution is for images")
    videos = collect_videos(args.inputs)
    if not videos:
        raise ValueError(f"no videos found in {' '.join(args.inputs)}")
    stems: dict[str, Path] = {}
    for path in videos:
        if path.stem in stems:
            raise ValueError(f"{stems[path.stem]} and {path} would both write {path.stem}.mp4")
        stems[path.stem] = path
    return videos


def run(args: argparse.Namespace, videos: list[Path], estimator) -> list[Path]:
    """Convert the videos; returns those that failed (each reported on stderr)."""
    args.output.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(overlay=args.overlay, frames=args.frames)
    lookahead = max(args.lookahead, 0)
    options = {
        "outputs": outputs,
        "drawing": Drawing(
            args.threshold, args.body, args.hands, args.face, args.feet, args.stick_width
        ),
        "detect_every": args.detect_every,
        "smooth": args.smooth,
        "lookahead": lookahead,
        "max_gap": min(max(args.max_gap, 0), max(lookahead - 1, 0)),
        "people": args.track_ids or args.max_people,
    }
    todo = []
    for path in videos:
        if not args.overwrite and is_done(args.output, path.stem, outputs):
            print(f"{path}: done before, skipped (--overwrite redoes it)")
        else:
            todo.append(path)
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(args.workers):
        slots.put(slot + 1)
    overall = tqdm(total=len(todo), desc="videos", unit="video", position=0, disable=len(todo) < 2)

    def one(path: Path) -> Path | None:
        slot = slots.get()
        try:
            return _convert(path, args.output, estimator, options, slot)
        finally:
            slots.put(slot)
            overall.update()

    with ThreadPoolExecutor(args.workers) as pool:
        failed = [p for p in pool.map(one, todo) if p is not None]
    overall.close()
    return failed


def _convert(path: Path, output: Path, estimator, options: dict, slot: int) -> Path | None:
    try:
        info = probe(path)
        total = info.frames or (round(info.duration * info.fps) if info.duration else None)
        with tqdm(total=total, desc=path.name, unit="frame", position=slot, leave=False) as bar:
            done = convert_video(path, output, estimator, on_frame=bar.update, **options)
    except Exception as exc:  # one bad video never stops the batch; it is reported
        message = (
            str(exc) if isinstance(exc, ValueError) else f"{path}: {type(exc).__name__}: {exc}"
        )
        tqdm.write(f"dwpose: error: {message} (skipped)", file=sys.stderr)
        return path
    share = done["detections"] / done["frames"]
    tqdm.write(
        f"{path} -> {output / path.stem}.mp4, .json, .npz ({done['frames']} frames, "
        f"{done['people']} people tracked, detector on {share:.0%} of frames)"
    )
    return None
