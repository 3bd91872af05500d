"""Training checkpoints: everything an exact resume needs, in mmengine's weight layout.

``state_dict`` holds the averaged (EMA) distiller, the weights mmpose evaluates and
deploys, loadable into mmpose's ``DWPoseDistiller``; ``ema_state_dict`` holds ``steps`` and
the raw weights as ``module.<name>`` (mmengine's EMA hook swaps them the same way). Beside
them: optimiser, scheduler, gradient scaler, random generators, progress and the settings.
Files contain only tensors and plain containers (``torch.load(weights_only=True)``) and
are written under a temporary name, then renamed.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from .. import files


def save(path: Path, **parts) -> None:
    files.make_folder(path.parent)
    with files.replacing(path) as partial:
        torch.save(parts, partial)


def load(path: Path, device: torch.device) -> dict:
    return torch.load(path, map_location=device, weights_only=True)


def weights(raw: dict[str, torch.Tensor], averaged: dict[str, torch.Tensor], steps: int) -> dict:
    """mmengine's layout of the model and its EMA in a checkpoint."""
    ema_state = {"steps": torch.tensor(steps)}
    ema_state.update({f"module.{k}": v for k, v in raw.items()})
    return {"state_dict": dict(averaged), "ema_state_dict": ema_state}


def raw_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    ema_state = checkpoint["ema_state_dict"]
    return {k[len("module.") :]: v for k, v in ema_state.items() if k.startswith("module.")}


def rng_state() -> dict:
    """The global generators (NumPy's array as a tensor, so the file stays weights-only)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
