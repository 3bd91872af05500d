"""Top-down training and evaluation samples for torch: one person crop per item.

A sample is a dict (the contract with the loop and the evaluator):
- `image`: uint8 tensor [3, H, W], RGB, the affine-warped crop (normalised later, on the device);
- `keypoints`: float32 [K, 2], crop pixels; `visible`: float32 [K], 0/1 (points outside the
  crop stay visible: the SimCC targets give them no weight);
- `meta`: `index` (position in the dataset), `image_id`, `id` (annotation id or detection
  number), `box` (xyxy, image pixels, as annotated or detected), `box_score`, `image_size`
  (w, h), `center`, `scale` (w, h at the input's aspect ratio; its product is mmpose's
  prediction area), `rotation` (degrees), `flip`, `matrix` (2x3, image -> crop: invert it to
  map predictions back to image pixels).
`collate` stacks samples into a batch whose meta is a dict of tensors.

Randomness comes only from a numpy Generator seeded by (seed, epoch, index), so a sample
depends on nothing else: not on the worker, the order or earlier samples (exact resume).
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..images import ImageError
from .annotations import Records
from .augment import PRESETS, Augment, photometric, plan_crop, warp
from .presets import TrainConfig


class TopDownDataset(Dataset):
    """Person crops of `records` at `input_size` (h, w), augmented when `augment` is given.

    `final_augment` replaces `augment` from epoch `final_from_epoch` on (mmpose switches to a
    milder pipeline for the last 30 epochs). Call `set_epoch` before each epoch's iterator
    is made; DataLoader workers copy the dataset when the iterator starts, so do not use
    persistent workers with augmentation. Images that are not files raise at construction,
    or are left out with `skip_missing_images=True`.
    """

    def __init__(
        self,
        records: Records,
        input_size: tuple[int, int],
        augment: Augment | None = None,
        final_augment: Augment | None = None,
        final_from_epoch: int | None = None,
        seed: int = 0,
        skip_missing_images: bool = False,
    ) -> None:
        missing = records.missing_images()
        if missing.any() and not skip_missing_images:
            paths = [records.image_paths[row] for row in np.flatnonzero(missing)]
            shown = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
            raise FileNotFoundError(
                f"{len(paths)} image(s) of the annotations are not files: {shown}; check the "
                "image folder, or pass skip_missing_images=True to train on the others"
            )
        if missing.any():
            gone = missing[records.image_index]
            records = records.select(~gone)
            records.skipped["missing_image"] += int(gone.sum())
        if len(records) == 0:
            raise ValueError("no people to train or evaluate on (see records.skipped for why)")
        self.records = records
        self.input_size = tuple(input_size)
        self.augment = augment
        self.final_augment = final_augment
        self.final_from_epoch = final_from_epoch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose randomness (and pipeline) the next samples use."""
        self.epoch = epoch

    def current_augment(self) -> Augment | None:
        """The pipeline of the current epoch."""
        final = self.final_augment is not None and self.final_from_epoch is not None
        return self.final_augment if final and self.epoch >= self.final_from_epoch else self.augment

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        r = self.records
        row = r.image_index[index]
        width = int(r.image_sizes[row][0])
        augment = self.current_augment()
        rng = np.random.default_rng([self.seed, self.epoch, index]) if augment else None
        crop, keypoints, visible = plan_crop(
            r.boxes[index],
            r.keypoints[index],
            r.visible[index],
            width,
            self.input_size,
            augment,
            rng,
        )
        image = warp(read_image(r.image_paths[row]), crop.matrix, self.input_size)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if augment is not None:
            image = photometric(image, augment, rng)
        meta = {
            "index": index,
            "image_id": int(r.image_ids[row]),
            "id": int(r.ids[index]),
            "box": r.boxes[index],
            "box_score": float(r.box_scores[index]),
            "image_size": r.image_sizes[row],
            "center": crop.center,
            "scale": crop.scale,
            "rotation": crop.rotation,
            "flip": crop.flip,
            "matrix": crop.matrix,
        }
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "keypoints": torch.from_numpy(keypoints),
            "visible": torch.from_numpy(visible),
            "meta": meta,
        }


def training_set(records: Records, config: TrainConfig) -> TopDownDataset:
    """A run's training samples: its augmentation pair, the milder one from
    ``config.mild_epoch`` on, randomness from ``config.seed``."""
    if config.augment not in PRESETS:
        raise ValueError(f"unknown augmentation {config.augment!r}; known: {', '.join(PRESETS)}")
    main, final = PRESETS[config.augment]
    return TopDownDataset(
        records,
        config.input_size,
        main,
        final,
        final_from_epoch=config.mild_epoch,
        seed=config.seed,
    )


def read_image(path: str) -> np.ndarray:
    """An image file as BGR uint8, as mmpose's LoadImage (OpenCV decodes, EXIF applied)."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        reason = "no such file" if not os.path.isfile(path) else "not an image OpenCV can decode"
        raise ImageError(f"{path}: {reason}")
    return image


def collate(samples: list[dict]) -> dict:
    """A batch: stacked image, keypoints and visible; meta as a dict of stacked tensors."""
    meta = {
        key: torch.as_tensor(np.stack([np.asarray(s["meta"][key]) for s in samples]))
        for key in samples[0]["meta"]
    }
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "keypoints": torch.stack([s["keypoints"] for s in samples]),
        "visible": torch.stack([s["visible"] for s in samples]),
        "meta": meta,
    }


def make_loader(
    dataset: TopDownDataset,
    batch_size: int,
    sampler: torch.utils.data.Sampler | None = None,
    shuffle: bool = False,
    num_workers: int = 2,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader for the dataset: `num_workers` forked processes decode and warp (torch
    runs each on one thread); pinned memory when CUDA is there. Order comes from `sampler`
    (e.g. DistributedSampler) or `shuffle` with `generator`: the loop owns both, so it can
    resume mid-epoch.

    With workers, OpenCV's own threads are turned off in this process first, as mmengine
    does: a worker forked while OpenCV's thread pool exists hangs in its first OpenCV call
    that touches the pool, and the workers already use the cores."""
    if num_workers:
        cv2.setNumThreads(0)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=shuffle if sampler is None else False,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        generator=generator,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )
