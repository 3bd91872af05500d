"""GPU video throughput (issue 14): `dwpose video`'s batched GPU pipeline against per-frame
torch fp16 and onnxruntime-gpu per frame (what comfyui_controlnet_aux does), on a 1080p
30 fps dance video with 1 and with 3 people, with DWPose's compute.

Run on a GPU machine from the repository root (not collected by pytest):
    OUT=out python tests/device/video_gpu_bench.py   # DRY=1: a CPU rehearsal, small everything
Options (environment): SECONDS (video length, 10), STREAMS (videos batched at once, 8).

Models: YOLOX-L 640x640 and RTMPose-l 384x288 (DWPose-l) with seeded random weights
(bench/common.py), exported to ONNX with the official signatures; the torch backend
converts the same files. Random weights see nobody, so:
- ours runs them behind tests/followers.py (the real net runs on the GPU, its full
  compute, then its output is replaced by one that follows the dancers), so that tracking
  and detector skipping behave as on real footage. The followers' own work is numpy on the
  CPU, per detector frame and per person crop: measured alone below, it caps ours;
- the per-frame contenders get the detector with planted boxes at the dancers' mean places
  (output = real output x 1e-3 + constant boxes; bench/common.py): the whole YOLOX-L runs
  and finds the same number of people, and every frame runs detector + pose.
Contenders:
- pipeline: `dwpose video --backend torch --device cuda --workers STREAMS --batch-videos`
  (in this process, cli.main with the followers' estimator) on STREAMS copies of the video:
  decoding, detector every 8th frame, tracking, smoothing, MP4 + JSON + npz written;
- pipeline, one video: the same with --workers 1 (no batching across videos);
- torch fp16 per frame: DWPose(backend="torch", precision="fp16")(frame), each frame;
- onnxruntime-gpu per frame: DWPose(backend="onnxruntime", device="cuda")(frame), each frame.
Reported: frames/s, mean and peak GPU utilisation and peak GPU memory used (nvidia-smi,
sampled every 0.1 s), torch's peak allocated memory.
"""

import json
import math
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
OUT = Path(os.environ.get("OUT", HERE / "out"))
DRY = os.environ.get("DRY") == "1"
DEVICE = "cpu" if DRY else "cuda"
SECONDS = float(os.environ.get("SECONDS", 1 if DRY else 10))
STREAMS = int(os.environ.get("STREAMS", 2 if DRY else 8))
SIZE = (180, 320) if DRY else (1080, 1920)  # h, w
FPS = 30

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import (  # noqa: E402
    DET_SIZE,
    PLANT_FACTOR,
    POSE_SIZE,
    plant,
    planted_onnx,
    seeded_nets,
)
from followers import (  # noqa: E402
    TEMPLATE,
    FollowingDetector,
    FollowingPose,
    _bounds,
    _masks,
    draw_figures,
)

from comfyui_dwpose import DWPose  # noqa: E402
from comfyui_dwpose import cli as cli_module  # noqa: E402
from comfyui_dwpose.nets import build_model, export_onnx  # noqa: E402
from comfyui_dwpose.video import read_frames  # noqa: E402

LINES: list[str] = []
RESULTS: dict = {}


def say(text: str = "") -> None:
    print(text, flush=True)
    LINES.append(text)


def dancers(count: int, i: int) -> list[tuple]:
    """Figures (colour, x1, y1, x2, y2) at frame i: side by side, swaying and bobbing."""
    h, w = SIZE
    t = i / FPS
    out = []
    for k in range(count):
        centre = w * (k + 0.5) / count + 0.05 * w * math.sin(2 * math.pi * 0.4 * t + k)
        half = (
            (0.08 if count > 1 else 0.15) * w * (1 + 0.3 * math.sin(2 * math.pi * 1.1 * t + 2 * k))
        )
        top = 0.14 * h + 0.04 * h * math.sin(2 * math.pi * 0.9 * t + k)
        out.append((k, centre - half, top, centre + half, h - 0.08 * h))
    return out


def make_video(path: Path, count: int) -> Path:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.height, stream.width = SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(round(SECONDS * FPS)):
            image = draw_figures(SIZE, dancers(count, i))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


def models(folder: Path) -> tuple[Path, Path]:
    if DRY:
        torch.manual_seed(0)
        det, pose = build_model("yolox-nano", DET_SIZE).eval(), build_model("rtmpose-t").eval()
    else:
        det, pose = seeded_nets()
    return (
        export_onnx(det, folder / "det.onnx", DET_SIZE, dynamic_batch=False),
        export_onnx(pose, folder / "pose.onnx"),
    )


