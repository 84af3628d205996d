"""Frozen configurations. A ``CellConfig`` is everything that determines one result cell's numbers; its hash is the
run id, so the same request is recognised (and skipped or resumed) and a changed one never mixes with the old."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass


def config_hash(obj: dict, length: int = 10) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def safe_component(text: str) -> str:
    """A path component built from user-controlled names that cannot escape its parent directory."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "_"


@dataclass(frozen=True)
class CellConfig:
    suite: str
    encoder: str
    encoder_sha256: str | None
    task: str
    dataset: str
    attack: str  # protocol name; "none" for clean
    eps: float
    eps_label: str
    n_samples: int
    seed: int
    backend: str = "native"
    precision: str = "fp32"

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def run_id(self) -> str:
        eps = self.eps_label.replace("/", "_")
        readable = safe_component(f"{self.encoder}-{self.task}-{self.dataset}-{self.attack}-{eps}")
        return f"{readable}-{config_hash(self.as_dict())}"
