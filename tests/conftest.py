"""Shared fixtures: the reference data in tests/data and stand-in models.

Real DWPose weights are not reachable here. The golden references were made upstream
with stand-in models of the official signatures (tests/data/golden/README.md); other tests
export the official architectures with seeded weights from comfyui_dwpose.nets.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
IMAGE_IDS = ("000000000785", "000000040083", "000000196141", "000000197388")
HF_COMMIT = "5e1c3f7a9b2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e"


@pytest.fixture(scope="session")
def golden() -> Path:
    """Upstream DWPose outputs on stand-in models (tests/data/golden/README.md)."""
    return DATA / "golden"


@pytest.fixture(scope="session")
def openmmlab() -> Path:
    """Seeded official OpenMMLab nets: state dicts and outputs (tests/data/openmmlab/README.md)."""
    return DATA / "openmmlab"


@pytest.fixture(scope="session")
def coco_images() -> dict[str, Path]:
    return {i: DATA / "coco" / f"{i}.jpg" for i in IMAGE_IDS}


@pytest.fixture(scope="session")
def standins(golden: Path) -> dict[str, Path]:
    """The golden stand-in models: det.onnx, det_empty.onnx, pose.onnx."""
    return {name: golden / "models" / f"{name}.onnx" for name in ("det", "det_empty", "pose")}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Official architectures at small sizes with seeded weights, exported to ONNX:
    YOLOX-nano at 416 (fixed batch 1, as DWPose's yolox_l.onnx) and RTMPose-t at 256x192
    (dynamic batch)."""
    import torch

    from comfyui_dwpose.nets import build_model, export_onnx

    folder = tmp_path_factory.mktemp("tiny_models")
    torch.manual_seed(0)
    detector = build_model("yolox-nano").eval()
    pose = build_model("rtmpose-t", input_size=(256, 192)).eval()
    return {
        "det": export_onnx(detector, folder / "yolox_nano.onnx", dynamic_batch=False),
        "pose": export_onnx(pose, folder / "rtmpose_t.onnx"),
    }


def add_to_hf_cache(cache: Path, repo_id: str, filename: str, data: bytes) -> Path:
    """Place a file the way hf_hub_download leaves it (blob named by its sha256, snapshot
    link, refs/main); returns the snapshot path."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    snapshot = repo / "snapshots" / HF_COMMIT / filename
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(HF_COMMIT)
    return snapshot


def current_umask() -> int:
    """The process's umask (new files get 0o666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def outputs_in(folder: Path) -> list[str]:
    """Names in an output folder, sorted, partial files included; without the lock folder
    that output writers keep there (comfyui_dwpose.files)."""
    from comfyui_dwpose.files import LOCKS

    return sorted(p.name for p in Path(folder).iterdir() if p.name != LOCKS)


def assert_same_image(got: np.ndarray, expected: np.ndarray) -> None:
    """Pixel-exact equality, reporting how many pixels differ when it fails."""
    assert got.shape == expected.shape and got.dtype == expected.dtype
    differ = int((got != expected).any(axis=-1).sum())
    assert differ == 0, f"{differ} pixels differ"
