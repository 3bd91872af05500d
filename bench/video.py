"""Video throughput: `dwpose video` with tracking and detector skipping against per-frame
pipelines, on the CPU, with DWPose's compute.

Video: 30 s, 512x512, 30 fps, H.264, coloured dancing figures (tests/followers.py), with
one and with three people. Models: YOLOX-L at 640x640 and RTMPose-l at 384x288 (DWPose-l's
architecture) from comfyui_dwpose.nets with seeded random weights, exported with the
official signatures. Random weights see nobody, so:
- ours runs them through tests/followers.py: every call runs the real ONNX model (its
  full compute) and then replaces the output with one that follows the figures (boxes
  around each figure, a whole-body template spread over the figure in the crop). Keypoint
  agreement and tracking therefore depend on these stand-ins; speed does not.
- rtmlib (0.0.16 `Wholebody`, onnxruntime defaults) gets the detector with planted
  detections (output = real output x 1e-3 + constant boxes at the figures' mean places),
  the approach of bench/speed.py: the whole YOLOX-L still runs and it finds the same number
  of people; its speed is what is compared.

Contenders, each in its own process (clean peak memory), taking turns on the first SHORT
seconds of the video (--rounds, rotating order, so that a neighbour's load hits all alike):
- ours, skipping: `video.convert_video` as `dwpose video` runs it (detector every 8th frame
  and whenever tracking weakens, tracking, smoothing, pose MP4 + JSON + npz written);
- ours, per-frame: the same with the detector on every frame (detect_every=1);
- rtmlib per-frame: decode with PyAV, `Wholebody(frame)` per frame, nothing written.
Then ours, skipping, once over the whole 30 s: its speed there, and its peak memory (VmHWM)
after 10 s and at the end, to show memory is flat in video length.
Keypoint agreement: skipping (no smoothing) against ours per-frame on the first seconds,
on the frames where the detector did not run: median distance in pixels.

Run:  python bench/video.py [--seconds 30] [--short 2] [--rounds 2]
Needs torch, onnx, onnxruntime, av, scipy and rtmlib (pip install --no-deps rtmlib==0.0.16:
its metadata pulls opencv-python, which would overwrite opencv-python-headless's cv2/).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from common import (  # noqa: E402
    CACHE,
    DET_SIZE,
    POSE_SIZE,
    machine_line,
    plant,
    planted_onnx,
    seeded_nets,
)
from followers import FollowingDetector, FollowingPose, draw_figures  # noqa: E402

SIZE = 512
FPS = 30
DETECT_EVERY = 8


# ---------------------------------------------------------------------------- inputs


def dancers(count: int, i: int) -> list[tuple]:
    """Figures (colour, x1, y1, x2, y2) at frame i: side by side, swaying, bobbing, their
    arms (width) opening and closing, at dance tempo."""
    t = i / FPS
    out = []
    for k in range(count):
        centre = SIZE * (k + 0.5) / count + 25 * math.sin(2 * math.pi * 0.4 * t + k)
        half_w = (45 if count > 1 else 80) * (1 + 0.3 * math.sin(2 * math.pi * 1.1 * t + 2 * k))
        top = 70 + 20 * math.sin(2 * math.pi * 0.9 * t + k)
        out.append((k, centre - half_w, top, centre + half_w, SIZE - 40))
    return out


def make_video(path: Path, count: int, seconds: float) -> Path:
    import av

    if path.exists():
        return path
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(round(seconds * FPS)):
            image = draw_figures((SIZE, SIZE), dancers(count, i))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    tmp.replace(path)
    return path


def models() -> tuple[Path, Path]:
    """YOLOX-L (fixed batch 1, as DWPose's yolox_l.onnx) and RTMPose-l 384x288, seeded as
    bench/speed.py seeds them (same files, same cache names)."""
    det_path, pose_path = CACHE / "yolox_l_raw.onnx", CACHE / "rtmpose_l_384x288.onnx"
    if det_path.exists() and pose_path.exists():
        return det_path, pose_path
    from comfyui_dwpose.nets import export_onnx

    detector, pose_net = seeded_nets()
    export_onnx(detector, det_path, DET_SIZE, dynamic_batch=False)
    export_onnx(pose_net, pose_path)
    return det_path, pose_path


def planted_detector(raw: Path, count: int) -> Path:
    """The raw detector whose output is raw x 1e-3 + constant boxes at the figures' mean
    places (for rtmlib, which loads files)."""
    boxes = [np.mean([dancers(count, i)[k][1:] for i in range(4 * FPS)], 0) for k in range(count)]
    ratio = min(DET_SIZE[0] / SIZE, DET_SIZE[1] / SIZE)
    path = CACHE / f"yolox_l_video_planted_{count}.onnx"
    return planted_onnx(raw, plant(np.array(boxes), ratio), path)


# ---------------------------------------------------------------------------- contenders


def peak_memory_mb() -> float:
    """VmHWM: the most resident memory this process has held so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def our_estimator(det: Path, pose: Path):
    from comfyui_dwpose import DWPose

    estimator = DWPose(det, pose, backend="onnxruntime", device="cpu")
    estimator.detector.model = FollowingDetector(DET_SIZE[0], estimator.detector.model)
    estimator.pose.model = FollowingPose(POSE_SIZE, estimator.pose.model)
    return estimator


WARMUP = 8  # frames left out of the timing: sessions warm up, the first batch forms


def steady_fps(stamps: list[float], end: float) -> float:
    """Frames per second after the first WARMUP frames, up to the end of all the work."""
    return (len(stamps) - WARMUP) / (end - stamps[WARMUP - 1])


def run_ours(video: Path, det: Path, pose: Path, detect_every: int, out: Path) -> dict:
    from comfyui_dwpose.video import convert_video

    estimator = our_estimator(det, pose)
    marks, stamps = {}, []

    def on_frame():
        stamps.append(time.perf_counter())
        if len(stamps) == 10 * FPS:
            marks["peak_mb_at_10s"] = peak_memory_mb()

    done = convert_video(video, out, estimator, detect_every=detect_every, on_frame=on_frame)
    return {
        "frames": done["frames"], "fps": steady_fps(stamps, time.perf_counter()),
        "detections": done["detections"], "people": done["people"], "peak_mb": peak_memory_mb(),
        **marks,
    }  # fmt: skip


def run_rtmlib(video: Path, det: Path, pose: Path) -> dict:
    import contextlib
    import io

    from rtmlib import Wholebody

    from comfyui_dwpose.video import read_frames

    with contextlib.redirect_stdout(io.StringIO()):
        wholebody = Wholebody(
            det=os.fspath(det), det_input_size=DET_SIZE, pose=os.fspath(pose),
            pose_input_size=POSE_SIZE[::-1], backend="onnxruntime", device="cpu",
        )  # fmt: skip
    people, stamps = set(), []
    for frame in read_frames(video):
        keypoints, _ = wholebody(np.ascontiguousarray(frame.image[:, :, ::-1]))
        people.add(len(keypoints))
        stamps.append(time.perf_counter())
    return {
        "frames": len(stamps), "fps": steady_fps(stamps, stamps[-1]), "people": sorted(people),
        "peak_mb": peak_memory_mb(),
    }  # fmt: skip


def run_agreement(video: Path, det: Path, pose: Path) -> dict:
    """Skipping against per-frame, no smoothing: distance of each tracked person's keypoints
    on the frames where the detector did not run."""
    from comfyui_dwpose.temporal import TrackingEstimator
    from comfyui_dwpose.video import read_frames

    estimator = our_estimator(det, pose)
    every, skipping = TrackingEstimator(estimator, 1), TrackingEstimator(estimator, DETECT_EVERY)
    distances, skipped, switches = [], 0, set()
    for frame in read_frames(video):
        a = every([frame.image])[0]
        before = skipping.detections
        b = skipping([frame.image])[0]
        switches.add(tuple(sorted(zip(a.track_ids.tolist(), b.track_ids.tolist()))))
        if skipping.detections > before:
            continue
        skipped += 1
        for n, track in enumerate(b.track_ids.tolist()):
            if track in a.track_ids:
                m = a.track_ids.tolist().index(track)
                distances += np.linalg.norm(a.keypoints[m] - b.keypoints[n], axis=-1).tolist()
    return {
        "median_px": float(np.median(distances)), "p95_px": float(np.percentile(distances, 95)),
        "skipped_frames": skipped, "frames": every.frames,
    }  # fmt: skip


def child(args: argparse.Namespace) -> None:
    det, pose = Path(args.det), Path(args.pose)
    if args.run == "rtmlib":
        result = run_rtmlib(Path(args.video), det, pose)
    elif args.run == "agreement":
        result = run_agreement(Path(args.video), det, pose)
    else:
        every = DETECT_EVERY if args.run == "skipping" else 1
        result = run_ours(Path(args.video), det, pose, every, CACHE / f"out_{args.run}")
    print("RESULT " + json.dumps(result))


def in_child(run: str, video: Path, det: Path, pose: Path) -> dict:
    command = [sys.executable, __file__, "--run", run, "--video", str(video), "--det", str(det),
               "--pose", str(pose)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{run} on {video.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


# ---------------------------------------------------------------------------- report


def onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="length of the video (30)")
    parser.add_argument("--short", type=float, default=2, help="seconds of the timed clip (2)")
    parser.add_argument("--people", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--rounds", type=int, default=2, help="turns of the three on the clip")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--det", help=argparse.SUPPRESS)
    parser.add_argument("--pose", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        return child(args)

    CACHE.mkdir(parents=True, exist_ok=True)
    det, pose = models()
    load = os.getloadavg()
    names = ["skipping", "per-frame", "rtmlib"]
    lines = [
        "| people | pipeline | frames | fps (min-max) | × ours per-frame | × rtmlib "
        "| detector on | peak MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for count in args.people:
        long = make_video(CACHE / f"dance_{count}p_{args.seconds:g}s.mp4", count, args.seconds)
        short = make_video(CACHE / f"dance_{count}p_{args.short:g}s.mp4", count, args.short)
        detectors = {"rtmlib": planted_detector(det, count)}
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for r in range(args.rounds):  # turns, in a rotating order: ratios survive slow drift
            for name in names[r % 3 :] + names[: r % 3]:
                runs[name].append(in_child(name, short, detectors.get(name, det), pose))
        whole = in_child("skipping", long, det, pose)
        agreement = in_child("agreement", short, det, pose)
        print(f"{count} person(s): {json.dumps([runs, whole, agreement])}", file=sys.stderr)
        fps = {name: np.array([r["fps"] for r in results]) for name, results in runs.items()}
        labels = {
            "skipping": f"`dwpose video` (detector every {DETECT_EVERY}, tracking, smoothing)",
            "per-frame": "`dwpose video --detect-every 1` (per-frame)",
            "rtmlib": "rtmlib 0.0.16 `Wholebody`, per frame",
        }
        for name in names:
            r = runs[name][0]
            share = f"{r['detections'] / r['frames']:.0%}" if "detections" in r else "100%"
            lines.append(
                f"| {count} | {labels[name]} | {r['frames']} | {np.median(fps[name]):.2f} "
                f"({fps[name].min():.2f}-{fps[name].max():.2f}) | "
                f"{np.median(fps[name] / fps['per-frame']):.2f} | "
                f"{np.median(fps[name] / fps['rtmlib']):.2f} | {share} | "
                f"{max(x['peak_mb'] for x in runs[name]):.0f} |"
            )
        lines.append(
            f"| {count} | the same, whole {args.seconds:g} s video | {whole['frames']} | "
            f"{whole['fps']:.2f} | {whole['fps'] / np.median(fps['per-frame']):.2f} | "
            f"{whole['fps'] / np.median(fps['rtmlib']):.2f} | "
            f"{whole['detections'] / whole['frames']:.0%} | "
            f"{whole.get('peak_mb_at_10s', float('nan')):.0f} after 10 s, "
            f"{whole['peak_mb']:.0f} at the end |"
        )
        notes.append(
            f"{count} person(s): keypoints on the {agreement['skipped_frames']} of "
            f"{agreement['frames']} frames without detection are {agreement['median_px']:.2f} px "
            f"(median; 95th percentile {agreement['p95_px']:.2f} px) from the per-frame "
            "pipeline's (stand-in models that follow the figures)."
        )
    print("\n".join(lines))
    print()
    print("\n".join(notes))
    after = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"Machine: {machine_line(onnxruntime=onnxruntime_version(), numpy=np.__version__)}. {args.rounds} rounds of {args.short:g} s clips (first "
        f"{WARMUP} frames untimed), ratios are medians of per-round ratios; the whole-video row "
        f"is one run. Load average before: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; "
        f"after: {after}."
    )


if __name__ == "__main__":
    main()
