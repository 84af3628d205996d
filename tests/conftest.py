"""Shared fixtures: tiny models that run in milliseconds on a CPU, and the path to the real-data slices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

REAL_DATA = Path(os.environ.get("BENCH_REAL_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
                                / "real")).resolve()


@pytest.fixture(autouse=True, scope="session")
def _empty_training_cache(tmp_path_factory):
    """Tests never see the developer's trained encoders: locally as on a fresh CI machine, a robust encoder a test
    needs is one it builds itself (subprocesses inherit the variable)."""
    previous = os.environ.get("BENCH_CACHE")
    os.environ["BENCH_CACHE"] = str(tmp_path_factory.mktemp("bench-cache"))
    yield
    if previous is None:
        os.environ.pop("BENCH_CACHE", None)
    else:
        os.environ["BENCH_CACHE"] = previous


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


class TinyClassifier(nn.Module):
    """A small convolutional classifier on 3×16×16 images in [0,1]; parameters frozen, as attacks expect."""

    def __init__(self, n_classes: int = 5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, n_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.requires_grad_(False)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = torch.relu(self.conv(x - 0.5))
        h = nn.functional.adaptive_avg_pool2d(h, 4).flatten(1)
        return self.fc(h) * 3


@pytest.fixture
def tiny_classifier():
    return TinyClassifier()


@pytest.fixture
def tiny_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 3, 16, 16, generator=g)
    return x


def requires_real_data(sub: str) -> Path:
    path = REAL_DATA / sub
    if not path.exists():
        pytest.skip(f"real-data slice {path} is absent (it lives in ../shared/data/real beside the project)")
    return path