class GpuMonitor:
    """nvidia-smi's utilisation and memory of GPU 0, sampled every 0.1 s while running."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        command = ["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu,memory.used",
                   "--format=csv,noheader,nounits", "-lms", "100"]  # fmt: skip
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        except OSError:
            return
        while not self._stop.is_set():
            line = process.stdout.readline()
            if not line:
                break
            util, memory = (float(v) for v in line.split(","))
            self.samples.append((util, memory))
        process.terminate()

    def __enter__(self):
        if DEVICE == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    def report(self) -> dict:
        out = {}
        if self.samples:
            util = np.array([s[0] for s in self.samples])
            out.update(gpu_util_mean=float(util.mean()), gpu_util_max=float(util.max()),
                       gpu_mem_used_mb=max(s[1] for s in self.samples))  # fmt: skip
        if DEVICE == "cuda":
            out["torch_peak_alloc_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return out


STRIDE = 4  # the quick followers look at every 4th pixel: boxes to 4 px, 16x less numpy


class QuickDetector(FollowingDetector):
    """tests/followers.py's detector on every STRIDE-th pixel (its numpy work would
    otherwise cap a GPU pipeline)."""

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.inner is not None:
            self.inner.run(batch)
        out = np.zeros((len(batch), self.anchors, 85), np.float32)
        for n, image in enumerate(batch):
            rgb = image[::-1, ::STRIDE, ::STRIDE].transpose(1, 2, 0)
            for colour, mask in enumerate(_masks(rgb)):
                box = _bounds(mask)
                if box is None:
                    continue
                x1, y1, x2, y2 = (STRIDE * v for v in box)
                anchor = self.first32 + colour
                gx, gy = self.grid[anchor]
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                out[n, anchor, :4] = [
                    cx / 32 - gx, cy / 32 - gy, math.log((x2 - x1) / 32), math.log((y2 - y1) / 32)
                ]  # fmt: skip
                out[n, anchor, 4:6] = 0.95
        return [out]


class QuickPose(FollowingPose):
    """tests/followers.py's pose model on every STRIDE-th pixel of each crop."""

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        from comfyui_dwpose import pose

        if self.inner is not None:
            self.inner.run(batch)
        h, w = self.input_size
        bins_x, bins_y = np.arange(2 * w) / 2, np.arange(2 * h) / 2
        simcc_x = np.zeros((len(batch), 133, 2 * w), np.float32)
        simcc_y = np.zeros((len(batch), 133, 2 * h), np.float32)
        std, mean = np.array(pose.STD)[:, None, None], np.array(pose.MEAN)[:, None, None]
        for n, planes in enumerate(batch):
            small = planes[:, ::STRIDE, ::STRIDE]
            rgb = np.clip(small * std + mean, 0, 255).round().transpose(1, 2, 0)
            masks = _masks(rgb)
            sh, sw = masks.shape[1:]
            centre = masks[:, sh // 4 : sh - sh // 4, sw // 4 : sw - sw // 4].sum(axis=(1, 2))
            box = _bounds(masks[int(np.argmax(centre))]) if centre.max() > 20 / STRIDE**2 else None
            if box is None:
                continue
            x1, y1, x2, y2 = (STRIDE * v for v in box)
            kx = x1 + TEMPLATE[:, 0] * (x2 - x1)
            ky = y1 + TEMPLATE[:, 1] * (y2 - y1)
            simcc_x[n] = 1 - 0.05 * np.abs(bins_x[None] - kx[:, None])
            simcc_y[n] = 1 - 0.05 * np.abs(bins_y[None] - ky[:, None])
        return [simcc_x, simcc_y]


class Planted:
    """A torch detector whose output is its own x PLANT_FACTOR + planted boxes (what
    bench/common.planted_onnx does to an ONNX file, which the torch backend cannot load)."""

    def __init__(self, model, planted: np.ndarray):
        self.model, self.planted = model, planted

    def __getattr__(self, name):
        return getattr(self.model, name)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return [out * PLANT_FACTOR + self.planted for out in self.model.run(batch)]


def pose_size() -> tuple[int, int]:
    return (256, 192) if DRY else POSE_SIZE


def follower_estimator(det: Path, pose: Path) -> DWPose:
    est = DWPose(det, pose, backend="torch", device=DEVICE, precision="fp16" if not DRY else "fp32")
    est.detector.model = QuickDetector(DET_SIZE[0], est.detector.model)
    est.pose.model = QuickPose(pose_size(), est.pose.model)
    return est


def run_pipeline(video: Path, det: Path, pose: Path, streams: int, out: Path) -> dict:
    estimator = follower_estimator(det, pose)
    copies = []
    for s in range(streams):
        copy = out / "in" / f"clip{s}.mp4"
        copy.parent.mkdir(parents=True, exist_ok=True)
        if not copy.exists():
            os.link(video, copy)
        copies.append(copy)
    cli_module._estimator = lambda args: estimator
    options = ["--backend", "torch", "--device", DEVICE, "--workers", str(streams)]
    options += ["--batch-videos"] if streams > 1 else []
    argv = ["video", *map(str, copies), "-o", str(out / f"poses{streams}"), "--overwrite", *options]
    frames = streams * round(SECONDS * FPS)
    with GpuMonitor() as monitor:
        began = time.perf_counter()
        code = cli_module.main(argv)
        wall = time.perf_counter() - began
    return {"exit": code, "frames": frames, "fps": frames / wall, **monitor.report()}


def run_per_frame(video: Path, det: Path, pose: Path, backend: str, planted: np.ndarray) -> dict:
    """Detector and pose on every frame; the detector's boxes planted (in the ONNX file
    for onnxruntime, around the converted net for torch)."""
    if backend == "torch":
        est = DWPose(det, pose, backend="torch", device=DEVICE, precision="fp32" if DRY else "fp16")
        est.detector.model = Planted(est.detector.model, planted)
    else:
        planted_file = planted_onnx(
            det, planted, det.with_name(f"{det.stem}_planted_{planted.sum():.0f}.onnx")
        )
        est = DWPose(planted_file, pose, backend="onnxruntime", device=DEVICE)
    people, frames = set(), [f.image for f in read_frames(video)]
    est(frames[0])  # warm-up: sessions, kernels
    with GpuMonitor() as monitor:
        began = time.perf_counter()
        for image in frames:
            people.add(len(est(image)))
        wall = time.perf_counter() - began
    return {"frames": len(frames), "fps": len(frames) / wall, "people": sorted(people),
            **monitor.report()}  # fmt: skip


def followers_cost(det: Path, pose: Path, video: Path) -> dict:
    """CPU ms per detector frame and per followed crop of the quick followers with no net
    inside: their own work plus our pre- and post-processing (what caps ours besides the
    GPU)."""
    image = next(iter(read_frames(video))).image
    est = DWPose(det, pose, backend="torch", device="cpu")
    est.detector.model = QuickDetector(DET_SIZE[0])
    est.pose.model = QuickPose(pose_size())
    frame = est(image)
    began = time.perf_counter()
    for _ in range(5):
        est(image)
    whole = (time.perf_counter() - began) / 5
    began = time.perf_counter()
    for _ in range(5):
        est.pose_on_boxes([image], [frame.boxes])
    per_crop = (time.perf_counter() - began) / 5 / max(len(frame), 1)
    return {"ms_per_detected_frame": 1000 * whole, "ms_per_followed_crop": 1000 * per_crop}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    work = OUT / "video_gpu_bench"
    work.mkdir(exist_ok=True)
    say(f"torch {torch.__version__}, device {DEVICE}"
        + (f" ({torch.cuda.get_device_name(0)})" if DEVICE == "cuda" else "")
        + f"; video {SIZE[1]}x{SIZE[0]} {FPS} fps {SECONDS:g} s; {STREAMS} streams")  # fmt: skip
    det, pose = models(work)
    for count in (1, 3):
        video = make_video(work / f"dance_{count}p.mp4", count)
        boxes = np.mean([[d[1:] for d in dancers(count, i)] for i in range(FPS)], axis=0)
        ratio = min(DET_SIZE[0] / SIZE[0], DET_SIZE[1] / SIZE[1])
        planted = plant(boxes, ratio)
        ort = "onnxruntime (CPU) per frame" if DRY else "onnxruntime-gpu per frame"
        runs = {
            f"pipeline, {STREAMS} videos batched": (run_pipeline, video, det, pose, STREAMS, work),
            "pipeline, one video": (run_pipeline, video, det, pose, 1, work),
            "torch fp16 per frame": (run_per_frame, video, det, pose, "torch", planted),
            ort: (run_per_frame, video, det, pose, "onnxruntime", planted),
        }
        say(f"== {count} person(s)")
        results = RESULTS[f"{count}p"] = {}
        for name, (run, *args) in runs.items():
            try:
                results[name] = run(*args)
            except Exception:
                results[name] = {"error": traceback.format_exc(limit=3)}
            say(f"{name}: {json.dumps(results[name])}")
        base = results[ort]
        for name, r in results.items():
            if "fps" in r and "fps" in base:
                say(
                    f"  {name}: {r['fps']:.1f} frames/s, {r['fps'] / base['fps']:.2f}x onnxruntime per frame"
                )
        results["followers_cpu_cost"] = followers_cost(det, pose, video)
        say(f"followers' own CPU work: {json.dumps(results['followers_cpu_cost'])}")
    (OUT / "video_gpu_bench.json").write_text(json.dumps(RESULTS, indent=1))
    (OUT / "video_gpu_bench.txt").write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
