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
    """Everything that produced a cell's numbers: the encoder (name and checkpoint hash, and the test-time defence it
    runs under), the data (suite, dataset, its definition where generated, sample count, seed), the attack (the
    protocol's full definition, not only its name, and the version of the engine that ran it), and the task's
    definition of its metrics. Editing any of
    these gives a new run id, so cells computed under an old meaning are never reused."""

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
    protocol: dict | None = None  # the protocol's stages, iterations, restarts, losses, norm
    metric_definition: str = ""  # the task's definition of what its metrics measure
    engine_version: str = ""  # attacks.ENGINE_VERSION: bumped whenever a change can move an attack's numbers
    # the test-time defence the encoder runs under (bench.defences: name, algorithm, every hyperparameter); None: none
    defence: dict | None = None
    # what decides the dataset's samples, labels and prompts, where the suite defines it (the generated micro
    # datasets: world version, slice, stream, prompts); None for datasets read from fixed files
    data: dict | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        for later in ("defence", "data"):  # added after cells were stored: a cell without them keeps its run id
            if out[later] is None:
                del out[later]
        return out

    @property
    def run_id(self) -> str:
        eps = self.eps_label.replace("/", "_")
        readable = safe_component(f"{self.encoder}-{self.task}-{self.dataset}-{self.attack}-{eps}")
        return f"{readable}-{config_hash(self.as_dict())}"
