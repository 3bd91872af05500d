"""The training loop: one function from one CPU process to torchrun on many GPUs.

Per iteration: normalise the uint8 crops on the device, the distiller's losses (under
autocast when asked), the GT loss scaled to ``kpt_loss_batch`` crops per process, backward
(DDP averages gradients), gradient norm clipped, AdamW step, learning-rate step, EMA
update. A checkpoint (``last.pt``) is written every ``checkpoint_every`` iterations and at
every epoch's end; an existing one in the output folder is resumed exactly (weights, EMA,
optimiser, scheduler, scaler, generators, position in the epoch's sample order). Logs:
tqdm, ``metrics.jsonl`` (one line per ``log_every`` iterations, losses averaged over
processes) and TensorBoard when installed. At the end the averaged weights are exported
as ``model.safetensors``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch
from torch import nn
from tqdm import tqdm

from . import checkpoint
from .batches import Collate, EpochBatches, SeededSamples, normalize, steps_per_epoch
from .distiller import Distiller, Supervised, deploy_state_dict
from .distributed import World, barrier, mean_over_processes, setup, teardown
from .ema import EMA
from .export import save_pose_model
from .presets import TrainConfig
from .schedule import Schedule, build_optimizer
from .sync_bn import convert_batchnorm

CHECKPOINT = "last.pt"
METRICS = "metrics.jsonl"
MODEL = "model.safetensors"
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingError(RuntimeError):
    """Settings or data that cannot train (a clear message, nothing half-written)."""


@dataclass
class Result:
    model: Path  # the exported deployable model
    checkpoint: Path
    iterations: int


def train(
    config: TrainConfig,
    dataset: Sequence,
    out_dir: str | Path,
    teacher_weights: dict[str, torch.Tensor] | None,
    student_weights: dict[str, torch.Tensor] | None = None,
    iterations: int | None = None,
    checkpoint_every: int = 500,
    log_every: int = 10,
    device: str = "auto",
    progress: bool = True,
) -> Result:
    """Train ``config`` on ``dataset`` into ``out_dir``, resuming a run found there.

    ``teacher_weights``: the teacher's pose-model state dict (None only when resuming, or
    with ``config.teacher`` None: the student trained on the labels alone).
    ``student_weights``: optional start for the student (a whole pose model, or
    ``backbone.*`` only, like mmpose's pretrained backbone). A dataset with ``set_epoch``
    is told each epoch before its samples are drawn (its augmentation randomness and its
    switch to the milder pipeline of the last epochs). ``iterations`` stops early
    (the schedule still spans ``config.epochs``).
    """
    out = Path(out_dir)
    world = setup(device)
    try:
        return _Run(config, dataset, out, world).run(
            teacher_weights, student_weights, iterations, checkpoint_every, log_every, progress
        )
    finally:
        teardown()


class _Run:
    def __init__(
        self,
        config: TrainConfig,
        dataset: Sequence,
        out: Path,
        world: World,
    ) -> None:
        self.steps = steps_per_epoch(len(dataset), config.batch_size)
        if self.steps == 0:
            raise TrainingError(
                f"the dataset has {len(dataset)} samples, fewer than one batch of {config.batch_size}"
            )
        if config.teacher is None and config.stage != 1:
            raise TrainingError("stage 2 needs a teacher: the stage-1 model")
        if config.batch_size % world.size:
            raise TrainingError(
                f"--batch-size {config.batch_size} must divide among {world.size} processes"
            )
        self.config, self.dataset = config, dataset
        self.out, self.world = out, world
        self.local_batch = config.batch_size // world.size
        self.total = config.epochs * self.steps

    def run(
        self, teacher_weights, student_weights, iterations, checkpoint_every, log_every, progress
    ):
        config, world = self.config, self.world
        torch.manual_seed(config.seed)
        if config.teacher is None:
            distiller = Supervised(config.student, config.input_size)
        else:
            distiller = Distiller(
                config.teacher,
                config.student,
                config.input_size,
                config.stage,
                config.frozen_teacher,
            )
        resume = self.out / CHECKPOINT
        saved = checkpoint.load(resume, world.device) if resume.exists() else None
        if saved is None:
            if config.teacher is not None:
                if teacher_weights is None:
                    raise TrainingError("a teacher's weights are needed to start training")
                _load(distiller.teacher, teacher_weights, "teacher")
            if student_weights is not None:
                _load_student(distiller.student, student_weights)
        else:
            self._check_same_run(saved["meta"])
            distiller.load_state_dict(checkpoint.raw_weights(saved))
        distiller.to(world.device)
        if world.size > 1:
            distiller = convert_batchnorm(distiller, world.device)
        schedule = Schedule(
            self.steps, *config.cosine, config.warmup_iters, min_lr_ratio=config.min_lr_ratio
        )
        optimizer, scheduler = build_optimizer(
            distiller, config.peak_lr, config.weight_decay, schedule
        )
        ema = EMA(distiller, config.ema_momentum)
        scaler = torch.amp.GradScaler(world.device.type, enabled=config.precision == "fp16")
        start = 0
        if saved is not None:
            ema.load_state_dict(
                {"steps": saved["ema_state_dict"]["steps"], "state": saved["state_dict"]}
            )
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            scaler.load_state_dict(saved["scaler"])
            checkpoint.set_rng_state(saved["rng"])
            start = int(saved["meta"]["iteration"])
        model = distiller
        if world.size > 1:
            device_ids = [world.device.index] if world.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(distiller, device_ids=device_ids)
        stop = min(self.total, iterations or self.total)
        log = _Log(self.out, world, start, progress, stop)
        trainable = [p for p in distiller.parameters() if p.requires_grad]
        iteration = start
        try:
            while iteration < stop:
                epoch, position = divmod(iteration, self.steps)
                distiller.train()
                for batch in self._loader(epoch, position):
                    lr = optimizer.param_groups[0]["lr"]  # this iteration's
                    values = self._step(model, batch, epoch, optimizer, scaler, trainable)
                    scheduler.step()
                    ema.update(distiller)
                    iteration += 1
                    values["lr"] = lr
                    log.step(iteration, epoch, values, log_every)
                    if (
                        iteration % checkpoint_every == 0
                        or iteration % self.steps == 0
                        or iteration == stop
                    ):
                        self._save(distiller, ema, optimizer, scheduler, scaler, iteration)
                    if iteration >= stop:
                        break
        finally:
            log.close()
        model_path = self.out / MODEL
        if world.is_main:
            deployable = deploy_state_dict(ema.state, config.stage)
            save_pose_model(deployable, config.student, config.input_size, model_path)
        barrier(world)
        return Result(model_path, resume, iteration)

    def _loader(self, epoch: int, position: int) -> torch.utils.data.DataLoader:
        config = self.config
        data = self.dataset
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)  # workers are forked per epoch (not persistent): they see it
        if config.workers:
            cv2.setNumThreads(0)  # a worker forked beside OpenCV's thread pool hangs in it
        sampler = EpochBatches(
            len(data),
            config.batch_size,
            config.seed,
            epoch,
            self.world.rank,
            self.world.size,
            position,
        )
        return torch.utils.data.DataLoader(
            SeededSamples(data),
            batch_sampler=sampler,
            num_workers=config.workers,
            collate_fn=Collate(config.input_size, config.sigma),
            pin_memory=self.world.device.type == "cuda",
        )

    def _step(self, model, batch, epoch, optimizer, scaler, trainable) -> dict[str, float]:
        config, device = self.config, self.world.device
        inputs = normalize(batch["image"].to(device, non_blocking=True))
        targets = [
            batch[k].to(device, non_blocking=True) for k in ("x_labels", "y_labels", "weights")
        ]
        with torch.autocast(
            device.type, AUTOCAST.get(config.precision), enabled=config.precision in AUTOCAST
        ):
            losses = model(inputs, *targets, epoch, config.epochs)
        if "loss_kpt" in losses:
            losses["loss_kpt"] = losses["loss_kpt"] * (config.kpt_loss_batch / self.local_batch)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise TrainingError(
                f"the loss is {total.item()} at epoch {epoch}; lower --lr or check the data"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
        grad_norm = nn.utils.clip_grad_norm_(trainable, config.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        values = {name: value.item() for name, value in losses.items()}
        values["loss"] = total.item()
        values["grad_norm"] = grad_norm.item()
        return values

    def _save(self, distiller, ema, optimizer, scheduler, scaler, iteration: int) -> None:
        if not self.world.is_main:
            return
        checkpoint.save(
            self.out / CHECKPOINT,
            meta={
                "iteration": iteration,
                "config": self.config.to_dict(),
                "world_size": self.world.size,
            },
            **checkpoint.weights(distiller.state_dict(), ema.state, ema.steps),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
            rng=checkpoint.rng_state(),
        )

    def _check_same_run(self, meta: dict) -> None:
        saved = {k: v for k, v in meta["config"].items() if k != "workers"}
        wanted = {k: v for k, v in self.config.to_dict().items() if k != "workers"}
        differ = sorted(k for k in wanted if _plain(saved.get(k)) != _plain(wanted[k]))
        if differ:
            raise TrainingError(
                f"{self.out / CHECKPOINT} belongs to a run with other settings ({', '.join(differ)}); "
                "resume with the same settings or choose another output folder"
            )


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _load(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:3]
        raise TrainingError(
            f"the {what} weights do not fit its architecture: {' '.join(first)}"
        ) from exc


def _load_student(student: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """A whole pose model, or only ``backbone.*`` (mmpose's pretrained-backbone start)."""
    if any(k.startswith("head.") for k in state):
        _load(student, state, "student")
        return
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    _load(student.backbone, backbone, "student backbone")


class _Log:
    """tqdm, metrics.jsonl and TensorBoard on the main process."""

    def __init__(self, out: Path, world: World, start: int, progress: bool, stop: int) -> None:
        self.world = world
        self.main = world.is_main
        self.bar = self.tensorboard = None
        self.started = time.monotonic()
        if not self.main:
            return
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / METRICS
        _truncate_after(self.path, start)
        self.file = self.path.open("a")
        self.bar = tqdm(total=stop, initial=start, desc="train", unit="it", disable=not progress)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            pass
        else:
            self.tensorboard = SummaryWriter(str(out / "tensorboard"))

    def step(self, iteration: int, epoch: int, values: dict[str, float], every: int) -> None:
        if iteration % every:
            if self.bar is not None:
                self.bar.update(1)
            return
        values = mean_over_processes(values, self.world)
        if not self.main:
            return
        record = {
            "iteration": iteration,
            "epoch": epoch,
            **values,
            "time": time.monotonic() - self.started,
        }
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for name, value in values.items():
                self.tensorboard.add_scalar(f"train/{name}", value, iteration)
        self.bar.set_postfix(loss=f"{values['loss']:.4g}", lr=f"{values['lr']:.3g}")
        self.bar.update(1)

    def close(self) -> None:
        if self.main:
            self.file.close()
            self.bar.close()
            if self.tensorboard is not None:
                self.tensorboard.close()


def _truncate_after(path: Path, iteration: int) -> None:
    """Drop log lines of iterations after the resumed checkpoint (they will be redone)."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line and json.loads(line)["iteration"] <= iteration
    ]
    path.write_text("".join(line + "\n" for line in kept))
