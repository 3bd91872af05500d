"""Videos over a Ray cluster: `dwpose video ... --ray [ADDRESS]`, `video.convert_videos(ray=)`.

Ray (https://docs.ray.io) schedules; this module only says what runs where. One actor per
GPU (or per group of CPU cores) loads the models once and converts whole videos, one at a
time (tracking and smoothing need a video's frames in order), with `video.convert_video`:
its outputs go straight to the output folder, which every node must see (a shared
filesystem), under temporary names renamed when the video is done, so resume and locking
work as for one machine. A video whose actor dies (a killed or lost node, a crash in a
decoder) is given to another actor, at most `RETRIES` times, then reported failed; the
other videos go on. The driver shows one progress bar and writes a summary JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import files
from .extras import require

RETRIES = 2  # a video whose actor dies is tried again on another, this many times at most
CPUS_PER_ACTOR = 4  # without GPUs: one actor per this many cores when --workers is not given


class VideoActor:
    """Holds one estimator for the actor's life; converts the videos it is given."""

    def __init__(self, make_estimator: Callable[[], Any]):
        self.estimator = make_estimator()

    def ready(self) -> int:
        return os.getpid()

    def convert(self, path: str, output_dir: str, options: dict) -> dict:
        from .video import convert_one

        return convert_one(Path(path), Path(output_dir), self.estimator, options)


def connect(address: str | None):
    """Ray, connected: to the cluster at `address` ("auto", "ray://head:10001", ...), or to
    a new one on this machine when `address` is empty; a session already started in this
    process (ray.init by the caller) is used as it is."""
    ray = require("ray", "--ray")
    if not ray.is_initialized():
        ray.init(address=address or "local", log_to_driver=False)
    return ray


def actor_resources(ray, gpus: bool | None, actors: int | None) -> tuple[int, dict]:
    """How many actors, and what each one reserves: a GPU each, or a share of the cores
    (a fraction of one when there are more actors than GPUs or cores: all of them start).
    gpus None: GPUs when the cluster has any."""
    total = ray.cluster_resources()
    cpus, gpu_count = total.get("CPU", 1), total.get("GPU", 0)
    if gpus is None:
        gpus = gpu_count > 0
    if gpus:
        if gpu_count < 1:
            raise RuntimeError("the Ray cluster has no GPUs: use --device cpu")
        count = actors or int(gpu_count)
        return count, {"num_gpus": min(1, gpu_count / count), "num_cpus": min(1, cpus / count)}
    count = actors or max(1, int(cpus) // CPUS_PER_ACTOR)
    share = cpus / count
    return count, {"num_cpus": int(share) if share >= 1 else share}


def convert_videos(
    videos: Sequence[Path],
    output_dir: Path,
    make_estimator: Callable[[], Any],
    options: dict,
    *,
    address: str | None = None,
    actors: int | None = None,
    gpus: bool | None = None,
    summary: Path | None = None,
) -> list[dict]:
    """Convert the videos on Ray actors; each video's outcome (`video.convert_one`), in the
    order given. make_estimator: makes the estimator in each actor (picklable: a
    functools.partial of DWPose, say). actors: how many (default one per GPU, else one per
    CPUS_PER_ACTOR cores). gpus: one GPU per actor (None: when the cluster has GPUs).
    summary: where to write the outcomes as JSON. Ctrl-C stops every video: those not
    done are "unfinished"."""
    ray = connect(address)
    from ray.exceptions import RayActorError

    count, resources = actor_resources(ray, gpus, actors)
    Actor = ray.remote(**resources)(VideoActor)
    everyone = [Actor.remote(make_estimator) for _ in range(min(count, len(videos)))]
    try:
        ray.get([actor.ready.remote() for actor in everyone])
    except RayActorError as exc:
        for actor in everyone:
            ray.kill(actor)
        raise RuntimeError(f"the Ray workers could not load the models: {_cause(exc)}") from None

    outcomes: dict[int, dict] = {}
    todo = deque((i, 0) for i in range(len(videos)))  # (video, attempts so far)
    running: dict[Any, tuple[Any, int, int, float]] = {}
    idle = list(everyone)
    frames, start = 0, time.monotonic()
    bar = tqdm(total=len(videos), desc="videos", unit="video")
    try:
        while todo or running:
            while idle and todo:
                actor, (i, attempts) = idle.pop(), todo.popleft()
                ref = actor.convert.remote(str(videos[i]), str(output_dir), options)
                running[ref] = (actor, i, attempts, time.monotonic())
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in done:
                actor, i, attempts, began = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                    idle.append(actor)
                except RayActorError as exc:
                    everyone.append(Actor.remote(make_estimator))  # in place of the dead one
                    idle.append(everyone[-1])
                    if attempts < RETRIES:
                        todo.appendleft((i, attempts + 1))
                        tqdm.write(f"{videos[i]}: its worker died, trying again")
                        continue
                    _remove_partials(videos[i], output_dir, options)
                    outcome = {
                        "video": str(videos[i]), "status": "failed", "frames": 0,
                        "seconds": round(time.monotonic() - began, 3),
                        "error": f"its worker died {attempts + 1} times ({_cause(exc)})",
                    }  # fmt: skip
                outcome["attempts"] = attempts + 1
                outcomes[i] = outcome
                _tell(outcome)
                frames += outcome["frames"]
                bar.set_postfix_str(f"{frames / (time.monotonic() - start):.1f} frames/s")
                bar.update()
    except KeyboardInterrupt:
        tqdm.write("interrupted: stopping the Ray workers", file=sys.stderr)
    finally:
        bar.close()
        for actor in everyone:
            ray.kill(actor)  # a video stopped here leaves partials, removed by the next run
        stopped = {"status": "unfinished", "frames": 0, "error": "stopped before it was done"}
        results = [outcomes.get(i, {"video": str(v), **stopped}) for i, v in enumerate(videos)]
        if summary is not None:
            files.write_text(summary, json.dumps(results, indent=1) + "\n")
    return results


def _remove_partials(path: Path, output_dir: Path, options: dict) -> None:
    """What the dead actors left of a video they did not finish (the lock as the writers
    hold it: another run may be writing the same video)."""
    from .video import Outputs

    names = (options.get("outputs") or Outputs()).names(path.stem)
    with files.locked(output_dir / path.stem):
        for name in names.values():
            files.clean_partials(output_dir / name)


def _tell(outcome: dict) -> None:
    if outcome["status"] == "failed":
        tqdm.write(f"dwpose: error: {outcome['error']} (skipped)", file=sys.stderr)
    elif outcome["status"] == "skipped":
        tqdm.write(f"{outcome['video']}: done before, skipped (--overwrite redoes it)")
    else:
        tqdm.write(f"{outcome['video']} -> {outcome['outputs'][0]}, .json, .npz "
                   f"({outcome['frames']} frames)")  # fmt: skip


def _cause(exc: Exception) -> str:
    """The first line of Ray's long account of why an actor died."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
