"""Optional dependencies, imported where they are used.

`pip install -e ".[onnx]"` brings only what images need (numpy, OpenCV, Pillow,
huggingface_hub, tqdm, onnxruntime). Videos, the torch backend and conversions need more;
`require` imports such a package at the point of use, and when it is missing says in one
line which extra brings it (the package is installed from a clone, not from PyPI).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The extra (pyproject.toml) that brings each optional package.
EXTRAS = {
    "av": "video",
    "scipy": "video",
    "torch": "torch",
    "safetensors": "torch",
    "onnx": "torch",
    "diffusers": "diffusers",
    "ray": "ray",
}


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the extra that brings it."""


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` (e.g. "scipy.optimize") for `purpose`, or raise `MissingExtraError`."""
    package = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.partition(".")[0] != package:
            raise  # the package is there but broken: its own error says more
        raise MissingExtraError(missing_message(package, purpose)) from exc


def missing_message(package: str, purpose: str) -> str:
    """One line: what needs `package`, and how to install it."""
    return (
        f"{purpose} needs {package}, which is not installed: "
        f'pip install -e ".[{EXTRAS[package]}]" in the comfyui-dwpose folder '
        f"(or pip install {package})"
    )
