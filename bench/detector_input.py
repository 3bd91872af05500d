"""Detector input: the 640x640 letterbox against a canvas fitted to the frame (issue 3).

Speed. YOLOX-L (the official architecture, seeded weights with calibrated BatchNorm from
tests/standin_nets.py) run as `Detector` runs it (letterbox, network, decode, NMS), one
frame a call, on the CPU: the torch backend (fp32), and onnxruntime with a fixed 640x640
export (like DWPose's yolox_l.onnx, the baseline) and a dynamic-size export (`dwpose
convert --dynamic-size`). Frames of common shapes; every configuration once per round,
in rotating order, medians over the rounds. Weights do not change the work, except NMS,
which sees few candidates either way (counted in the table).

Agreement, in two parts, because random weights make YOLOX's boxes meaningless:
1. Coordinates: tests/local_detector.py, a hand-built detector whose outputs are local to
   each anchor, must find the same boxes letterboxed and fitted (IoU >= 0.95; exact here).
2. Network: how much seeded YOLOX-L's raw outputs (box values, objectness and person
   logits) in the image region move when the padding is cut, by the anchor cell's
   distance to the cut edge, in units of each output's spread over the image. This
   depends on the stand-in weights; real YOLOX-L boxes remain to be measured, which is
   why the option is off by default.

Run:  python bench/detector_input.py [--rounds 7] [--arch yolox-l]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from common import machine_line  # noqa: E402
from local_detector import LocalDetector  # noqa: E402
from standin_nets import standin  # noqa: E402

from comfyui_dwpose.detect import Detector, fitted_size, letterbox  # noqa: E402
from comfyui_dwpose.images import load_image  # noqa: E402
from comfyui_dwpose.runtime import OnnxModel, cpu_threads  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
IMAGES = ROOT / "tests" / "data" / "coco"
SHAPES = {  # (height, width) of the timed frames
    "16:9 (1280x720)": (720, 1280),
    "21:9 (2560x1080)": (1080, 2560),
    "3:2 (1080x720)": (720, 1080),
    "4:3 (640x480)": (480, 640),
    "9:16 (720x1280)": (1280, 720),
}
DISTANCE_BINS = (0, 32, 64, 128, 256, 10_000)  # canvas pixels from the cut edge


def frame(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The largest centred crop of `image` with the aspect of `shape`, resized to it."""
    h, w = image.shape[:2]
    scale = min(h / shape[0], w / shape[1])
    ch, cw = round(shape[0] * scale), round(shape[1] * scale)
    y, x = (h - ch) // 2, (w - cw) // 2
    return cv2.resize(image[y : y + ch, x : x + cw], shape[::-1], interpolation=cv2.INTER_LINEAR)


def test_frames() -> dict[str, np.ndarray]:
    images = {p.stem: load_image(p) for p in sorted(IMAGES.glob("*.jpg"))}
    frames = {f"COCO {name}": image for name, image in images.items()}
    for (label, shape), (name, image) in zip(SHAPES.items(), itertools.cycle(images.items())):
        frames[f"{label.split()[0]} from {name}"] = frame(image, shape)
    return frames


# ---------------------------------------------------------------------------- models


def models(arch: str):
    """The stand-in as a torch-backend model, a fixed-size and a dynamic-size ONNX model."""
    import torch

    from comfyui_dwpose.nets import NetConfig, export_onnx
    from comfyui_dwpose.nets.files import Net
    from comfyui_dwpose.runtime_torch import TorchModel

    module = standin(arch)
    config = NetConfig(arch, module.input_size)
    fixed, dynamic = CACHE / f"{arch}_standin_fixed.onnx", CACHE / f"{arch}_standin_dynamic.onnx"
    if not (fixed.exists() and dynamic.exists()):
        CACHE.mkdir(exist_ok=True)
        export_onnx(module, fixed, dynamic_batch=False)  # as DWPose's yolox_l.onnx: 1x3x640x640
        export_onnx(module, dynamic, dynamic_size=True)
    torch_model = TorchModel(Net(module, config, Path(f"{arch} (stand-in)")), "cpu", "fp32")
    torch.set_num_threads(cpu_threads())
    return torch_model, OnnxModel(fixed, "cpu"), OnnxModel(dynamic, "cpu")


