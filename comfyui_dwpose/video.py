"""Videos in, poses out: decoding, the tracked estimator, and the files written per video.

Decoding is PyAV's (any codec and container ffmpeg reads). Frames are turned upright from
the rotation metadata, keep their own timestamps (variable frame rates stay variable), and
stream through: memory holds the models, the frames of the smoother's look-ahead and no
more, whatever the length of the video.

Per video STEM, in the output folder:
  STEM.mp4          the pose maps, H.264, same frame count, timestamps and size as the
                    source (as displayed); yuv420p, or yuv444p when a side is odd (4:2:0
                    cannot store odd sizes; some browsers do not play 4:4:4)
  STEM_overlay.mp4  optional: the maps drawn over the source frames
  STEM.json         POSE_KEYPOINT, one entry per frame, track ids as "person_id"
  STEM.npz          keypoints, scores, boxes, box_scores, track_ids of all people of all
                    frames in rows (float32/int64), offsets (frame i is rows
                    offsets[i]:offsets[i+1]), times (seconds), width, height, fps
  STEM_frames/      optional: one PNG map per frame
Everything is written under temporary names unique to the process (files.py) and renamed
when the video is done, so a video whose outputs all exist is finished (and skipped on
resume), and one interrupted is redone. One process at a time writes a video's outputs
(an advisory lock in `.dwpose-locks/`); partials that a killed run left are removed by the
next one. An output that would replace the input is refused before any work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from . import files
from .extras import require
from .images import save_image
from .render import render_pose
from .result import DEFAULT_THRESHOLD, PoseFrame
from .temporal import PersonSelector, Smoother, TrackingEstimator, finish

VIDEO_SUFFIXES = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".flv", ".wmv", ".3gp", ".ogv", ".gif",
}  # fmt: skip


class VideoError(ValueError):
    """A video that cannot be read, or not to the end: the message names the file and why."""


class Stopped(Exception):
    """`convert_video` was asked to stop (its `stop` event was set); nothing of it is left."""


def _av():
    return require("av", "reading and writing videos")


# ---------------------------------------------------------------------------- reading


@dataclass
class VideoInfo:
    """What the container says about its first video stream; sizes as displayed (rotated)."""

    width: int
    height: int
    fps: float  # average frame rate
    frames: int | None  # declared frame count, None when the container does not say
    rotation: int  # degrees counter-clockwise the stored frames are turned for display
    time_base: Fraction
    duration: float | None  # seconds, of the video stream, when declared


@dataclass
class Frame:
    """One decoded frame: its index, time in seconds and pts (in `VideoInfo.time_base`)
    as the source has them, and the upright RGB image."""

    index: int
    time: float
    pts: int
    image: np.ndarray | None


def probe(path: str | os.PathLike) -> VideoInfo:
    """The facts of a video file, or `VideoError` saying why it cannot be read. The rotation
    is only on the frames: the first one is decoded to learn it."""
    av = _av()
    with _open(path) as container:
        info = _info(container, path)
        try:
            first = next(container.decode(video=0), None)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: cannot decode its first frame ({exc})") from exc
    rotation = round(first.rotation / 90) % 4 * 90 if first is not None else 0
    if rotation % 180:
        info.width, info.height = info.height, info.width
    return dataclasses.replace(info, rotation=rotation)


def read_frames(path: str | os.PathLike) -> Iterator[Frame]:
    """Decode every frame, upright, in presentation order. A decoding error, or fewer frames
    than the container declares (a truncated file), raises `VideoError` at that point."""
    av = _av()
    with _open(path) as container:
        info = _info(container, path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count, last = 0, None
        try:
            for decoded in container.decode(stream):
                pts = decoded.pts if decoded.pts is not None else count
                if last is not None and pts <= last:
                    pts = last + 1  # broken timestamps: keep the order, strictly increasing
                image = decoded.to_ndarray(format="rgb24")
                turns = round(decoded.rotation / 90) % 4
                if turns:
                    image = np.ascontiguousarray(np.rot90(image, turns))
                yield Frame(count, float(pts * info.time_base), pts, image)
                count, last = count + 1, pts
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: corrupt or truncated after {count} frames ({exc})") from exc
        _check_complete(path, info, count, last)


def _open(path):
    av = _av()
    path = Path(path)
    if not path.is_file():
        if not path.exists() and is_glob(str(path)):
            raise VideoError(f"{path}: no file matches this pattern")
        raise VideoError(f"{path}: no such video file")
    try:
        container = av.open(os.fspath(path))
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: not a video ffmpeg can read ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def _info(container, path) -> VideoInfo:
    """The stream's facts as stored (rotation 0, sizes not turned)."""
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 30.0
    time_base = stream.time_base or Fraction(1, 1000)
    duration = None
    if stream.duration:
        duration = float(stream.duration * time_base)
    elif "DURATION" in stream.metadata:  # Matroska keeps it as a tag
        h, m, s = stream.metadata["DURATION"].split(":")
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    width, height = stream.codec_context.width, stream.codec_context.height
    if not width or not height:
        raise VideoError(f"{path}: the video stream has no picture size")
    return VideoInfo(width, height, fps, stream.frames or None, 0, time_base, duration)


