"""Distributed training: the process group torchrun describes in the environment, or one process.

``batch_size`` is the global batch, split evenly over the processes; rank 0 alone writes files (and,
in ``train_and_evaluate``, evaluates). Every collective goes through :class:`Distributed`, so one process needs no process group.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device_request: str) -> Distributed:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        owns = False
        if not dist.is_initialized():
            use_cuda = device_request.startswith("cuda") or (
                device_request == "auto" and torch.cuda.is_available())
            backend = "nccl" if use_cuda else "gloo"
            if use_cuda:
                torch.cuda.set_device(local_rank)  # else every rank's collectives use GPU 0
            dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))
            owns = True
        return cls(rank, local_rank, world_size, owns)

    def all_reduce(self, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Sum over processes (NCCL needs the tensor on the GPU); returns a CPU tensor."""
        if not self.active:
            return tensor
        on_device = tensor.to(device)
        dist.all_reduce(on_device)
        return on_device.cpu()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def is_main_process() -> bool:
    """Whether this process is rank 0 of a torchrun launch (or not launched by torchrun), read from
    the environment without joining a process group."""
    return int(os.environ.get("RANK", "0")) == 0
