"""Zero-shot classification: clean and robust accuracy of an encoder with prompt-ensemble class embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from attacks import sanity
from attacks.backends import run_classification
from bench.core.stats import wilson_interval
from tasks.base import EvalContext, Metric, attack_seeds, to_float
from tasks.registry import register_task
from tasks.zeroshot_model import ZeroShotClassifier


@dataclass(frozen=True)
class ClassificationData:
    """A fixed selection of labelled images; ``indices`` locate each sample in its source dataset."""

    dataset: str
    indices: np.ndarray
    ids: list[str]
    images: np.ndarray  # uint8 (N, 3, H, W) at native resolution; the encoder resizes inside its forward
    labels: np.ndarray  # int64 (N,)
    classnames: list[str]
    class_prompts: list[list[str]]
    ensemble: str = "mean"  # how a class's prompts combine (tasks/zeroshot_model.py)
    definition: dict | None = None  # what generated it, where a suite generates its data (part of a cell's identity)


@register_task("zero-shot", "classification")
class ZeroShotTask:
    name = "zeroshot"
    headline_metric = "accuracy"
    # part of every cell's identity: a change to what the metrics mean must not reuse cells computed under the old one
    metric_definition = ("accuracy: correct on the clean image and on the attack's worst image (robust), or on the "
                         "clean image (clean cell); clean_accuracy; logits 100·cos to the class embeddings (mean of "
                         "the prompt ensemble, or logsumexp over prompts where the dataset says so); 95 % Wilson")
    description = "zero-shot classification accuracy (logits = 100·cos to prompt-ensemble class embeddings)"

    def __init__(self):
        self._heads: dict[tuple[int, str], ZeroShotClassifier] = {}

    def load(self, suite, dataset: str, n_samples: int, seed: int) -> ClassificationData:
        return suite.load_classification(dataset, n_samples, seed)

    def sample_ids(self, data: ClassificationData) -> list[str]:
        return data.ids

    def classifier(self, encoder, data: ClassificationData) -> ZeroShotClassifier:
        """Class embeddings are computed once per (encoder, dataset) and reused by every batch and attack."""
        key = (id(encoder), data.dataset)
        if key not in self._heads:
            self._heads[key] = ZeroShotClassifier.for_data(encoder, data)
        return self._heads[key]

    def craft_classifier(self, encoder, data: ClassificationData, protocol) -> ZeroShotClassifier | None:
        """What a transfer protocol (``craft_on="base"``) crafts on: the head over the undefended encoder under a
        test-time defence (its ``base``); None where the attack sees the encoder judged."""
        base = getattr(encoder, "base", None)
        if getattr(protocol, "craft_on", "model") != "base" or base is None:
            return None
        return self.classifier(base, data)

    def evaluate(self, encoder, data: ClassificationData, rows: list[int], ctx: EvalContext) -> list[dict]:
        model = self.classifier(encoder, data)
        x = to_float(data.images[rows], ctx.device)
        y = torch.as_tensor(data.labels[rows], device=ctx.device)
        seeds = attack_seeds(ctx.seed, data.indices[rows])
        craft = self.craft_classifier(encoder, data, ctx.protocol)
        out = run_classification(ctx.backend, model, x, y, ctx.eps, ctx.protocol, seeds, seed=ctx.seed,
                                 precision=ctx.precision, craft_model=craft)
        records = []
        for k, r in enumerate(rows):
            records.append({
                "sample_id": data.ids[r],
                "index": int(data.indices[r]),
                "label": int(data.labels[r]),
                "clean_pred": int(out.clean_pred[k]),
                "adv_pred": int(out.adv_pred[k]),
                "clean_correct": bool(out.clean_correct[k]),
                "robust": bool(out.robust[k]),
                "attack_success": bool(out.attack_success[k]),
                "broken_by": out.broken_by[k],
                "iterations": int(out.iterations[k]),
                "nonfinite": bool(out.nonfinite[k]),
            })
        return records

    def sanity_checks(self, encoder, data: ClassificationData, records: pd.DataFrame, ctx: EvalContext,
                      config: sanity.SanityConfig) -> list[sanity.CheckResult]:
        """Checks against gradient masking for an attacked cell, from its per-sample records (``attacks.sanity``)."""
        position = {sid: i for i, sid in enumerate(data.ids)}
        records = records.assign(_pos=records["sample_id"].map(position)).sort_values("_pos")
        clean_correct = torch.tensor(records["clean_correct"].astype(bool).to_numpy())
        robust = torch.tensor(records["robust"].astype(bool).to_numpy())
        checks = [sanity.robust_le_clean(clean_correct, robust)]
        chosen = sanity.subset(clean_correct, config)
        rows = records["_pos"].to_numpy()[chosen.numpy()]
        x = to_float(data.images[rows], ctx.device)
        y = torch.as_tensor(data.labels[rows], device=ctx.device)
        seeds = attack_seeds(ctx.seed, data.indices[rows])
        return checks + sanity.attack_checks(self.classifier(encoder, data), x, y, ctx.eps, ctx.protocol, seeds,
                                             ctx.seed, robust[chosen].to(ctx.device), config,
                                             self.craft_classifier(encoder, data, ctx.protocol))

    def metrics(self, records: pd.DataFrame, attacked: bool) -> list[Metric]:
        n = len(records)
        clean = int(records["clean_correct"].astype(bool).sum())
        robust = int(records["robust"].astype(bool).sum())
        nonfinite = int(records["nonfinite"].astype(bool).sum())
        out = []
        if attacked:
            out.append(Metric("accuracy", robust / n, *wilson_interval(robust, n)))
            out.append(Metric("clean_accuracy", clean / n, *wilson_interval(clean, n)))
        else:
            out.append(Metric("accuracy", clean / n, *wilson_interval(clean, n)))
        out.append(Metric("nonfinite_samples", float(nonfinite)))
        return out
