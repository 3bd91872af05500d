"""Install onnxruntime and OpenCV for comfyui-dwpose, only where no build of them is present.

ComfyUI-Manager runs this after installing requirements.txt. onnxruntime and OpenCV each
come as several mutually exclusive wheels that write into one folder (onnxruntime,
onnxruntime-gpu, onnxruntime-directml...; opencv-python, -headless, -contrib...). Adding a
second one over the first breaks both, so the decision is made from the installed
distributions (not from whether `import` works), and nothing is added next to an
existing build. Run it by hand with ComfyUI's Python: `python install.py`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata

# Each family: how to recognise its builds, and what to install when none is present.
# Every OpenCV 4 from 4.8 gives upstream's maps, boxes and keypoints (tests/opencv_matrix.py);
# 5.0 resizes and warps differently (boxes and keypoints move by a pixel).
EXACT_OPENCV = ((4, 8), (5, 0))
# Installed with the installed numpy pinned (keep_numpy), pip takes the newest OpenCV that
# fits it: 4.13+ for numpy 2 (4.12 wants 2.0-2.2), 4.11 for numpy 1. Not below 4.10: 4.8 and
# 4.9 are built for numpy 1 and fail to import under numpy 2, though their wheels allow it.
OPENCV = "opencv-python-headless>=4.10,<5"
FAMILIES = {
    "onnxruntime": (
        # onnxruntime, -gpu, -directml, -openvino, ...; not the add-ons that need one.
        re.compile(r"(onnxruntime|ort-nightly)(?!-(extensions|genai|tools))(-.+)?"),
        "onnxruntime",
    ),
    "OpenCV": (
        # opencv-python, opencv-python-headless, opencv-contrib-python[-headless], -rolling.
        re.compile(r"opencv(-contrib)?-python(-headless)?(-rolling)?"),
        OPENCV,
    ),
}


# The same policy as the README (ComfyUI section): no onnxruntime-gpu needed.
GPU_NOTE = (
    "GPUs: the nodes run on ComfyUI's own PyTorch and device (CUDA, ROCm, MPS); the default "
    ".onnx models are converted once (requirements.txt brings onnx for that) and kept beside "
    "them. onnxruntime runs them on machines without a GPU, and wherever a model cannot be "
    "converted, which the node then says in its output and the console."
)


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> dict[str, str]:
    """Name -> version of the distributions installed for this Python."""
    return {
        normalize(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if d.metadata["Name"]
    }


def release(version: str) -> tuple[int, ...]:
    """(major, minor) of a version string such as 4.12.0.88."""
    return tuple(int(re.match(r"\d*", part)[0] or 0) for part in version.split(".")[:2])


def keep_numpy(installed: dict[str, str]) -> list[str]:
    """Pin the installed numpy, so that pip picks builds that fit it instead of moving
    ComfyUI's numpy (OpenCV 4.12 wants numpy 2.0-2.2, 4.13+ numpy 2; 4.10-4.11 take any)."""
    return [f"numpy=={installed['numpy']}"] if "numpy" in installed else []


def say(message: str) -> None:
    print(f"[comfyui-dwpose] {message}", flush=True)  # before pip's own output


def main(installed: dict[str, str] | None = None, run=subprocess.check_call) -> int:
    """Check each family in `installed` (default: this Python's) and install what is missing."""
    if installed is None:
        installed = installed_distributions()
    installed = {normalize(name): version for name, version in installed.items()}
    for family, (pattern, requirement) in FAMILIES.items():
        found = sorted(name for name in installed if pattern.fullmatch(name))
        if not found:
            say(f"{family}: none installed, installing {requirement}.")
            run([sys.executable, "-m", "pip", "install", requirement, *keep_numpy(installed)])
        elif len(found) > 1:
            say(
                f"warning: several {family} builds are installed ({', '.join(found)}); they "
                f"share one folder and may be broken. Keep one: `{sys.executable} -m pip "
                f"uninstall {' '.join(found)}`, then install the one you want."
            )
        else:
            name, version = found[0], installed[found[0]]
            say(f"{family}: {name} {version} is installed, keeping it.")
            if family == "OpenCV" and (problem := opencv_problem(version, installed)):
                requirement = OPENCV.replace("opencv-python-headless", name)
                command = [sys.executable, "-m", "pip", "install", f'"{requirement}"']
                say(f"warning: {problem} `{' '.join(command + keep_numpy(installed))}`.")
    say(GPU_NOTE)
    return 0


def opencv_problem(version: str, installed: dict[str, str]) -> str | None:
    """What is wrong with keeping this OpenCV beside the installed numpy, if anything."""
    opencv, numpy = release(version), release(installed.get("numpy", "0"))
    if opencv < (4, 10) and numpy >= (2,):
        return (
            f"OpenCV {version} is built for numpy 1 and does not import under numpy "
            f"{installed['numpy']}. Replace it:"
        )
    if not EXACT_OPENCV[0] <= opencv < EXACT_OPENCV[1]:
        return (
            f"with OpenCV {version} boxes and keypoints can differ from upstream DWPose's "
            "by a pixel (OpenCV 5 resizes and warps differently; before 4.8 untested). "
            "For identical results:"
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
