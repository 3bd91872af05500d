"""What the benchmarks share: DWPose's architectures with seeded weights, detectors with
planted detections, and the line that says which machine the numbers came from."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from pathlib import Path

import numpy as np

from comfyui_dwpose import detect
from comfyui_dwpose.runtime import cpu_threads

CACHE = Path(__file__).resolve().parent / ".cache"  # git-ignored
DET_SIZE = (640, 640)  # (h, w), YOLOX-L as in DWPose's yolox_l.onnx
POSE_SIZE = (384, 288)  # (h, w), DWPose-l (RTMPose-l)
SEED = 0
PLANT_FACTOR = 1e-3  # the real detector output is scaled by this before the plant is added
PLANT_SCORE = 0.95  # objectness and person-class score of a planted box (product 0.9025)


def seeded_nets():
    """YOLOX-L 640 and RTMPose-l 384x288 with seeded random weights, in eval mode."""
    import torch

    from comfyui_dwpose.nets import build_model

    torch.manual_seed(SEED)
    return build_model("yolox-l", DET_SIZE).eval(), build_model("rtmpose-l", POSE_SIZE).eval()


def plant(boxes: np.ndarray, ratio: float, size: tuple[int, int] = DET_SIZE) -> np.ndarray:
    """The constant [1,A,85] detector output that reports `boxes` (image pixels) after
    letterboxing at `ratio` onto a canvas of `size` (h, w).

    Each box goes to the stride-32 anchor whose cell holds its centre: dx, dy are the centre's
    offset in the cell, log w, log h its size in strides, objectness and person score high.
    """
    grid, strides = detect.anchor_grid(size)
    out = np.zeros((1, len(grid), 85), np.float32)
    first32 = len(grid) - (size[0] // 32) * (size[1] // 32)
    for x1, y1, x2, y2 in np.asarray(boxes) * ratio:
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        gx, gy = int(cx // 32), int(cy // 32)
        anchor = first32 + gy * (size[1] // 32) + gx
        assert tuple(grid[anchor]) == (gx, gy) and strides[anchor, 0] == 32
        assert out[0, anchor, 4] == 0, "two planted boxes share an anchor"
        out[0, anchor, :4] = [cx / 32 - gx, cy / 32 - gy, math.log(w / 32), math.log(h / 32)]
        out[0, anchor, 4:6] = PLANT_SCORE
    return out


def planted_onnx(raw: Path, planted: np.ndarray, path: Path) -> Path:
    """A copy of the raw detector file whose output is raw x PLANT_FACTOR + `planted`: the
    whole network still runs (its output feeds the sum), yet it finds exactly the planted
    people. Cached at `path`."""
    import onnx
    from onnx import helper, numpy_helper

    if path.exists():
        return path
    model = onnx.load(os.fspath(raw))
    graph = model.graph
    (producer,) = [n for n in graph.node if "output" in n.output]
    producer.output[list(producer.output).index("output")] = "raw_output"
    graph.initializer.extend([
        numpy_helper.from_array(np.array(PLANT_FACTOR, np.float32), "plant_factor"),
        numpy_helper.from_array(planted, "plant"),
    ])  # fmt: skip
    graph.node.extend([
        helper.make_node("Mul", ["raw_output", "plant_factor"], ["scaled_output"]),
        helper.make_node("Add", ["scaled_output", "plant"], ["output"]),
    ])  # fmt: skip
    onnx.checker.check_model(model)
    tmp = path.with_suffix(".tmp")
    onnx.save(model, os.fspath(tmp))
    tmp.replace(path)
    return path


def machine_line(**versions: str) -> str:
    """CPU model (family/model numbers, vector extensions), cores, memory, Python and the
    given package versions (name=version)."""
    info = _proc_fields("/proc/cpuinfo")
    cpu = info.get("model name", platform.processor() or "unknown CPU")
    if "cpu family" in info:
        cpu += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    flags = info.get("flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
    details = [cpu, f"{cpu_threads()} usable cores"]
    details += [simd] if simd else []
    details += ["virtual machine"] if "hypervisor" in flags else []
    memory = _proc_fields("/proc/meminfo").get("MemTotal", "")
    if memory.endswith(" kB"):
        details.append(f"{int(memory[:-3]) / 2**20:.0f} GiB")
    packages = "".join(f", {name} {version}" for name, version in versions.items())
    return ", ".join(details) + (
        f"; {platform.system()} {platform.machine()}, Python {platform.python_version()}{packages}"
    )


def _proc_fields(path: str) -> dict[str, str]:
    """The first value of each `key : value` line of a /proc file ({} where there is none)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    return fields
