"""What Ray costs: `dwpose video` over 8 videos with `--ray` and 2 actors against
`--workers 2` (2 threads sharing one estimator in one process), on this machine.

Models: the golden stand-ins (tests/data/golden/models: DWPose's input and output
signatures, 640x640 detector and 384x288 pose inputs, little compute; they find the same
two people in every frame), so a run is mostly what Ray wraps: decoding, pre- and
post-processing, tracking, smoothing, drawing, encoding. Videos: 8 x --frames frames of
256x192 at 30 fps, H.264, two figures (tests/followers.py).

Contenders, each `dwpose video` in its own process as a user runs it, taking turns for
--rounds rounds (order rotating, so a neighbour's load hits all alike):
- workers: `--workers 2`;
- ray, running cluster: `--ray auto --workers 2` against a cluster started once before
  (`ray start --head --num-cpus 2`), as on a real cluster;
- ray, new cluster: `--ray --workers 2`, which starts a local cluster itself (its start-up
  included).
Wall time of each run (median of the rounds) and its ratio to workers.

Run:  python bench/ray_overhead.py [--frames 150] [--rounds 3]
Needs the video and ray extras (pip install -e ".[video,ray]").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from common import machine_line  # noqa: E402
from followers import draw_figures  # noqa: E402

MODELS = ROOT / "tests" / "data" / "golden" / "models"
SIZE = (192, 256)  # h, w
VIDEOS = 8


def make_videos(folder: Path, frames: int) -> list[Path]:
    import av

    paths = []
    for v in range(VIDEOS):
        path = folder / f"clip{v}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=30)
            stream.height, stream.width = SIZE
            stream.pix_fmt = "yuv420p"
            h, w = SIZE
            for i in range(frames):
                x = 0.1 * w + (i + 7 * v) % 60
                people = [(0, x, 0.15 * h, x + 0.2 * w, 0.85 * h),
                          (1, 0.7 * w - x / 3, 0.2 * h, 0.9 * w - x / 3, 0.8 * h)]  # fmt: skip
                image = draw_figures(SIZE, people)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, "rgb24")))
            out.mux(stream.encode())
        paths.append(path)
    return paths


def dwpose(videos: list[Path], output: Path, *options: str) -> float:
    """Wall seconds of one `dwpose video` run into a fresh folder."""
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable, "-m", "comfyui_dwpose.cli", "video", *map(str, videos), "-o", str(output),
        "--detector", str(MODELS / "det.onnx"), "--pose-model", str(MODELS / "pose.onnx"),
        "--workers", "2", *options,
    ]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per video")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import ray

    ray_cli = str(Path(sys.executable).with_name("ray"))
    contenders = {
        "workers (--workers 2)": (),
        "ray, running cluster (--ray auto --workers 2)": ("--ray", "auto"),
        "ray, new cluster (--ray --workers 2)": ("--ray",),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        videos = make_videos(folder, args.frames)
        subprocess.run(
            [ray_cli, "start", "--head", "--num-cpus", "2", "--include-dashboard=false"],
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            names = list(contenders)
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    times[name].append(dwpose(videos, folder / "out", *contenders[name]))
                    print(f"round {r + 1}: {name}: {times[name][-1]:.1f} s", flush=True)
        finally:
            subprocess.run([ray_cli, "stop"], check=False, capture_output=True)
    load_after = os.getloadavg()[0]
    print(f"\n{machine_line(ray=ray.__version__)}")
    print(
        f"load average {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores"
    )
    print(f"{VIDEOS} videos x {args.frames} frames of {SIZE[1]}x{SIZE[0]}, {args.rounds} rounds\n")
    base = statistics.median(times[names[0]])
    print("| contender | wall s (median) | runs | ratio to workers |\n|---|---|---|---|")
    for name, runs in times.items():
        median = statistics.median(runs)
        listed = ", ".join(f"{t:.1f}" for t in runs)
        print(f"| {name} | {median:.1f} | {listed} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
