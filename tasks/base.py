"""What a task is: data for a (suite, dataset), a per-batch evaluation producing per-sample records, and the
metrics computed from those records. The runner handles batching, storage, resume and progress. The helpers every
task shares live here, below all of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")


def true_flags(column: pd.Series) -> pd.Series:
    """A boolean column of per-sample records, whether it holds bools or the "True"/"False" text read back."""
    return column.astype(str).str.lower().eq("true")


def nonfinite_metric(records: pd.DataFrame) -> Metric:
    """How many samples met NaN/Inf (their ``nonfinite`` flag), reported instead of poisoning the aggregate."""
    return Metric("nonfinite_samples", float(true_flags(records["nonfinite"]).sum()))


@dataclass(frozen=True)
class EvalContext:
    """How to evaluate one cell: the attack protocol, its budget and where to run."""

    protocol: Any  # attacks.protocols.Protocol (or a task-specific protocol)
    eps: float
    seed: int
    device: torch.device
    precision: str = "fp32"
    backend: str = "native"


class Task(Protocol):
    name: str
    headline_metric: str  # the metric report tables show
    metric_definition: str  # what the metrics mean, in words; part of every cell's identity

    def load(self, suite, dataset: str, n_samples: int, seed: int) -> Any: ...

    def sample_ids(self, data) -> list[str]: ...

    def evaluate(self, encoder, data, rows: list[int], ctx: EvalContext) -> list[dict]: ...

    def metrics(self, records: pd.DataFrame, attacked: bool) -> list[Metric]: ...


def attack_seeds(seed: int, indices) -> torch.Tensor:
    """One seed per sample, from the run seed and the sample's index: batching never changes a random start."""
    return torch.as_tensor([seed * 1_000_003 + int(i) for i in indices], dtype=torch.long)


def to_float(images_u8: np.ndarray, device) -> torch.Tensor:
    # a copy: the images may be a read-only memory map, which torch refuses to wrap
    return torch.from_numpy(np.array(images_u8, dtype=np.uint8)).to(device).float().div_(255.0)