def _check_complete(path, info: VideoInfo, count: int, last: int | None) -> None:
    if info.frames and count < info.frames:
        raise VideoError(
            f"{path}: truncated: decoded {count} of the {info.frames} frames it declares"
        )
    if info.duration and count:
        end = float(last * info.time_base) + 1.0 / info.fps
        if end + 2.0 / info.fps < info.duration:
            raise VideoError(
                f"{path}: truncated: frames end at {end:.2f} s of the {info.duration:.2f} s "
                "it declares"
            )


# ---------------------------------------------------------------------------- poses


def iter_poses(
    path: str | os.PathLike,
    estimator: Any,
    *,
    detect_every: int = 8,
    smooth: bool = True,
    lookahead: int | None = 20,
    max_gap: int = 8,
    people: int | Collection[int] | None = None,
    keep_images: bool = False,
    batch_frames: int = 8,
    on_frame: Callable[[], None] | None = None,
) -> Iterator[tuple[Frame, PoseFrame]]:
    """Tracked, smoothed poses of a video, streamed: (pose, frame) in order.

    estimator: a `DWPose`. detect_every: run the detector on every N-th frame (and whenever
    tracking weakens); 1 is the per-frame pipeline. smooth, lookahead, max_gap: see
    `temporal.Smoother` (lookahead in frames; 0 streams without delay). people: None for
    everyone, N for the N largest people, or a collection of track ids. keep_images: keep
    each frame's image (for overlays), else `Frame.image` is None. batch_frames: frames
    per estimator call when the detector runs on every frame. on_frame: called as each
    frame is estimated (progress).
    """
    tracking = TrackingEstimator(estimator, detect_every)
    return _poses(
        read_frames(path), tracking, smooth, lookahead, max_gap, people, keep_images,
        batch_frames, on_frame,
    )  # fmt: skip


def track_frames(
    images: Iterable[np.ndarray],
    tracking: TrackingEstimator,
    *,
    fps: float = 30.0,
    smooth: bool = True,
    lookahead: int | None = 20,
    max_gap: int = 8,
    people: int | Collection[int] | None = None,
    batch_frames: int = 8,
    on_frame: Callable[[], None] | None = None,
) -> Iterator[PoseFrame]:
    """`iter_poses` for frames already decoded (e.g. a ComfyUI IMAGE batch), `fps` apart:
    the same engine, so the same poses as `dwpose video` gives for the same frames.
    tracking: a `TrackingEstimator` (its `detections` counts the detector's frames)."""
    frames = (Frame(i, i / fps, i, image) for i, image in enumerate(images))
    poses = _poses(
        frames, tracking, smooth, lookahead, max_gap, people, False, batch_frames, on_frame
    )
    return (pose for pose, _ in poses)


def _poses(
    frames, tracking, smooth, lookahead, max_gap, people, keep_images, batch_frames, on_frame
):
    smoother = Smoother(lookahead, max_gap) if smooth else None
    tracked = _tracked(frames, tracking, keep_images, batch_frames, on_frame)
    return finish(tracked, smoother, PersonSelector(people))


def _tracked(frames, tracking: TrackingEstimator, keep_images: bool, batch_frames: int, on_frame):
    batch: list[Frame] = []
    size = batch_frames if tracking.detect_every == 1 else 1
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield from _estimate(batch, tracking, keep_images, on_frame)
            batch = []
    yield from _estimate(batch, tracking, keep_images, on_frame)


