"""`dwpose video`: videos, folders of them and glob patterns into pose videos and keypoints.

Each video is tracked and smoothed (comfyui_dwpose.temporal) and written as video.py
describes. Finished videos are skipped (resume) unless --overwrite; a bad or truncated one
is reported and the batch goes on. --workers N converts N videos at once, in threads that
share one estimator (onnxruntime sessions run from several threads). A video another
dwpose run is writing is left to it first and waited for at the end, so two runs over the
same folder share the work. Ctrl-C stops every video within one batch of frames.

Beyond one process: --batch-videos sends the frames of the N videos through the models in
common batches (video_pipeline.py, for GPUs); --ray spreads videos over a Ray cluster
(video_ray.py); --shard I/N takes every N-th video, for schedulers without Ray.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from . import files
from .video import Drawing, Outputs, Stopped, collect_videos, convert_video, is_glob, probe
from .video_pipeline import BatchingEstimator, streaming

SUMMARY = "dwpose-summary.json"  # --ray's record of the run, in the output folder


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
    parser.add_argument("--workers", type=positive_int, help="videos converted at once (default 1)")
    parser.add_argument(
        "--overwrite", action="store_true", help="redo videos whose outputs already exist"
    )
    parser.add_argument(
        "--batch-videos",
        action="store_true",
        help="with --workers N: the N videos' frames go through the models together, one "
        "detector and one pose batch per step (for GPUs: keeps them busy)",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="convert only part I of N (I from 0 to N-1) of the sorted videos: N runs, e.g. "
        "the tasks of a Slurm array or a Kubernetes indexed job, share the list between them",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="convert on a Ray cluster (docs/scale-out.md): at ADDRESS (auto, ray://head:10001) "
        "or, without one, a new cluster on this machine; --workers then counts actors (default "
        "one per GPU, else one per 4 cores); the output folder must be one every node sees",
    )
    parser.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="with --ray: each video's status, frames, time and error as JSON (default "
        "OUTPUT/dwpose-summary.json)",
    )


def _ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected ids like 0,2, got {text!r}") from exc


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        shard = (-1, 0)
    if not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, e.g. 0/4, got {text!r}")
    return shard


def shard_of(videos: list[Path], index: int, count: int) -> list[Path]:
    """Part `index` of `count` of the videos: every count-th of the sorted list, from the
    index-th. The same list on every machine gives each video to exactly one part."""
    return sorted(videos)[index::count]


def videos_of(args: argparse.Namespace) -> list[Path]:
    """The videos to convert (this shard's part of them with --shard); ValueError (a usage
    error) when there are none, two share a name, or an option does not apply to videos."""
    if args.resolution:
        raise ValueError("pose videos keep the source's size: --resolution is for images")
    if args.ray is None and args.summary:
        raise ValueError("--summary goes with --ray")
    if args.ray is not None and args.batch_videos:
        raise ValueError("--batch-videos is for one machine: each Ray actor converts one video")
    videos = collect_videos(args.inputs)
    if all(is_glob(str(p)) and not p.exists() for p in videos):
        raise ValueError(f"no videos found in {' '.join(args.inputs)}")
    stems: dict[str, Path] = {}
    for path in videos:
        if path.stem in stems:
            raise ValueError(f"{stems[path.stem]} and {path} would both write {path.stem}.mp4")
        stems[path.stem] = path
    if not args.shard:
        return videos
    part = shard_of(videos, *args.shard)
    if not part:
        index, count = args.shard
        tqdm.write(f"shard {index}/{count}: none of the {len(videos)} videos is in it")
    return part


def planned_outputs(args: argparse.Namespace, videos: list[Path]) -> list[Path]:
    """Every path the run may write (to refuse any that is an input)."""
    outputs = Outputs(overlay=args.overlay, frames=args.frames)
    return [args.output / name for path in videos for name in outputs.names(path.stem).values()]


@dataclass
class Report:
    """How each video ended: written, skipped (done before), failed, or not finished
    (Ctrl-C, or the output folder stopped taking files)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    unfinished: list[Path] = field(default_factory=list)
    interrupted: bool = False


def options_of(args: argparse.Namespace) -> dict:
    """The keyword arguments of `video.convert_video` that the options ask for."""
    lookahead = max(args.lookahead, 0)
    return {
        "outputs": Outputs(overlay=args.overlay, frames=args.frames),
        "drawing": Drawing(
            args.threshold, args.body, args.hands, args.face, args.feet, args.stick_width
        ),
        "detect_every": args.detect_every,
        "smooth": args.smooth,
        "lookahead": lookahead,
        "max_gap": min(max(args.max_gap, 0), max(lookahead - 1, 0)),
        "people": args.track_ids or args.max_people,
        "overwrite": args.overwrite,
    }


