"""The shipped workflows in a real ComfyUI server, through its HTTP API (POST /prompt, GET
/history, GET /view), on the CPU with the test models.

Skipped unless COMFYUI_PATH names a ComfyUI checkout; COMFYUI_PYTHON is the Python that
has ComfyUI's requirements (default: this one). COMFYUI_CONTROLNET_AUX, when set, names a
comfyui_controlnet_aux checkout that is linked in beside this pack. Everything else lives
in a temporary base directory: this pack linked into its custom_nodes/, the golden
stand-in models placed in models/dwpose/ under the registry's names (other bytes than the
registry's: used after the signature check, with a log line), the example inputs copied
into input/ by the pack itself.

    COMFYUI_PATH=~/ComfyUI COMFYUI_PYTHON=~/comfy-venv/bin/python \\
        .venv/bin/pytest -q tests/test_comfyui_server.py -s
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_dwpose.render import render_pose
from comfyui_dwpose.result import load_json

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
COMFYUI = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFYUI, reason="COMFYUI_PATH (a ComfyUI checkout) not set")
START_TIMEOUT = 300  # s: a cold start imports torch and every core node
RUN_TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: Path, log: Path):
        self.base, self.log = base, log
        self.url = f"http://127.0.0.1:{free_port()}"
        python = os.environ.get("COMFYUI_PYTHON", sys.executable)
        command = [
            python, "main.py", "--cpu", "--disable-auto-launch", "--listen", "127.0.0.1",
            "--port", self.url.rsplit(":", 1)[1], "--base-directory", str(base),
            "--database-url", "sqlite:///:memory:",
        ]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("DWPOSE_MODELS_DIR", None)
        self.process = subprocess.Popen(
            command, cwd=COMFYUI, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.get("/system_stats")
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = self.log.read_text()[-4000:]
                    raise RuntimeError(f"ComfyUI did not start:\n{tail}") from None
                time.sleep(1)

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            body = response.read()
        return (
            json.loads(body) if response.headers.get_content_type() == "application/json" else body
        )

    def queue(self, prompt: dict) -> dict:
        request = urllib.request.Request(
            self.url + "/prompt",
            data=json.dumps({"prompt": prompt, "client_id": "dwpose-test"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"/prompt refused the workflow: {exc.read().decode()}") from exc

    def run(self, prompt: dict) -> tuple[dict, dict]:
        """Queue a prompt and wait for its /history entry: (the /prompt answer, the entry)."""
        answer = self.queue(prompt)
        prompt_id = answer["prompt_id"]
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
                return answer, history[prompt_id]
            time.sleep(0.5)
        raise AssertionError(f"prompt {prompt_id} did not finish in {RUN_TIMEOUT} s")

    def view(self, reference: dict) -> bytes:
        """An output file's bytes, fetched as the editor fetches it."""
        url = f"{self.url}/view?{urllib.parse.urlencode(reference)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory, golden):
    base = tmp_path_factory.mktemp("comfyui")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "comfyui-dwpose").symlink_to(ROOT, target_is_directory=True)
    aux = os.environ.get("COMFYUI_CONTROLNET_AUX")
    if aux:
        (base / "custom_nodes" / "comfyui_controlnet_aux").symlink_to(Path(aux).resolve())
    models = base / "models" / "dwpose"
    models.mkdir(parents=True)
    shutil.copy(golden / "models" / "det.onnx", models / "yolox_l.onnx")
    shutil.copy(golden / "models" / "pose.onnx", models / "dw-ll_ucoco_384.onnx")
    started = Server(base, base / "comfyui.log")
    yield started
    started.stop()
    print(f"\n--- ComfyUI log (tail) ---\n{started.log.read_text()[-3000:]}")


def workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}_api.json").read_text())


def outputs_of(entry: dict, node: str, key: str) -> list[dict]:
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry["outputs"][node][key]


def test_server_loads_the_pack_and_its_inputs(server):
    info = server.get("/object_info")
    for key in ("DWPoseWB_Estimator", "DWPoseWB_Render", "DWPoseWB_LoadKeypoints"):
        assert info[key]["python_module"].startswith("custom_nodes.")
    # Menus: the placed files under registry names, no label; no aux file in the wrong menu.
    detectors = info["DWPoseWB_Estimator"]["input"]["required"]["detector"][0]
    poses = info["DWPoseWB_Estimator"]["input"]["required"]["pose_model"][0]
    assert detectors[0] == "yolox_l.onnx" and poses[0] == "dw-ll_ucoco_384.onnx"
    assert not set(detectors) & set(poses)
    for name in ("dwpose_skier.jpg", "dwpose_skier_pan.mp4", "dwpose_skier_keypoints.json"):
        assert (server.base / "input" / name).read_bytes()
    # The core nodes the workflows use are defined as tests/data/comfyui_core_nodes.json says.
    core = json.loads((ROOT / "tests" / "data" / "comfyui_core_nodes.json").read_text())["nodes"]
    for key, recorded in core.items():
        live = info[key]
        assert live["input_order"] == recorded["input_order"], key
        assert live["output"] == recorded["output"], key


def test_keypoints_workflow(server):
    _, entry = server.run(workflow("dwpose_keypoints"))
    [image] = outputs_of(entry, "3", "images")
    got = np.asarray(Image.open(io.BytesIO(server.view(image))).convert("RGB"))
    frames = load_json(WORKFLOWS / "inputs" / "dwpose_skier_keypoints.json")
    assert np.array_equal(got, render_pose(frames)[0])


def test_video_workflow(server):
    _, entry = server.run(workflow("dwpose_video"))
    [video] = outputs_of(entry, "7", "images")
    assert video["filename"].endswith(".mp4") and server.view(video)[4:8] == b"ftyp"
    [reference] = outputs_of(entry, "8", "keypoints")
    assert reference["type"] == "output" and reference["subfolder"] == "dwpose"
    saved = json.loads(server.view(reference))
    assert len(saved) == 24 and all(f["canvas_width"] == 512 for f in saved)
    assert any(f["people"] for f in saved)


def test_controlnet_workflow_runs_up_to_the_sampler_without_models(server):
    answer, entry = server.run(workflow("dwpose_controlnet"))
    # No checkpoint or ControlNet installed: those loaders are refused, the pose map runs.
    refused = {v["class_type"] for v in answer["node_errors"].values()}
    print(f"\nnode_errors: {json.dumps(answer['node_errors'])[:600]}")
    assert refused == {"CheckpointLoaderSimple", "ControlNetLoader"}
    [image] = outputs_of(entry, "3", "images")
    assert Image.open(io.BytesIO(server.view(image))).size == (771, 512)


def test_placed_registry_files_are_used_and_logged(server):
    log = server.log.read_text()
    assert "is not the registry's yolox_l.onnx" in log
    assert "is not the registry's dw-ll_ucoco_384.onnx" in log