def _estimate(batch: list[Frame], tracking, keep_images: bool, on_frame):
    if not batch:
        return
    poses = tracking([f.image for f in batch])
    for frame, pose in zip(batch, poses):
        if not keep_images:
            frame.image = None
        if on_frame:
            on_frame()
        yield pose, frame.time, frame


# ---------------------------------------------------------------------------- writing


@dataclass
class Drawing:
    """How maps are drawn (see `render.render_pose`); threshold also applies to the JSON."""

    threshold: float = DEFAULT_THRESHOLD
    body: bool = True
    hands: bool = True
    face: bool = True
    feet: bool = False
    stick_width: int | str = 4

    def __call__(self, pose: PoseFrame) -> np.ndarray:
        return render_pose(pose, **dataclasses.asdict(self))


class VideoWriter:
    """H.264 in MP4 at the source's size and timestamps; yuv420p, or yuv444p for odd sizes."""

    def __init__(self, path: Path, info: VideoInfo):
        av = _av()
        self.container = av.open(os.fspath(path), "w", format="mp4")
        self.stream = self.container.add_stream(
            "libx264", rate=Fraction(info.fps).limit_denominator(100000)
        )
        self.stream.width, self.stream.height = info.width, info.height
        odd = info.width % 2 or info.height % 2
        self.stream.pix_fmt = "yuv444p" if odd else "yuv420p"
        self.stream.codec_context.time_base = info.time_base
        self.stream.options = {"crf": "18", "preset": "fast"}  # visually lossless, quick
        self.time_base = info.time_base
        self.start: int | None = None
        self._av = av

    def write(self, image: np.ndarray, pts: int) -> None:
        if self.start is None:
            self.start = pts  # the pose video starts at 0, whatever the source's first pts
        frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts - self.start, self.time_base
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        self.container.mux(self.stream.encode())
        self.container.close()

    def abort(self) -> None:
        self.container.close()


class JsonWriter:
    """POSE_KEYPOINT written frame by frame: the list never sits in memory whole."""

    def __init__(self, path: Path, threshold: float):
        self.file = path.open("w")
        self.threshold = threshold
        self.first = True

    def write(self, pose: PoseFrame) -> None:
        self.file.write("[" if self.first else ",")
        self.file.write(json.dumps(pose.to_pose_keypoint(self.threshold), allow_nan=False))
        self.first = False

    def close(self) -> None:
        self.file.write("[]" if self.first else "]")
        self.file.close()

    def abort(self) -> None:
        self.file.close()


NPZ_ROWS = {  # field: (dtype, shape of one person)
    "keypoints": (np.float32, (133, 2)),
    "scores": (np.float32, (133,)),
    "boxes": (np.float32, (4,)),
    "box_scores": (np.float32, ()),
    "track_ids": (np.int64, ()),
}


class NpzWriter:
    """The compact record: rows of people go to raw files beside the output as they come,
    and become one .npz at the end through memory maps (memory stays flat)."""

    def __init__(self, path: Path, info: VideoInfo):
        self.path, self.info = path, info
        self.parts = {name: path.with_name(f"{path.name}.{name}") for name in NPZ_ROWS}
        self.files = {name: part.open("wb") for name, part in self.parts.items()}
        self.offsets, self.times = [0], []

    def write(self, pose: PoseFrame, time: float) -> None:
        ids = pose.track_ids if pose.track_ids is not None else np.full(len(pose), -1)
        values = {
            "keypoints": pose.keypoints, "scores": pose.scores, "boxes": pose.boxes,
            "box_scores": pose.box_scores, "track_ids": ids,
        }  # fmt: skip
        for name, (dtype, _) in NPZ_ROWS.items():
            self.files[name].write(np.ascontiguousarray(values[name], dtype).tobytes())
        self.offsets.append(self.offsets[-1] + len(pose))
        self.times.append(time)

    def close(self) -> None:
        for file in self.files.values():
            file.close()
        rows = self.offsets[-1]
        arrays = {
            name: np.memmap(self.parts[name], dtype, "r", shape=(rows, *shape))
            if rows
            else np.zeros((0, *shape), dtype)
            for name, (dtype, shape) in NPZ_ROWS.items()
        }
        with self.path.open("wb") as file:
            np.savez(
                file, **arrays, offsets=np.array(self.offsets, np.int64),
                times=np.array(self.times), width=self.info.width, height=self.info.height,
                fps=self.info.fps,
            )  # fmt: skip
        del arrays
        self.abort()

    def abort(self) -> None:
        """Remove the raw row files (also after `close`: the .npz holds their data)."""
        for name, part in self.parts.items():
            self.files[name].close()
            part.unlink(missing_ok=True)


