"""Sharding one evaluation over the processes of a ``torchrun`` job (GPUs, hosts; gloo on CPU).

Every per-sample result depends only on the sample and the run seed (random starts are seeded per sample), so a
sample computes the same wherever it runs; a cell's samples are dealt out round-robin, each process writes its own
batch files into the shared run directory, and rank 0 — which holds the run's lock for the whole job — merges them
into the metric rows once every rank has finished. Without torchrun this is a world of one and costs nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as torch_dist

from bench.core.dist import DistInfo
from bench.core.errors import BenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Shards(DistInfo):
    """This process's place in the job (``rank`` of ``world``), with what evaluation needs to coordinate."""

    def mine(self, items: list[T]) -> list[T]:
        """This process's share of ``items``: every ``world``-th, starting at ``rank``."""
        return items[self.rank::self.world]

    def barrier(self) -> None:
        if self.world > 1:
            torch_dist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj if self.main else None]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: T) -> list[T]:
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out

    def rank0_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 first (downloads, training, cache fills), then on the others, which then find its
        results cached. A user error on rank 0 is raised on every rank instead of leaving them waiting."""
        if self.world == 1:
            return fn()
        error, result = None, None
        if self.main:
            try:
                result = fn()
            except BenchError as exc:
                error = str(exc)
        error = self.broadcast(error)
        if error is not None:
            raise BenchError(error)
        return result if self.main else fn()


def init(device: torch.device) -> tuple[Shards, torch.device]:
    """The shards of this process (from torchrun's environment) and the device it should use: under torchrun,
    ``cuda`` means this process's own GPU (``LOCAL_RANK``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return Shards.from_env(device), device


def relaunch_with_torchrun(nproc: int, argv: list[str]) -> int:
    """Start ``nproc`` copies of this command under torchrun (which sets RANK/WORLD_SIZE for DDP)."""
    rest = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "bench", *rest]
    return subprocess.call(cmd)
