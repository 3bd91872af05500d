"""Every official size through ONNX and back: export (BatchNorm folded, names lost), then
``load_net`` (architecture inferred, converted by graph structure, verified against
onnxruntime), then the converted module against the original one.

Too slow for the test suite (minutes on two cores; tests/test_onnx_import.py covers the
small sizes). Run from the repository root: python tests/device/onnx_conversions.py
Weights: seeded, BatchNorm statistics at random as tests/data/openmmlab/README.md describes.
"""

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

# (imports the repository root onto sys.path, as the GPU checks beside it)
from torch_gpu_precision import reference_style

from comfyui_dwpose.nets import NetConfig, export_onnx, load_net

SIZES = [
    ("rtmpose-t", (256, 192)), ("rtmpose-s", (256, 192)), ("rtmpose-m", (256, 192)),
    ("rtmpose-l", (256, 192)), ("rtmpose-l", (384, 288)), ("rtmpose-x", (384, 288)),
    ("yolox-nano", (416, 416)), ("yolox-tiny", (416, 416)), ("yolox-s", (640, 640)),
    ("yolox-m", (640, 640)), ("yolox-l", (640, 640)), ("yolox-x", (640, 640)),
]  # fmt: skip


def main() -> None:
    warnings.simplefilter("ignore")
    print("| arch | input | inferred | params | ONNX vs converted | converted vs original | s |")
    for name, size in SIZES:
        start = time.time()
        torch.manual_seed(0)
        config = NetConfig(name, size)
        model = reference_style(config.build(), 0)
        with tempfile.TemporaryDirectory() as folder:
            path = export_onnx(model, Path(folder) / "m.onnx", dynamic_batch=config.kind == "pose")
            net = load_net(path)
        rng = np.random.default_rng(0)
        shape = (1, 3, *size)
        x = rng.standard_normal(shape) if config.kind == "pose" else rng.uniform(0, 255, shape)
        x = torch.from_numpy(x.astype(np.float32))
        with torch.no_grad():
            want, got = model(x), net.module(x)
        want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
        err = max(float((g - w).abs().max() / w.abs().max()) for g, w in zip(got, want))
        row = [name, f"{size[0]}x{size[1]}", "yes" if net.config == config else str(net.config)]
        row += [f"{net.parameters:,}", f"{net.onnx_error:.1e}", f"{err:.1e}"]
        print("| " + " | ".join(row) + f" | {time.time() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