@dataclass
class Outputs:
    """Which files to write for each video."""

    overlay: bool = False
    frames: bool = False

    def names(self, stem: str) -> dict[str, str]:
        names = {"video": f"{stem}.mp4", "json": f"{stem}.json", "npz": f"{stem}.npz"}
        if self.overlay:
            names["overlay"] = f"{stem}_overlay.mp4"
        if self.frames:
            names["frames"] = f"{stem}_frames"
        return names


def is_done(output_dir: Path, stem: str, outputs: Outputs) -> bool:
    """All outputs of a video exist: it was finished (each one is renamed into place only
    once written whole, after the whole video)."""
    return all((output_dir / name).exists() for name in outputs.names(stem).values())


def convert_video(
    path: str | os.PathLike,
    output_dir: str | os.PathLike,
    estimator: Any,
    *,
    outputs: Outputs | None = None,
    drawing: Drawing | None = None,
    detect_every: int = 8,
    smooth: bool = True,
    lookahead: int | None = 20,
    max_gap: int = 8,
    people: int | Collection[int] | None = None,
    batch_frames: int = 8,
    on_frame: Callable[[], None] | None = None,
    overwrite: bool = True,
    wait: bool = True,
    stop: threading.Event | None = None,
) -> dict:
    """Write the outputs of one video (module docstring); options as for `iter_poses`.

    Returns what was done: frames, people (track ids seen), detections (frames the
    detector ran on), outputs, done_before (True, and nothing else done, when `overwrite`
    is False and the outputs exist). Another process writing the same outputs is waited
    for, or with `wait=False` is a `files.OutputBusy`. Setting `stop` ends the work after
    the current batch of frames with `Stopped`. A bad or truncated video raises
    `VideoError`, an output that would replace the input or cannot be written
    `files.OutputError`; either way no output of the video is left half-written.
    """
    path, output_dir = Path(path), Path(output_dir)
    outputs, drawing = outputs or Outputs(), drawing or Drawing()
    final = {key: output_dir / name for key, name in outputs.names(path.stem).items()}
    files.refuse_inputs(final.values(), [path])
    info = probe(path)
    files.make_folder(output_dir)
    with contextlib.ExitStack() as held:
        _lock(held, output_dir / path.stem, wait, stop)
        for target in final.values():
            files.clean_partials(target)
        if not overwrite and is_done(output_dir, path.stem, outputs):
            return {"done_before": True, "outputs": list(final.values())}
        temp = {key: files.partial_name(p) for key, p in final.items()}
        writers: dict[str, Any] = {}
        tracking = TrackingEstimator(estimator, detect_every)

        def progress() -> None:
            _check(stop)
            if on_frame is not None:
                on_frame()

        try:
            writers["video"] = VideoWriter(temp["video"], info)
            if outputs.overlay:
                writers["overlay"] = VideoWriter(temp["overlay"], info)
            writers["json"] = JsonWriter(temp["json"], drawing.threshold)
            writers["npz"] = NpzWriter(temp["npz"], info)
            if outputs.frames:
                temp["frames"].mkdir()
            count, people_seen = 0, set()
            poses = _poses(
                read_frames(path), tracking, smooth, lookahead, max_gap, people, outputs.overlay,
                batch_frames, progress,
            )  # fmt: skip
            for pose, frame in poses:
                pose_map = drawing(pose)
                writers["video"].write(pose_map, frame.pts)
                if outputs.overlay:
                    writers["overlay"].write(_overlay(frame.image, pose_map), frame.pts)
                writers["json"].write(pose)
                writers["npz"].write(pose, frame.time)
                if outputs.frames:
                    save_image(pose_map, temp["frames"] / f"{count:06d}.png")
                count += 1
                people_seen.update(pose.track_ids.tolist())
            if count == 0:
                raise VideoError(f"{path}: has no video frames")
            for writer in writers.values():
                writer.close()
            writers.clear()
            for key in final:
                files.commit(temp[key], final[key])
        except OSError as exc:
            raise files.OutputError(
                f"cannot write the outputs of {path.name} in {output_dir}: {files.reason(exc)}",
                exc.errno,
            ) from exc
        finally:
            for writer in writers.values():  # only after an error, which is the one reported
                with contextlib.suppress(Exception):
                    writer.abort()
            files.remove(temp.values())
    return {
        "frames": count, "people": len(people_seen), "detections": tracking.detections,
        "outputs": list(final.values()), "done_before": False,
    }  # fmt: skip


