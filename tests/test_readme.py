"""The README's examples run as written.

Every ```python block of README.md runs in its own fresh Python, in a folder holding the
files the examples name (dancer.jpg, dance.mp4), offline, against a Hugging Face cache
that holds stand-ins under the real names: the golden stand-in detector and pose model as
yzd-v/DWPose's yolox_l.onnx and dw-ll_ucoco_384.onnx (the registry's size and sha256 pins
are set to the stand-ins' before the example runs), and toy diffusers models as the SD 1.5,
ControlNet and AnimateDiff repositories (tests/tiny_diffusers.py). Nothing is mocked: the
real huggingface_hub, diffusers and our code read that cache. Every `dwpose` command line
of the ```sh blocks must parse.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, add_to_hf_cache
from PIL import Image

from comfyui_dwpose import cli, hub

README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
SH_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
STAND_INS = {"yolox_l.onnx": "det", "dw-ll_ucoco_384.onnx": "pose"}  # registry name: stand-in
PRELUDE = """\
import dataclasses, runpy, sys
from comfyui_dwpose import hub

for name, (sha256, size) in {pins!r}.items():  # the stand-ins' own, so they verify
    hub.REGISTRY[name] = dataclasses.replace(hub.REGISTRY[name], sha256=sha256, size=size)
runpy.run_path(sys.argv[1], run_name="__main__")
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, standins, coco_images) -> tuple[Path, dict]:
    """A folder with the examples' input files, and the environment to run them in."""
    import tiny_diffusers

    folder = tmp_path_factory.mktemp("readme")
    photo = coco_images["000000000785"]
    (folder / "dancer.jpg").write_bytes(photo.read_bytes())
    # 576x384 frames: 768x512 maps, as the photo's, sides the toy pipelines take (x16).
    frame = Image.open(photo).convert("RGB").resize((576, 384))
    write_video(folder / "dance.mp4", np.asarray(frame))

    cache = tmp_path_factory.mktemp("hf_cache")
    for name, stand_in in STAND_INS.items():
        add_to_hf_cache(cache, "yzd-v/DWPose", name, standins[stand_in].read_bytes())
    for repo_id, repo in tiny_diffusers.hub_repos(tmp_path_factory.mktemp("repos")).items():
        for file in sorted(p for p in repo.rglob("*") if p.is_file()):
            add_to_hf_cache(cache, repo_id, file.relative_to(repo).as_posix(), file.read_bytes())
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
        "OMP_NUM_THREADS": "1",  # toy models: threads cost more than they bring (10x here)
    }
    env.pop("DWPOSE_MODELS_DIR", None)
    return folder, env


def write_video(path: Path, image: np.ndarray, count: int = 2) -> None:
    """A short H.264 video of the image sliding right, 8 px a frame."""
    import av

    h, w = image.shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(count):
            frame = np.ascontiguousarray(np.roll(image, 8 * i, axis=1))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def test_readme_has_the_examples():
    assert len(PYTHON_BLOCKS) == 4
    assert "make demo" in README and "make test" in README


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_example_runs_as_written(workdir, standins, index):
    folder, env = workdir
    pins = {
        name: (hub.file_sha256(standins[stand_in]), standins[stand_in].stat().st_size)
        for name, stand_in in STAND_INS.items()
    }
    script = folder / f"example_{index}.py"
    script.write_text(PYTHON_BLOCKS[index])
    code = PRELUDE.format(pins=pins)
    done = subprocess.run(
        [sys.executable, "-c", code, str(script)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"README example {index}:\n{PYTHON_BLOCKS[index]}\n{done.stderr}"


def test_command_lines_parse():
    lines = [
        line for block in SH_BLOCKS for line in block.splitlines() if line.startswith("dwpose ")
    ]
    assert len(lines) >= 8
    for line in lines:
        args = shlex.split(line, comments=True)[1:]
        assert cli._parser().parse_args(args).command == args[0], line
