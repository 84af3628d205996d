"""What the vision-language tasks (captioning, VQA, targeted) share: protocol names, one VLM per encoder, the
evaluation of a batch through ``attacks.vlm.run_vlm_protocol`` and the adversarial-example gallery.

A subclass says what its samples are: the prompt, the reference texts the attack uses, how an output is scored
(lower = the attack did better) and which columns its records carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from attacks.registry import resolve_attack
from attacks.vlm import VLMProtocol, run_vlm_protocol
from bench.core.errors import BenchError
from bench.core.stats import bootstrap_interval
from tasks.base import EvalContext, attack_seeds, to_float
from tasks.vlm.gallery import write_example

CLEAN = VLMProtocol("none", "clean outputs only, no attack")
GALLERY_SIZE = 3  # adversarial examples drawn per attacked cell


@dataclass
class Example:
    x: torch.Tensor
    x_adv: torch.Tensor
    prompt: str
    clean: str
    adv: str
    note: str


class VLMTask:
    name: str
    headline_metric: str
    output: str  # record column stem: clean_<output> / adv_<output>
    score_column: str  # the per-sample score column (its clean twin is clean_<score_column>)
    max_new_tokens: int
    attacks: dict[str, VLMProtocol]  # --attack NAME → this task's protocol

    def __init__(self):
        self._vlms: dict[tuple[int, str], object] = {}
        self._examples: dict[tuple, dict[str, tuple[float, Example]]] = {}  # per cell: the gallery's candidates

    @classmethod
    def protocol(cls, attack: str, backend: str = "native") -> VLMProtocol:
        """The protocol ``--attack`` names for this task; classification protocols are refused."""
        name = resolve_attack(attack).name
        table = {"none": CLEAN, **cls.attacks}
        if name not in table:
            raise BenchError(f"--attack {name} does not apply to task {cls.name}; it takes: {', '.join(table)}")
        if backend != "native" and name != "none":
            raise BenchError(f"task {cls.name} runs its attacks with the native engine only; drop --attack-backend "
                             f"{backend}")
        return table[name]

    # ---------------------------------------------------------------- what a subclass defines

    def prompts(self, data, rows: list[int]) -> list[str]:
        raise NotImplementedError

    def references(self, data, rows: list[int]) -> list[list[str]]:
        raise NotImplementedError

    def scorer(self, data, rows: list[int]):
        """(positions within ``rows``, outputs) -> scores, lower = the attack did better."""
        raise NotImplementedError

    def postprocess(self, text: str) -> str:
        return text.strip()

    def record(self, data, row: int, clean_score: float, score: float) -> dict:
        """The task's own columns of one sample's record."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the Task protocol

    def load(self, suite, dataset: str, n_samples: int, seed: int):
        if getattr(suite, "load_vlm_data", None) is None:
            raise BenchError(f"the {suite.name} suite has no data for task {self.name}")
        return suite.load_vlm_data(self.name, dataset, n_samples, seed)

    def sample_ids(self, data) -> list[str]:
        return data.ids

    def vlm(self, encoder, data, device: torch.device):
        """The suite's VLM reading ``encoder``'s patch tokens, built once per encoder."""
        key = (id(encoder), str(device))
        if key not in self._vlms:
            self._vlms[key] = data.load_vlm(encoder, device)
        return self._vlms[key]

    def run(self, encoder, data, rows: list[int], ctx: EvalContext):
        protocol = ctx.protocol if isinstance(ctx.protocol, VLMProtocol) else self.protocol(ctx.protocol.name)
        x = to_float(data.images[rows], ctx.device)
        seeds = attack_seeds(ctx.seed, data.indices[rows])
        return x, run_vlm_protocol(self.vlm(encoder, data, ctx.device), x, self.prompts(data, rows),
                                   self.references(data, rows), protocol, ctx.eps, seeds, self.scorer(data, rows),
                                   self.max_new_tokens, precision=ctx.precision, postprocess=self.postprocess)

    def evaluate(self, encoder, data, rows: list[int], ctx: EvalContext) -> list[dict]:
        x, out = self.run(encoder, data, rows, ctx)
        if ctx.protocol.stages:
            self._keep_examples(_cell_key(encoder, data, ctx), data, rows, x, out)
        records = []
        for k, r in enumerate(rows):
            records.append({
                "sample_id": data.ids[r],
                "index": int(data.indices[r]),
                f"clean_{self.output}": out.clean_output[k],
                f"adv_{self.output}": out.output[k],
                **self.record(data, r, float(out.clean_score[k]), float(out.score[k])),
                "broken_by": out.broken_by[k],
                "iterations": int(out.iterations[k]),
                "stages_run": int(out.stages_run[k]),
                "success_iteration": int(out.success_iteration[k]),
                "nonfinite": bool(out.nonfinite[k]),
            })
        return records

    # ---------------------------------------------------------------- gallery

    def _example(self, data, row: int, x, x_adv, clean: str, adv: str, clean_score: float, score: float,
                 broken_by: str) -> Example:
        note = f"{self.score_column} {clean_score:.3g} → {score:.3g}; {broken_by or 'clean output kept'}"
        return Example(x.detach().cpu(), x_adv.detach().cpu(), self.prompts(data, [row])[0], clean, adv, note)

    def _keep_examples(self, key, data, rows: list[int], x, out) -> None:
        """The cell's ``GALLERY_SIZE`` largest score drops so far, with their images (CPU), for the gallery."""
        kept = self._examples.setdefault(key, {})
        for k, r in enumerate(rows):
            drop = float(out.clean_score[k] - out.score[k])
            kept[data.ids[r]] = (drop, self._example(data, r, x[k], out.x_adv[k], out.clean_output[k], out.output[k],
                                                     out.clean_score[k], out.score[k], out.broken_by[k]))
        best = sorted(kept.items(), key=lambda item: (-item[1][0], item[0]))[:GALLERY_SIZE]
        self._examples[key] = dict(best)

    def write_gallery(self, encoder, data, records: pd.DataFrame, ctx: EvalContext, directory) -> None:
        """PNGs of the samples whose score the attack lowered most: clean image, perturbation × 10, adversarial
        image and both outputs. Samples computed by an earlier process (a resumed run) are attacked again: every
        random start is seeded per sample, so the attack finds the same images."""
        drop = records[f"clean_{self.score_column}"].astype(float) - records[self.score_column].astype(float)
        chosen = records.assign(_drop=drop.to_numpy()).sort_values(["_drop", "sample_id"], ascending=[False, True])
        ids = list(chosen["sample_id"].head(GALLERY_SIZE))
        kept = {sid: ex for sid, (_, ex) in self._examples.pop(_cell_key(encoder, data, ctx), {}).items()}
        position = {sid: i for i, sid in enumerate(data.ids)}
        missing = [position[s] for s in ids if s not in kept]
        if missing:
            x, out = self.run(encoder, data, missing, ctx)
            for k, r in enumerate(missing):
                kept[data.ids[r]] = self._example(data, r, x[k], out.x_adv[k], out.clean_output[k], out.output[k],
                                                  out.clean_score[k], out.score[k], out.broken_by[k])
        for sid in ids:
            ex = kept[sid]
            write_example(directory, sid, ex.x, ex.x_adv, ctx.eps, ex.prompt, ex.clean, ex.adv, ex.note)


def _cell_key(encoder, data, ctx: EvalContext) -> tuple:
    return id(encoder), id(data), ctx.protocol.name, ctx.eps, ctx.seed, ctx.precision


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """A seeded percentile-bootstrap 95 % interval of the mean (CIDEr and VQA accuracy are not proportions)."""
    if len(values) < 2:
        return float("nan"), float("nan")
    return bootstrap_interval(np.asarray(values, dtype=float))