def _lock(held: contextlib.ExitStack, stem: Path, wait: bool, stop: threading.Event | None) -> None:
    """Take the lock of a video's outputs into `held`: at once or `OutputBusy`, or waiting
    in steps so that `stop` is heard meanwhile."""
    while True:
        try:
            held.enter_context(files.locked(stem, 1.0 if wait else 0))
            return
        except files.OutputBusy:
            if not wait:
                raise
            _check(stop)


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Stopped("stopped")


def _overlay(image: np.ndarray, pose_map: np.ndarray) -> np.ndarray:
    """The map over the source frame: drawn pixels replace the frame's."""
    return np.where(pose_map.any(axis=2, keepdims=True), pose_map, image)


def collect_videos(inputs: list[str]) -> list[Path]:
    """Files, folders (their videos, sorted) and glob patterns, in the order given. A missing
    file, or a pattern that matches nothing, stays in the list: it is reported when read."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        elif not path.exists() and is_glob(item):
            anchor = Path(path.anchor or ".")
            pattern = str(path.relative_to(anchor)) if path.is_absolute() else item
            found += sorted(p for p in anchor.glob(pattern) if p.is_file()) or [path]
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def is_glob(text: str) -> bool:
    return re.search(r"[*?\[]", text) is not None


# ---------------------------------------------------------------------------- batches


def convert_one(path: Path, output_dir: Path, estimator: Any, options: dict) -> dict:
    """`convert_video` for a batch: how it ended, whatever happened, as a dict (a bad video
    is an outcome to report, not an exception that ends the batch): video, status
    ("written", "skipped" when done before, "failed"), frames, seconds, error, outputs."""
    began = time.monotonic()
    outcome: dict = {"video": str(path), "status": "failed", "frames": 0, "error": None}
    try:
        done = convert_video(path, output_dir, estimator, **options)
    except (ValueError, files.OutputError) as exc:
        outcome["error"] = str(exc)
    except Exception as exc:
        outcome["error"] = f"{path}: {type(exc).__name__}: {exc}"
    else:
        outcome["status"] = "skipped" if done["done_before"] else "written"
        outcome["frames"] = done.get("frames", 0)
        outcome["outputs"] = [str(p) for p in done["outputs"]]
    outcome["seconds"] = round(time.monotonic() - began, 3)
    return outcome


def convert_videos(
    videos: Collection[str | os.PathLike],
    output_dir: str | os.PathLike,
    estimator: Any,
    *,
    ray: str | None = None,
    actors: int | None = None,
    summary: str | os.PathLike | None = None,
    **options: Any,
) -> list[dict]:
    """Convert many videos; each one's outcome (`convert_one`), in the order given.

    Without `ray`, here, one after the other, with `estimator` (a `DWPose`). With `ray`
    ("" for a new Ray cluster on this machine, or an address such as "auto" or
    "ray://head:10001"), on Ray actors (video_ray.py): `estimator` is then a picklable
    function that makes one in each actor, e.g. functools.partial(DWPose, "yolox_l.onnx",
    "dw-ll_ucoco_384.onnx"), and `actors` says how many (default one per GPU, else one per
    4 cores). summary: a JSON file to write the outcomes to. options: as for
    `convert_video` (outputs, drawing, detect_every, overwrite, ...).
    """
    paths, output_dir = [Path(v) for v in videos], Path(output_dir)
    summary = Path(summary) if summary is not None else None
    if ray is not None:
        from . import video_ray

        return video_ray.convert_videos(
            paths, output_dir, estimator, options, address=ray, actors=actors, summary=summary
        )
    outcomes = [convert_one(path, output_dir, estimator, options) for path in paths]
    if summary is not None:
        files.write_text(summary, json.dumps(outcomes, indent=1) + "\n")
    return outcomes
