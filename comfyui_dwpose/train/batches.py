"""Training batches in a reproducible order, with reproducible augmentation.

The dataset contract (what ``comfyui_dwpose.train.data`` builds): ``dataset[i]`` is a dict
with ``image`` (uint8 tensor [3,H,W], RGB, the warped crop), ``keypoints`` (float32
[K,2], crop pixels), ``visible`` (float32 [K] in [0,1]) and, for evaluation, ``meta``.

Order: every epoch is a permutation drawn from (seed, epoch); each step takes the next
global batch, split across processes; a partial last batch is dropped. Augmentation must
not depend on the worker, the process count or a resume in the middle of an epoch: the
datasets of ``train.data`` draw from generators seeded by (seed, epoch, index) after
``set_epoch``; for any other dataset each sample is also loaded with Python's, NumPy's and
torch's global generators seeded from (seed, epoch, position in the epoch).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from .simcc import simcc_labels

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


class EpochBatches(torch.utils.data.Sampler):
    """This process's share of the global batches of one epoch, from step ``start`` on.

    Yields lists of ``(index, sample_seed)``; process ``rank`` of ``world`` takes every
    ``world``-th sample of each global batch.
    """

    def __init__(
        self,
        size: int,
        global_batch: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world: int = 1,
        start: int = 0,
    ) -> None:
        if global_batch % world:
            raise ValueError(f"the batch size {global_batch} must divide among {world} processes")
        self.size, self.global_batch, self.seed, self.epoch = size, global_batch, seed, epoch
        self.rank, self.world, self.start = rank, world, start

    def __len__(self) -> int:
        return steps_per_epoch(self.size, self.global_batch) - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        for step in range(self.start, steps_per_epoch(self.size, self.global_batch)):
            first = step * self.global_batch
            positions = range(first + self.rank, first + self.global_batch, self.world)
            yield [(order[p], sample_seed(self.seed, self.epoch, p)) for p in positions]


def steps_per_epoch(size: int, global_batch: int) -> int:
    return size // global_batch


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


class SeededSamples(torch.utils.data.Dataset):
    """``dataset[index]`` loaded under generators seeded by the sample's seed."""

    def __init__(self, dataset: Sequence) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        with seeded(seed):
            return self.dataset[index]


@contextmanager
def seeded(seed: int):
    """Seed the global generators for a block and restore them afterwards."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])  # noqa: NPY002
        torch.set_rng_state(states[2])


class Collate:
    """Stack samples and add their SimCC targets (run in the loader's workers)."""

    def __init__(self, input_size: tuple[int, int], sigma: tuple[float, float]) -> None:
        self.input_size, self.sigma = input_size, sigma

    def __call__(self, samples: list[dict]) -> dict:
        keypoints = np.stack([np.asarray(s["keypoints"], np.float32) for s in samples])
        visible = np.stack([np.asarray(s["visible"], np.float32) for s in samples])
        x_labels, y_labels, weights = simcc_labels(keypoints, visible, self.input_size, self.sigma)
        batch = {
            "image": torch.stack([torch.as_tensor(s["image"]) for s in samples]),
            "x_labels": torch.from_numpy(x_labels),
            "y_labels": torch.from_numpy(y_labels),
            "weights": torch.from_numpy(weights),
        }
        if "meta" in samples[0]:
            batch["meta"] = [s["meta"] for s in samples]
        return batch


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB [N,3,H,W] (on any device) into the model's float input."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() - mean) / std
