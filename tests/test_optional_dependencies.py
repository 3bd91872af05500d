"""`pip install -e ".[onnx]"` alone runs `dwpose`: the optional packages are imported where
they are used, and a missing one is one line naming the extra that brings it.

Each command runs in a fresh Python whose import system refuses the optional packages
(a `sitecustomize` on PYTHONPATH installs the block before anything else is imported), so
the test reads the same in the dev environment, which has them all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

OPTIONAL = ("scipy", "av", "torch", "safetensors", "onnx", "diffusers", "transformers", "ray")
BLOCKER = """\
import importlib.abc, os, sys

BLOCKED = set(os.environ["DWPOSE_TEST_BLOCK"].split())


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)


sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("blocker")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    return folder


def run(blocker: Path, code: str, cwd: Path, blocked=OPTIONAL) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)]),
        "DWPOSE_TEST_BLOCK": " ".join(blocked),
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )


def dwpose(blocker: Path, *args: str, cwd: Path, blocked=OPTIONAL) -> subprocess.CompletedProcess:
    code = f"import sys; from comfyui_dwpose.cli import main; sys.exit(main({list(args)!r}))"
    return run(blocker, code, cwd, blocked)


def test_the_block_works(blocker, tmp_path):
    done = run(blocker, "import scipy", tmp_path)
    assert "No module named 'scipy' (blocked by the test)" in done.stderr


def test_images_need_no_optional_package(blocker, standins, coco_images, tmp_path):
    image = coco_images["000000000785"]
    models = ["--detector", str(standins["det"]), "--pose-model", str(standins["pose"])]

    done = dwpose(blocker, "--help", cwd=tmp_path)
    assert done.returncode == 0 and "usage: dwpose" in done.stdout, done.stderr
    done = dwpose(blocker, "download", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "dw-ll_ucoco_384.onnx (default)" in done.stdout, done.stderr

    done = dwpose(blocker, "pose", str(image), "-o", "out", *models, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(2 people)" in done.stdout
    done = dwpose(blocker, "render", "out/000000000785.json", "-o", "maps", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    png = (tmp_path / "maps" / "000000000785.png").read_bytes()
    assert png == (tmp_path / "out" / "000000000785.png").read_bytes()

    # The library and the preprocessor too (a PIL map needs neither torch nor diffusers).
    code = (
        "import sys; from PIL import Image; from comfyui_dwpose import DWPosePreprocessor; "
        f"pre = DWPosePreprocessor({str(standins['det'])!r}, {str(standins['pose'])!r}); "
        f"print(pre(Image.open({str(image)!r})).size); "
        f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))"
    )
    done = run(blocker, code, tmp_path)
    assert done.stdout.splitlines() == ["(768, 512)", "[]"], done.stderr


@pytest.mark.parametrize(
    ("args", "blocked", "package", "extra"),
    [
        (["video", "dance.mp4", "-o", "out"], OPTIONAL, "av", "video"),
        (["video", "dance.mp4", "-o", "out"], ["scipy"], "scipy", "video"),
        (["video", "dance.mp4", "-o", "out", "--ray"], ["ray"], "ray", "ray"),
        (["convert", "pose.onnx", "-o", "pose.safetensors"], OPTIONAL, "torch", "torch"),
        (["pose", "skier.jpg", "-o", "out", "--backend", "torch"], OPTIONAL, "torch", "torch"),
        (["pose", "skier.jpg", "-o", "out", "--pose-model", "pose.safetensors"],
         ["safetensors"], "safetensors", "torch"),
    ],
)  # fmt: skip
def test_a_missing_package_is_one_line_naming_the_extra(
    blocker, standins, coco_images, tmp_path, args, blocked, package, extra
):
    (tmp_path / "pose.safetensors").write_bytes(b"")  # never read: the import comes first
    (tmp_path / "pose.onnx").write_bytes(standins["pose"].read_bytes())
    (tmp_path / "skier.jpg").write_bytes(coco_images["000000000785"].read_bytes())
    (tmp_path / "dance.mp4").write_bytes(b"")
    if args[0] == "pose":
        args = [*args, "--detector", str(standins["det"])]
        if "--pose-model" not in args:
            args += ["--pose-model", "pose.onnx"]
    done = dwpose(blocker, *args, cwd=tmp_path, blocked=blocked)
    assert done.returncode == 3
    [line] = done.stderr.splitlines()
    assert line.startswith("dwpose: error: ") and f"needs {package}, which is not installed" in line
    assert f'pip install -e ".[{extra}]"' in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_library_calls_name_the_extra(blocker, standins, coco_images, tmp_path):
    code = (
        "from comfyui_dwpose import DWPosePreprocessor\n"
        "from comfyui_dwpose.images import load_image\n"
        f"pre = DWPosePreprocessor({str(standins['det'])!r}, {str(standins['pose'])!r})\n"
        f"image = load_image({str(coco_images['000000000785'])!r})\n"
        "for options in ({'track': True}, {'output_type': 'pt'}):\n"
        "    try:\n"
        "        pre([image, image], image_resolution=64, **options)\n"
        "    except ImportError as exc:\n"
        "        print(type(exc).__name__, exc)\n"
    )
    done = run(blocker, code, tmp_path)
    assert done.stdout.splitlines() == [
        'MissingExtraError tracking needs scipy, which is not installed: pip install -e ".[video]" '
        "in the comfyui-dwpose folder (or pip install scipy)",
        "MissingExtraError output_type='pt' needs torch, which is not installed: "
        'pip install -e ".[torch]" in the comfyui-dwpose folder (or pip install torch)',
    ], done.stderr
