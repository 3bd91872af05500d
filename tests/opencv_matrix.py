"""Run the golden tests under each OpenCV build, each in its own throwaway venv.

    python tests/opencv_matrix.py                           # every flavour x version below
    python tests/opencv_matrix.py --flavours headless --versions 4.12 4.14
    python tests/opencv_matrix.py --numpy "numpy==2.4.*"    # beside ComfyUI's numpy

Maps must equal upstream's pixel for pixel and keypoints/boxes to the bit
(tests/test_golden.py) whatever OpenCV is installed. A venv per flavour and version (kept
under --venvs and reused, so a rerun only reruns the tests) gets that OpenCV from PyPI,
the numpy pip picks for it (numpy<2 for OpenCV built against numpy 1.x), the project's
other runtime dependencies and the project itself (--no-deps: its own OpenCV pin would
pull a second OpenCV build). One row per venv: versions, tests passed/failed, and the
pixel counts of the failures. Needs network access to PyPI (or a pip cache).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAVOURS = {
    "python": "opencv-python",
    "headless": "opencv-python-headless",
    "contrib": "opencv-contrib-python",
}
VERSIONS = ("4.8", "4.9", "4.10", "4.11", "4.12", "4.13", "4.14", "5.0")
NUMPY1_ONLY = ("4.8", "4.9")  # wheels built against numpy 1.x: they do not import under 2.x
OTHER_DEPENDENCIES = (
    "pillow",
    "onnxruntime",
    "huggingface_hub",
    "tqdm",
    "pytest",
    "setuptools>=69",
)
TESTS = ("test_golden.py",)
PROBE = (
    "import cv2, numpy, comfyui_dwpose;"
    "print(cv2.__version__, numpy.__version__, comfyui_dwpose.__file__)"
)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def prepare(venv: Path, package: str, version: str, numpy: str | None) -> str | None:
    """Create the venv and install into it; the reason when this OpenCV cannot be installed."""
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)], check=True)
    numpy_spec = numpy or ("numpy<2" if version in NUMPY1_ONLY else "numpy")
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    out = run([*pip, f"{package}=={version}.*", numpy_spec, *OTHER_DEPENDENCIES])
    if out.returncode:
        lines = [line for line in out.stderr.splitlines() if "ERROR" in line]
        return (lines[-1] if lines else out.stderr.strip()[-200:]).replace("ERROR: ", "")
    # The work tree as it is now (reinstalled on every run, so a rerun tests the new code).
    run([*pip, "--no-deps", "--no-build-isolation", "--force-reinstall", str(ROOT)], check=True)
    return None


def test(venv: Path) -> dict[str, str]:
    """Versions actually installed, and the golden tests' outcome in the venv."""
    python = str(venv / "bin" / "python")
    probe = run([python, "-c", PROBE], cwd="/")
    if probe.returncode:
        return {"opencv": "import fails", "numpy": "", "result": probe.stderr.strip()[-120:]}
    opencv, numpy, package = probe.stdout.split()
    assert package.startswith(str(venv)), f"testing {package}, not the installed copy"
    # The tests run from a copy outside the work tree (whose __init__.py is ComfyUI's entry
    # point and pytest would import it), so the installed package is what they test.
    with tempfile.TemporaryDirectory() as tmp:
        tests = Path(tmp) / "tests"
        tests.mkdir()
        for name in ("conftest.py", *TESTS):
            shutil.copy(ROOT / "tests" / name, tests)
        (tests / "data").symlink_to(ROOT / "tests" / "data")
        out = run(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null",
             "--rootdir", str(tests), *TESTS],
            cwd=tests,
        )  # fmt: skip
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-200:]
    passed = re.search(r"(\d+) passed", summary)
    failed = re.search(r"(\d+) failed", summary)
    pixels = sorted(int(n) for n in re.findall(r"(\d+) pixels differ", out.stdout))
    other = len(re.findall(r"^FAILED", out.stdout, re.M)) - len(pixels)
    result = f"{passed[1] if passed else 0} passed, {failed[1] if failed else 0} failed"
    if pixels:
        result += f"; maps off by {min(pixels)}-{max(pixels)} px ({len(pixels)} maps)"
    if other > 0:
        result += f"; {other} keypoint/box failures"
    return {"opencv": opencv, "numpy": numpy, "result": result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flavours", nargs="+", choices=FLAVOURS, default=list(FLAVOURS))
    parser.add_argument("--versions", nargs="+", default=list(VERSIONS))
    parser.add_argument("--numpy", help='a numpy requirement for every venv, e.g. "numpy==2.4.*"')
    parser.add_argument("--venvs", type=Path, default=Path("/tmp/dwpose-opencv-matrix"))
    args = parser.parse_args()

    print(f"{'package':24} {'asked':6} {'opencv':12} {'numpy':8} result", flush=True)
    failures = 0
    for flavour in args.flavours:
        package = FLAVOURS[flavour]
        for version in args.versions:
            numpy_tag = re.sub(r"[^0-9a-z.]", "", args.numpy or "")
            venv = args.venvs / f"{flavour}-{version}{'-' + numpy_tag if numpy_tag else ''}"
            reason = prepare(venv, package, version, args.numpy)
            row = (
                {"opencv": "-", "numpy": "-", "result": f"not installable: {reason}"}
                if reason
                else test(venv)
            )
            failures += "failed" in row["result"] and " 0 failed" not in row["result"]
            failures += row["opencv"] == "import fails"
            print(
                f"{package:24} {version:6} {row['opencv']:12} {row['numpy']:8} {row['result']}",
                flush=True,
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
