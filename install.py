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
from collections.abc import Iterable
from importlib import metadata

# What to install when none of a family is present, and how to recognise the family.
REQUIREMENTS = {
    # onnxruntime, -gpu, -directml, -openvino, -silicon, ...; not the add-ons that need one.
    "onnxruntime": re.compile(r"(onnxruntime|ort-nightly)(?!-(extensions|genai|tools))(-.+)?"),
    # opencv-python, opencv-python-headless, opencv-contrib-python[-headless], -rolling builds.
    "opencv-python-headless": re.compile(r"opencv(-contrib)?-python(-headless)?(-rolling)?"),
}
FAMILY = {"onnxruntime": "onnxruntime", "opencv-python-headless": "OpenCV"}


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> list[str]:
    """Names of the distributions installed for this Python."""
    return [normalize(d.metadata["Name"]) for d in metadata.distributions() if d.metadata["Name"]]


def plan(installed: Iterable[str]) -> tuple[list[str], dict[str, list[str]]]:
    """What to install, and which builds of each family are already there."""
    names = sorted({normalize(n) for n in installed})
    present = {req: [n for n in names if rx.fullmatch(n)] for req, rx in REQUIREMENTS.items()}
    return [req for req, found in present.items() if not found], present


def main(installed: Iterable[str] | None = None, run=subprocess.check_call) -> int:
    missing, present = plan(installed_distributions() if installed is None else installed)
    for req, found in present.items():
        family = FAMILY[req]
        if len(found) > 1:
            print(
                f"[comfyui-dwpose] warning: several {family} builds are installed "
                f"({', '.join(found)}); they share one folder and may be broken. Keep one: "
                f"`{sys.executable} -m pip uninstall {' '.join(found)}`, then install the one you want."
            )
        elif found:
            print(f"[comfyui-dwpose] {family}: {found[0]} is installed, keeping it.")
    for req in missing:
        print(f"[comfyui-dwpose] {FAMILY[req]}: none installed, installing {req}.")
        run([sys.executable, "-m", "pip", "install", req])
    if "onnxruntime" in missing:
        print(
            "[comfyui-dwpose] onnxruntime runs on the CPU. For an NVIDIA GPU, replace it: "
            f"`{sys.executable} -m pip uninstall onnxruntime` then `pip install onnxruntime-gpu`."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
