"""Peak memory at and beyond the size limits (comfyui_dwpose/limits.py), each case in a fresh
process (VmHWM, Linux): the largest inputs still accepted, and inputs that used to take tens
of GB and are now refused before allocating.

    python bench/limits.py            # all cases; about 10 GB free memory needed
    python bench/limits.py refused     # only the refused ones (seconds, little memory)

Models: the golden stand-ins (tests/data/golden/models); memory does not depend on them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "data" / "golden" / "models"
PEAK = "import re; print('peak-kb', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])"
ESTIMATOR = f"DWPosePreprocessor({str(MODELS / 'det.onnx')!r}, {str(MODELS / 'pose.onnx')!r})"


def measure(code: str, folder: Path) -> tuple[float, str]:
    """(peak GiB, last line of output) of `code` run in a fresh interpreter in `folder`."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + "\n" + PEAK],
        capture_output=True, text=True, cwd=folder, env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    lines = (done.stdout + done.stderr).strip().splitlines()
    peak = next(int(line.split()[1]) for line in lines if line.startswith("peak-kb"))
    said = [line for line in lines if not line.startswith("peak-kb")]
    reasons = [line for line in said if "skipped:" in line or "beyond" in line]
    return peak / 2**20, (reasons or said or [""])[0]


def cases(folder: Path) -> dict[str, tuple[str, str]]:
    """name: (what, code). Refused cases first."""
    json.dump([{"canvas_width": 1, "canvas_height": 100_000}], (folder / "thin.json").open("w"))
    json.dump([{"canvas_width": 1e9, "canvas_height": 1e9}], (folder / "huge.json").open("w"))
    json.dump(
        [{"canvas_width": 16384, "canvas_height": 16384,
          "people": [{"pose_keypoints_2d": [8000, 3000, 1, 8000, 6000, 1] + [0] * 48}]}],
        (folder / "largest.json").open("w"),
    )  # fmt: skip
    sys.path.insert(0, str(ROOT / "tests"))
    from test_images import png_of_zeros  # a valid PNG of any size, tiny on disk

    png_of_zeros(folder / "961mp.png", 31_000, 31_000)
    png_of_zeros(folder / "900mp.png", 29_999, 29_999)
    cli = "from comfyui_dwpose.cli import main; print('exit', main({args!r}))"
    models = ["--detector", str(MODELS / "det.onnx"), "--pose-model", str(MODELS / "pose.onnx")]
    return {
        "refused: render, canvas 1x100000 at --resolution 512": (
            "refused", cli.format(args=["render", "thin.json", "-o", "o", "--resolution", "512"])),
        "refused: render, canvas 1e9 x 1e9": (
            "refused", cli.format(args=["render", "huge.json", "-o", "o"])),
        "refused: preprocessor, 1x10000 image at image_resolution=512": ("refused", f"""
            import numpy as np
            from comfyui_dwpose import DWPosePreprocessor
            try:
                {ESTIMATOR}(np.zeros((10000, 1, 3), np.uint8), image_resolution=512)
            except ValueError as exc:
                print(exc)"""),
        "refused: pose, a 961 MP PNG (31000x31000)": (
            "refused", cli.format(args=["pose", "961mp.png", "-o", "o", *models])),
        "largest map: render, 16384x16384 canvas at its own size": (
            "accepted", cli.format(args=["render", "largest.json", "-o", "o"])),
        "largest float map: preprocessor, 16384x16384 image, output_type='np'": ("accepted", f"""
            import numpy as np
            from comfyui_dwpose import DWPosePreprocessor
            out = {ESTIMATOR}(np.full((16384, 16384, 3), 40, np.uint8), image_resolution=16384,
                              output_type="np")
            print(out.shape, out.dtype)"""),
        "largest image: pose, a 900 MP PNG (29999x29999) at --resolution 1024": (
            "accepted", cli.format(args=["pose", "900mp.png", "-o", "o", *models, "--resolution", "1024"])),
    }  # fmt: skip


def main() -> None:
    only = sys.argv[1] if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("| case | peak memory | what it said |\n|---|---|---|")
        for name, (kind, code) in cases(folder).items():
            if only and kind != only:
                continue
            peak, said = measure(code, folder)
            print(f"| {name} | {peak:.2f} GiB | {said[:160]} |", flush=True)


if __name__ == "__main__":
    main()