# ---------------------------------------------------------------------------- speed


def speed(torch_model, fixed, dynamic, rounds: int) -> list[str]:
    image = load_image(IMAGES / "000000000785.jpg")
    frames = {label: frame(image, shape) for label, shape in SHAPES.items()}
    runs = {  # (backend, input) -> (detector, frame)
        ("onnxruntime, fixed-size file", "letterbox"): (Detector(fixed), frames["16:9 (1280x720)"]),
    }
    for name, model in (("torch", torch_model), ("onnxruntime, dynamic-size file", dynamic)):
        runs[(name, "letterbox")] = (Detector(model), frames["16:9 (1280x720)"])
        fit = Detector(model, fit_input=True)
        for label, picture in frames.items():
            runs[(name, label)] = (fit, picture)
    keys = list(runs)
    for detector, picture in runs.values():  # warm-up: allocations, onnxruntime shape plans
        detector([picture])
    times: dict[tuple, list[float]] = {key: [] for key in keys}
    found: dict[tuple, int] = {}
    for r in range(rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            detector, picture = runs[key]
            start = time.perf_counter()
            boxes, _ = detector([picture])[0]
            times[key].append(time.perf_counter() - start)
            found[key] = len(boxes)
    base = statistics.median(times[keys[0]])
    lines = [
        "| backend | detector input | input w×h | ms (min-max) | × faster than the fixed file |"
        " boxes |",
        "|---|---|---|---:|---:|---:|",
    ]
    for key in keys:
        detector, picture = runs[key]
        h, w = detector.input_size_for(picture.shape[:2])
        backend, label = key
        what = "letterbox (any frame)" if label == "letterbox" else f"fitted, {label}"
        ms = [t * 1000 for t in times[key]]
        lines.append(
            f"| {backend} | {what} | {w}×{h} | {statistics.median(ms):.0f} ({min(ms):.0f}-"
            f"{max(ms):.0f}) | {base / statistics.median(times[key]):.2f} | {found[key]} |"
        )
    return lines


# ---------------------------------------------------------------------------- agreement


def best_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each box of `a`, its best IoU with a box of `b`."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a))
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)
    return (inter / (area_a[:, None] + area_b[None] - inter)).max(axis=1)


def coordinates(frames: dict[str, np.ndarray]) -> list[str]:
    """Part 1: the local detector's boxes, letterboxed and fitted."""
    from comfyui_dwpose.nets import export_onnx

    path = export_onnx(LocalDetector(), CACHE / "local_detector.onnx", dynamic_size=True)
    model = OnnxModel(path, "cpu")
    full, fit = Detector(model), Detector(model, fit_input=True)
    lines = [
        "| frame | size | fitted input | boxes letterboxed / fitted | lowest best IoU |"
        " largest score difference |",
        "|---|---|---|---:|---:|---:|",
    ]
    for label, picture in frames.items():
        (boxes, scores), (fit_boxes, fit_scores) = full([picture])[0], fit([picture])[0]
        iou = best_iou(boxes, fit_boxes).min() if len(boxes) else float("nan")
        same = len(boxes) == len(fit_boxes)
        diff = float(np.abs(scores - fit_scores).max()) if same and len(boxes) else float("nan")
        h, w = fit.input_size_for(picture.shape[:2])
        lines.append(
            f"| {label} | {picture.shape[1]}×{picture.shape[0]} | {w}×{h} | "
            f"{len(boxes)} / {len(fit_boxes)} | {iou:.4f} | {diff:.1e} |"
        )
    return lines


