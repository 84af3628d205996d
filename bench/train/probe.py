"""Zero-shot accuracy of the encoder being trained, measured every N steps on a fixed small probe set.

`bench train --probe-every N` calls the probe at step 0 and every N steps: clean accuracy and robust accuracy under a
short APGD-CE (10 iterations by default: enough for a curve, not a benchmark number) at the training ε, on a fixed
seeded selection of each zero-shot dataset of the suite. Rows go to ``probe_log.csv`` beside ``train_log.csv``.

The probe draws no random number from the training's generators (its attack seeds are per sample) and never touches
the weights, so a run with probes ends with exactly the weights of a run without them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from attacks.backends import run_classification
from attacks.protocols import Protocol, Stage
from bench.core.checkpoints import atomic_write_bytes
from tasks.base import attack_seeds, to_float
from tasks.zeroshot_model import ZeroShotClassifier

PROBE_FIELDS = ["step", "dataset", "clean_accuracy", "robust_accuracy", "n_samples", "iterations", "eps"]


@dataclass(frozen=True)
class ProbeConfig:
    every: int  # steps between probes
    samples: int = 32  # per dataset
    iterations: int = 10  # APGD-CE iterations of the robust probe
    seed: int = 1  # the probe's own selection: not the evaluation's default seed 0, so they never share samples
    datasets: tuple[str, ...] = ()  # default: the suite's zero-shot datasets

    def protocol(self) -> Protocol:
        return Protocol(f"probe-apgd-{self.iterations}", f"training probe: APGD-CE {self.iterations} iterations",
                        (Stage("apgd", "ce", self.iterations),))


class Probe:
    """Holds the probe images and one zero-shot head per dataset (the text tower is frozen, so the class
    embeddings are computed once); ``measure`` swaps in the current image tower."""

    def __init__(self, config: ProbeConfig, base, datasets: list, eps: float, device: torch.device):
        self.config, self.eps, self.device = config, eps, device
        self.data = datasets
        self.heads = [ZeroShotClassifier.for_data(base, d).to(device) for d in datasets]
        self.rows: list[dict] = []

    def due(self, step: int, last_step: int) -> bool:
        return step % self.config.every == 0 or step == last_step

    @torch.no_grad()
    def _score(self, head, tower, data) -> dict:
        rows = list(range(len(data.ids)))
        x = to_float(data.images[rows], self.device)
        y = torch.as_tensor(data.labels[rows], device=self.device)
        head.encoder = tower
        with torch.enable_grad():
            out = run_classification("native", head, x, y, self.eps, self.config.protocol(),
                                     attack_seeds(self.config.seed, data.indices[rows]), seed=self.config.seed)
        return {"clean_accuracy": float(out.clean_correct.float().mean()),
                "robust_accuracy": float(out.robust.float().mean()), "n_samples": len(rows)}

    def measure(self, tower, step: int) -> list[dict]:
        """Probe rows for ``tower`` (the image tower being trained) at ``step``; its parameters are frozen for the
        duration and restored after."""
        wants_grad = [p.requires_grad for p in tower.parameters()]
        was_training = tower.training
        tower.requires_grad_(False).eval()
        try:
            rows = [{"step": step, "dataset": data.dataset, **self._score(head, tower, data),
                     "iterations": self.config.iterations, "eps": self.eps}
                    for head, data in zip(self.heads, self.data)]
        finally:
            for p, flag in zip(tower.parameters(), wants_grad):
                p.requires_grad_(flag)
            tower.train(was_training)
        self.rows += rows
        return rows

    def resume(self, path: Path, start_step: int) -> None:
        """Keep the rows an interrupted run wrote up to the step it resumes from."""
        if path.is_file():
            with open(path, newline="") as fh:
                self.rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= start_step]

    def write(self, path: Path) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=PROBE_FIELDS)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(path, buf.getvalue().encode())


def probe_for_suite(config: ProbeConfig, suite, base, eps: float, device: torch.device) -> Probe:
    """A probe on ``config.samples`` images of each of the suite's zero-shot datasets (or ``config.datasets``)."""
    names = config.datasets or suite.tasks["zeroshot"]
    datasets = [suite.load_classification(name, config.samples, config.seed) for name in names]
    return Probe(config, base, datasets, eps, device)
