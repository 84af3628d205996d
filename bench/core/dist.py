"""Where this process stands in a ``torchrun`` job (rank and world size; a world of one without torchrun): what
sharded evaluation (``bench.sharding``) and data-parallel training (``bench.train.loop``) both need."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> DistInfo:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(torch_dist.get_rank(), torch_dist.get_world_size())
