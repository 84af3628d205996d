"""Automatic batch splitting: when an attack batch does not fit on the device, halve it and retry.

Every sample's attack depends only on its own seed (see ``attacks.base.sample_noise``), so splitting a batch never
changes a result — it only costs some speed. The smaller size is remembered for the rest of the batch's protocol.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")


class BatchSplitter:
    """Runs a function over consecutive chunks of an index tensor, halving the chunk after an out-of-memory error."""

    def __init__(self, max_rows: int | None = None, verbose: bool = True):
        self.max_rows = max_rows  # None: the whole index at once until the first out-of-memory error
        self.verbose = verbose
        self.splits = 0  # how many times the chunk size was halved (reported in run cards)

    def map(self, fn: Callable[[torch.Tensor], T], idx: torch.Tensor) -> Iterator[tuple[torch.Tensor, T]]:
        """Yield ``(chunk, fn(chunk))`` for chunks covering ``idx`` in order."""
        start = 0
        while start < idx.numel():
            size = idx.numel() - start if self.max_rows is None else self.max_rows
            chunk = idx[start:start + size]
            try:
                result = fn(chunk)
            except torch.OutOfMemoryError:
                if chunk.numel() <= 1:
                    raise
                self._halve(chunk.numel())
                continue
            yield chunk, result
            start += chunk.numel()

    def _halve(self, failed: int) -> None:
        self.max_rows = max(failed // 2, 1)
        self.splits += 1
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self.verbose:
            print(f"out of memory with {failed} images per attack batch; retrying with {self.max_rows}",
                  file=sys.stderr)