def network(torch_model, frames: dict[str, np.ndarray]) -> list[str]:
    """Part 2: per anchor in the image region, how far the stand-in's raw outputs move.

    Raw means before the sigmoids (random weights saturate them): dx, dy, log w, log h,
    the objectness and person logits. A move is |difference| over that output's spread
    (standard deviation over the image-region anchors, letterboxed); the largest of the six.
    """
    import torch

    base = torch_model.input_size
    distance, full, fitted = [], [], []
    for picture in frames.values():
        size = fitted_size(picture.shape[:2], base)
        if size == base:
            continue  # nothing cut: the same input
        outputs = []
        for canvas_size in (base, size):
            canvas, ratio = letterbox(picture, canvas_size)  # the same ratio for both
            batch = canvas[None, :, :, ::-1].transpose(0, 3, 1, 2).astype(np.float32)
            with torch.inference_mode():
                cls, box, obj = torch_model.module.forward_levels(torch.from_numpy(batch))
            levels = [torch.cat([b, o, c[:, :1]], 1).flatten(2) for c, b, o in zip(cls, box, obj)]
            outputs.append(torch.cat(levels, 2)[0].T.numpy())
        rows, cols = int(picture.shape[0] * ratio), int(picture.shape[1] * ratio)
        shared, dist = shared_anchors(base, size, rows, cols)
        inside = dist >= 0
        distance.append(dist[inside])
        full.append(outputs[0][shared][inside])
        fitted.append(outputs[1][inside])
    distance, full, fitted = map(np.concatenate, (distance, full, fitted))
    move = (np.abs(fitted - full) / full.std(axis=0)).max(axis=1)
    lines = [
        "| distance to the cut edge (canvas px) | anchors | moved > 1% of spread | > 10% |"
        " median move |",
        "|---|---:|---:|---:|---:|",
    ]
    for lo, hi in itertools.pairwise(DISTANCE_BINS):
        pick = (distance >= lo) & (distance < hi)
        label = f"{lo}-{hi}" if hi < DISTANCE_BINS[-1] else f"≥ {lo}"
        lines.append(
            f"| {label} | {pick.sum()} | {np.mean(move[pick] > 0.01):.1%} | "
            f"{np.mean(move[pick] > 0.1):.1%} | {np.median(move[pick]):.2%} |"
        )
    return lines


def shared_anchors(
    base: tuple[int, int], size: tuple[int, int], rows: int, cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each anchor of the fitted grid: its index in the base grid, and its cell centre's
    distance to the cut edge (negative where the centre lies outside the resized image)."""
    index, distance, offset = [], [], 0
    for stride in (8, 16, 32):
        yy, xx = np.mgrid[0 : size[0] // stride, 0 : size[1] // stride]
        index.append(offset + (yy * (base[1] // stride) + xx).ravel())
        cy, cx = (yy.ravel() + 0.5) * stride, (xx.ravel() + 0.5) * stride
        edge = size[0] - cy if size[0] < base[0] else size[1] - cx
        distance.append(np.where((cy < rows) & (cx < cols), edge, -1))
        offset += (base[0] // stride) * (base[1] // stride)
    return np.concatenate(index), np.concatenate(distance)


# ---------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="yolox-l", help="the YOLOX size (yolox-l)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (7)")
    args = parser.parse_args(argv)
    np.seterr(over="ignore", invalid="ignore")  # random weights decode to huge boxes
    frames = test_frames()
    print("Agreement 1, coordinates (tests/local_detector.py, dynamic ONNX on onnxruntime):\n")
    print("\n".join(coordinates(frames)))
    torch_model, fixed, dynamic = models(args.arch)
    print(f"\nAgreement 2, network ({args.arch}, seeded stand-in weights, torch fp32):\n")
    print("\n".join(network(torch_model, frames)))
    before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = speed(torch_model, fixed, dynamic, args.rounds)
    after = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nSpeed ({args.arch}, batch 1, median of {args.rounds} interleaved rounds):\n")
    print("\n".join(lines))
    import onnxruntime
    import torch

    versions = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    print(f"\nMachine: {machine_line(**versions)}. Load average before {before}; after {after}.")


if __name__ == "__main__":
    main()
