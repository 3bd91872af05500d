"""Top-down predictions of a pose model over an evaluation dataset, in COCO-WholeBody's
results format, with mmpose's flip test.

Flip test (mmpose ``RTMCCHead.predict``): the crop is also run mirrored; its x logits are
reversed over the bins, both axes' keypoints swapped left/right, and the two runs' logits
averaged before decoding. Decoding and the map back to image pixels are the inference
path's (``comfyui_dwpose.pose``). Each result's ``score`` is the box score (1 for
ground-truth boxes) and ``area`` the crop's area, which ``dwpose eval --rescore`` uses as
mmpose does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..pose import decode, to_image
from ..schema import FLIP_INDICES
from .batches import normalize
from .coco_eval import results_entry


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Sequence,
    input_size: tuple[int, int],
    flip_test: bool = True,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[dict]:
    """Results-format dicts for every sample of ``dataset`` (samples carry ``meta``)."""
    model = model.eval().to(device)
    flip = torch.tensor(FLIP_INDICES, device=device)
    results = []
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc="predict", unit="batch", disable=not progress):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = torch.stack([torch.as_tensor(s["image"]) for s in samples]).to(device)
        inputs = normalize(images)
        simcc_x, simcc_y = model(inputs)
        if flip_test:
            flipped_x, flipped_y = model(inputs.flip(-1))
            simcc_x = (simcc_x + flipped_x[:, flip].flip(-1)) * 0.5
            simcc_y = (simcc_y + flipped_y[:, flip]) * 0.5
        locs, scores = decode(simcc_x.float().cpu().numpy(), simcc_y.float().cpu().numpy())
        for sample, loc, score in zip(samples, locs, scores):
            meta = sample["meta"]
            center = np.asarray(meta["center"], np.float64)[None]
            scale = np.asarray(meta["scale"], np.float64)[None]
            points = to_image(loc[None], center, scale, input_size)[0]
            entry = results_entry(
                int(meta["image_id"]),
                np.concatenate([points, score[:, None]], axis=1),
                float(meta.get("box_score", 1.0)),
                area=float(scale[0, 0] * scale[0, 1]),
            )
            results.append(entry)
    return results