def run(args: argparse.Namespace, videos: list[Path], estimator) -> Report:
    """Convert the videos (each failure reported on stderr as it happens)."""
    options, workers = options_of(args), args.workers or 1
    if args.batch_videos:
        estimator = BatchingEstimator(estimator)
    report, stop = Report(), threading.Event()
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(workers):
        slots.put(slot + 1)
    overall = tqdm(
        total=len(videos), desc="videos", unit="video", position=0, disable=len(videos) < 2
    )

    def one(path: Path, wait_for_others: bool) -> str:
        slot = slots.get()
        try:
            with streaming(estimator):
                return _convert(path, args.output, estimator, options, slot, wait_for_others, stop)
        finally:
            slots.put(slot)

    busy: list[Path] = []
    with ThreadPoolExecutor(workers) as pool:
        running: dict = {}
        try:
            for wait_for_others, todo in ((False, videos), (True, busy)):
                if wait_for_others and todo:
                    names = ", ".join(p.name for p in todo)
                    tqdm.write(f"waiting for another dwpose run to finish {names}")
                running = {pool.submit(one, p, wait_for_others): p for p in todo}
                while running:
                    # Wake up now and then: a Ctrl-C that a native thread received reaches
                    # the main thread only when it runs Python again.
                    done, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
                    for future in done:
                        path, status = running.pop(future), future.result()
                        if status == "busy":
                            busy.append(path)
                            continue
                        overall.update()
                        _record(report, path, status)
                        if status == "fatal":
                            stop.set()
        except KeyboardInterrupt:
            report.interrupted = True
            stop.set()
            for future in running:
                future.cancel()
            for future, path in running.items():  # each stops within a batch of frames
                _record(report, path, "stopped" if future.cancelled() else future.result())
            outcomes = {*report.written, *report.skipped, *report.failed, *report.unfinished}
            report.unfinished += [p for p in videos if p not in outcomes]
    overall.close()
    return report


def run_on_ray(args: argparse.Namespace, videos: list[Path], make_estimator) -> Report:
    """Convert the videos on Ray (video_ray.py), each actor with the estimator that
    `make_estimator` makes; the summary JSON written as the run ends."""
    from .video_ray import convert_videos

    device = args.device.lower()
    gpus = False if device == "cpu" else True if device.startswith(("cuda", "rocm")) else None
    outcomes = convert_videos(
        videos, args.output, make_estimator, options_of(args), address=args.ray,
        actors=args.workers, gpus=gpus, summary=args.summary or args.output / SUMMARY,
    )  # fmt: skip
    report = Report()
    for path, outcome in zip(videos, outcomes):
        _record(report, path, outcome["status"])
    report.interrupted = bool(report.unfinished)  # only Ctrl-C leaves videos unfinished
    return report


def _record(report: Report, path: Path, status: str) -> None:
    if status in ("written", "skipped", "failed"):
        getattr(report, status).append(path)
    else:  # stopped, fatal (it stopped the others), busy (never started)
        report.unfinished.append(path)


def _convert(path: Path, output: Path, estimator, options: dict, slot: int, wait_for_others: bool,
             stop: threading.Event) -> str:  # fmt: skip
    """One video: "written", "skipped", "failed", "busy", "stopped" or "fatal" (an output
    error that every later video would meet too)."""
    try:
        info = probe(path)
        total = info.frames or (round(info.duration * info.fps) if info.duration else None)
        with tqdm(total=total, desc=path.name, unit="frame", position=slot, leave=False) as bar:
            done = convert_video(
                path, output, estimator, on_frame=bar.update, wait=wait_for_others, stop=stop,
                **options,
            )  # fmt: skip
    except files.OutputBusy:
        return "busy"
    except Stopped:
        return "stopped"
    except files.OutputError as exc:
        tqdm.write(f"dwpose: error: {exc}", file=sys.stderr)
        return "fatal" if exc.fatal else "failed"
    except Exception as exc:  # one bad video never stops the batch; it is reported
        message = (
            str(exc) if isinstance(exc, ValueError) else f"{path}: {type(exc).__name__}: {exc}"
        )
        tqdm.write(f"dwpose: error: {message} (skipped)", file=sys.stderr)
        return "failed"
    if done["done_before"]:
        tqdm.write(f"{path}: done before, skipped (--overwrite redoes it)")
        return "skipped"
    share = done["detections"] / done["frames"]
    tqdm.write(
        f"{path} -> {output / path.stem}.mp4, .json, .npz ({done['frames']} frames, "
        f"{done['people']} people tracked, detector on {share:.0%} of frames)"
    )
    return "written"
