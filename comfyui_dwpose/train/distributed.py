"""One code path from one CPU process to many GPUs and nodes: torchrun + DDP.

Launched plainly, the trainer is one process. Launched by ``torchrun`` (which sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous for every node), each process
joins the default group (NCCL on CUDA, gloo on the CPU) and trains a shard of every batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> World:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank if chosen.index is None else chosen.index)
        torch.cuda.set_device(chosen)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return World(rank, size, chosen)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(values: dict[str, float], world: World) -> dict[str, float]:
    """The average of each value over all processes (identity for one process)."""
    if world.size == 1:
        return values
    names = sorted(values)
    tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor)
    return dict(zip(names, (tensor / world.size).tolist()))


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()
