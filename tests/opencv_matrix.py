"""The golden tests and each OpenCV call the library makes, under each OpenCV build.

    python tests/opencv_matrix.py                           # every flavour x version below
    python tests/opencv_matrix.py --flavours headless --versions 4.12 4.14
    python tests/opencv_matrix.py --numpy "numpy==2.4.*"    # beside ComfyUI's numpy

Maps must equal upstream's pixel for pixel and keypoints/boxes to the bit
(tests/test_golden.py) whatever OpenCV is installed. A venv per flavour and version (kept
under --venvs and reused, so a rerun only reruns the tests) gets that OpenCV from PyPI,
the numpy pip picks for it (numpy<2 for OpenCV built against numpy 1.x), the project's
other runtime dependencies and the project itself (--no-deps: its own OpenCV pin would
pull a second OpenCV build). Two tables: the golden tests per venv (passed/failed, the
pixel counts of failed maps), and for each OpenCV call of the library, run on fixed
random inputs, whether its output equals OpenCV 4.12's ("=") or not ("DIFF").
Needs PyPI (or a pip cache). Not collected by pytest: run it by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
VERSIONS = ("4.8", "4.9", "4.10", "4.11", "4.12", "4.13", "4.14", "5.0", "5.1")
REFERENCE = "4.12"  # upstream's maps were drawn with opencv-python-headless 4.12.0.88
NUMPY1_ONLY = ("4.8", "4.9")  # wheels built against numpy 1.x: they do not import under 2.x
OTHER_DEPENDENCIES = ("pillow", "onnxruntime", "huggingface_hub", "tqdm", "pytest")
BUILD = "setuptools>=69"
TESTS = ("test_golden.py",)


def probe() -> dict[str, str]:
    """Run in a venv: a digest of each OpenCV call of the library on fixed random inputs."""
    import cv2
    import numpy as np

    from comfyui_dwpose import pose, raster, render

    rng = np.random.RandomState(0)  # the legacy generator: the same numbers in every numpy
    photo = rng.randint(0, 256, (1080, 1920, 3)).astype(np.uint8)
    shapes = rng.randint(-40, 680, (200, 4))
    out = {"versions": f"{cv2.__version__} {np.__version__}"}

    def digest(name, *arrays):
        out[name] = hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays))
        out[name] = out[name].hexdigest()[:8]

    # detect.letterbox and estimator/preprocessor shrinking
    sizes = [(640, 360), (533, 300), (1280, 720), (97, 61)]
    digest("resize LINEAR", *(cv2.resize(photo, s, interpolation=cv2.INTER_LINEAR) for s in sizes))
    digest("resize AREA", *(cv2.resize(photo, s, interpolation=cv2.INTER_AREA) for s in sizes))
    # pose.crop: the affine matrix and the bilinear warp
    boxes = np.abs(rng.randn(20, 4)) * [300, 200, 300, 200] + [[200, 100, 900, 700]]
    center, scale = pose.box_center_scale(boxes, (384, 288))
    matrices = [pose.crop_matrix(c, s, (384, 288)) for c, s in zip(center, scale)]
    digest("getAffineTransform", *matrices)
    digest(
        "warpAffine LINEAR", *(pose.crop(photo, c, s, (384, 288)) for c, s in zip(center, scale))
    )
    # render: limbs, joints, the dimming table, hand lines (cv2.line and ours)
    canvas = np.zeros((480, 640, 3), np.uint8)
    for x, y, a, b in shapes:
        polygon = cv2.ellipse2Poly(
            (int(x), int(y)), (int(abs(a)) % 300, 4), int(b) % 360, 0, 360, 1
        )
        cv2.fillConvexPoly(canvas, polygon, (int(a) % 256, 90, 200))
    digest("ellipse2Poly + fillConvexPoly", canvas)
    canvas = np.zeros((480, 640, 3), np.uint8)
    for x, y, r, _ in shapes:
        cv2.circle(canvas, (int(x), int(y)), int(abs(r)) % 6, (int(r) % 256, 200, 90), -1)
    digest("circle", canvas)
    digest("LUT", cv2.LUT(photo, render._DIM_TABLE))
    lines = np.zeros((480, 640, 3), np.uint8)
    ours = lines.copy()
    for x0, y0, x1, y1 in shapes:
        cv2.line(lines, (int(x0), int(y0)), (int(x1), int(y1)), (255, int(x0) % 256, 0), 2)
        raster.thick_line(ours, (int(x0), int(y0)), (int(x1), int(y1)), 2, (255, int(x0) % 256, 0))
    digest("line, thickness 2", lines)
    digest("raster.thick_line", ours)
    return out


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def prepare(venv: Path, package: str, version: str, numpy: str | None) -> str | None:
    """Create the venv and install into it; the reason when this OpenCV cannot be installed."""
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)], check=True)
    numpy_spec = numpy or ("numpy<2" if version in NUMPY1_ONLY else "numpy")
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    out = run([*pip, f"{package}=={version}.*", numpy_spec, *OTHER_DEPENDENCIES, BUILD])
    if out.returncode:  # pip's reason: the conflict, else its last error
        lines = [line.strip() for line in out.stderr.splitlines()]
        lines = [line for line in lines if "depends on" in line] or [
            line for line in lines if "ERROR" in line
        ]
        return (lines[-1] if lines else out.stderr.strip()[-200:]).replace("ERROR: ", "")
    # The work tree as it is now (reinstalled on every run, so a rerun tests the new code).
    run([*pip, "--no-deps", "--no-build-isolation", "--force-reinstall", str(ROOT)], check=True)
    return None


def golden(venv: Path) -> str:
    """The golden tests' outcome in the venv."""
    python = str(venv / "bin" / "python")
    # The tests run from a copy outside the work tree (whose __init__.py is ComfyUI's entry
    # point, which pytest would import), so the installed package is what they test.
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
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flavours", nargs="+", choices=FLAVOURS, default=list(FLAVOURS))
    parser.add_argument("--versions", nargs="+", default=list(VERSIONS))
    parser.add_argument("--numpy", help='a numpy requirement for every venv, e.g. "numpy==2.4.*"')
    parser.add_argument("--venvs", type=Path, default=Path("/tmp/dwpose-opencv-matrix"))
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:  # inside a venv
        print(json.dumps(probe()))
        return 0

    versions = list(dict.fromkeys([REFERENCE, *args.versions]))  # the reference first
    print(f"| package | asked | OpenCV, numpy | golden tests (tests/{TESTS[0]}) |")
    print("|---|---|---|---|")
    calls, failures = {}, 0
    for flavour in args.flavours:
        package = FLAVOURS[flavour]
        for version in versions:
            numpy_tag = re.sub(r"[^0-9a-z.]", "", args.numpy or "")
            venv = args.venvs / f"{flavour}-{version}{'-' + numpy_tag if numpy_tag else ''}"
            reason = prepare(venv, package, version, args.numpy)
            if reason:
                print(f"| {package} | {version} | - | not installable: {reason} |", flush=True)
                continue
            # From / and by file name: the venv's installed package, not the work tree.
            out = run([str(venv / "bin" / "python"), __file__, "--probe"], cwd="/")
            if out.returncode:
                error = out.stderr.strip().splitlines()[-1][:120]
                print(f"| {package} | {version} | - | import fails: {error} |", flush=True)
                failures += 1
                continue
            found = json.loads(out.stdout)
            result = golden(venv)
            failures += " 0 failed" not in result
            calls[(package, version)] = found
            print(f"| {package} | {version} | {found['versions']} | {result} |", flush=True)

    reference = next((v for (_, version), v in calls.items() if version == REFERENCE), None)
    if reference:
        names = [name for name in reference if name != "versions"]
        flavour = {package: name for name, package in FLAVOURS.items()}
        columns = [f"{flavour[package]} {version}" for package, version in calls]
        print(f"\n| OpenCV call | {' | '.join(columns)} |")
        print(f"|---|{'---|' * len(calls)}")
        for name in names:
            marks = ["=" if found[name] == reference[name] else "DIFF" for found in calls.values()]
            print(f"| {name} | {' | '.join(marks)} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
