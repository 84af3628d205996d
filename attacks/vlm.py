"""Attack protocols for vision-language tasks, as data, and the engine that runs one on a batch.

The untargeted **ensemble** of Schlarmann & Hein's evaluation (used by FARE and Sim-CLIP): generate on the clean
image; then, for each of the first five references (captions, or the most common VQA answers), APGD-100 maximising
the teacher-forced loss of that reference from a random start; then APGD-100 once more in full precision, from the
worst image found so far, against the reference that produced it; for VQA also APGD-100 toward "maybe" and toward
"Word" (full precision, from a random start). After every stage the output is generated and scored; a sample keeps
its worst output (and image) over the clean one and every stage, and leaves the attack as soon as its score falls
below the protocol's threshold (CIDEr < 10 on COCO, VQA accuracy 0).

The **single APGD** protocol runs one APGD-100 against the first reference and scores what comes out (no worst-of,
no threshold): a weaker attack than the ensemble, so the two never share a table.

The **targeted** protocol minimises the loss of a target string with APGD and stops a sample as soon as every target
token is the teacher-forced argmax (then greedy decoding starts with the target); success is judged on the
generated output (the target appears in it, case-insensitively).

Every stage runs the generic APGD of ``attacks.apgd`` on an objective ``(x_adv, idx) -> (loss, success)``; random
starts come from each sample's seed and the stage number, so batching never changes a sample's result. Stages not
marked fp32 run under the run's ``--precision`` (autocast on a GPU); generation and scoring are always fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from attacks.apgd import apgd
from attacks.protocols import StagedProtocol

Scorer = Callable[[list[int], list[str]], np.ndarray]  # (sample positions, outputs) -> score, lower = attack better


@dataclass(frozen=True)
class VLMStage:
    target: str  # "reference" (the sample's ``index``-th reference), "best" (the reference of the worst output so
    #               far) or "string" (``text``, the same for every sample)
    index: int = 0
    text: str = ""
    targeted: bool = False  # minimise the target's loss (else maximise it)
    iterations: int = 100
    init: str = "random"  # "random" (APGD's random start) or "best" (the worst image found so far)
    fp32: bool = False  # full precision even when the run asks for half
    stop_on_success: bool = False  # targeted: stop a sample once the target is the teacher-forced argmax
    # what the runner's cost estimate reads, as for classification stages
    method: str = "apgd"
    loss: str = "teacher-forced"
    restarts: int = 1
    targets: int = 0

    def label(self) -> str:
        what = {"reference": f"reference {self.index + 1}", "best": "the worst output's reference",
                "string": repr(self.text)}[self.target]
        if self.target == "reference" and self.targeted:
            what = "the target string"
        head = f"APGD {self.iterations} it {'toward' if self.targeted else 'away from'} {what}"
        return head + (", from the worst image" if self.init == "best" else "") + (", fp32" if self.fp32 else "")

    def passes(self, n_classes: int = 0) -> int:
        """Forward+backward passes one sample costs at most in this stage (the cost estimate's bound)."""
        return self.iterations * max(1, self.restarts)


@dataclass(frozen=True)
class VLMProtocol(StagedProtocol):
    name: str
    description: str
    stages: tuple[VLMStage, ...] = ()
    stop_below: float | None = None  # a sample leaves once its score falls below this (the task's scale)
    keep_worst: bool = True  # report the worst output over the clean image and every stage (else the last stage's)
    stop_text: str = ""  # the threshold in the task's words, e.g. "its CIDEr < 10"
    norm: str = "linf"
    task: str = ""  # the task this variant belongs to (protocols of the same name differ per task)

    def summary(self) -> str:
        """The protocol as result rows show it."""
        if not self.stages:
            return "clean"
        stages = " → ".join(s.label() for s in self.stages)
        if self.stages[0].targeted:
            return f"{stages}; a sample stops once the target is the teacher-forced argmax"
        if self.keep_worst and self.stop_below is not None:
            return f"ensemble: worst of clean → {stages}; a sample stops once {self.stop_text}"
        if not self.keep_worst:
            return f"single run: {stages}; its output is scored (no worst-of)"
        return stages


def ensemble(task: str, n_references: int, stop_below: float, stop_text: str,
             extra_targets: tuple[str, ...] = ()) -> VLMProtocol:
    """The ensemble for ``task``: ``stop_text`` says the threshold in the task's words (e.g. "CIDEr < 10")."""
    stages = [VLMStage("reference", k) for k in range(n_references)]
    stages.append(VLMStage("best", init="best", fp32=True))
    stages += [VLMStage("string", text=t, targeted=True, fp32=True) for t in extra_targets]
    what = "caption" if task.endswith("captioning") else "answer"
    toward = f", then toward {' and '.join(map(repr, extra_targets))}" if extra_targets else ""
    return VLMProtocol(
        "ensemble", f"untargeted ensemble (Schlarmann & Hein): APGD-100 on each of the first {n_references} "
        f"reference {what}s, then fp32 from the worst image{toward}; worst output kept, a sample stops once "
        f"{stop_text}", tuple(stages), stop_below=stop_below, stop_text=stop_text, task=task)


def single_apgd(task: str) -> VLMProtocol:
    return VLMProtocol("apgd", "single APGD-100 run away from the first reference (no ensemble, no worst-of): "
                       "a weaker attack than the ensemble; never compare the two",
                       (VLMStage("reference", 0),), keep_worst=False, task=task)


def targeted(task: str, iterations: int) -> VLMProtocol:
    return VLMProtocol(f"targeted{'' if iterations == 10_000 else f'-{iterations}'}",
                       f"targeted APGD, {iterations} iterations toward the sample's target string; success = the "
                       "string appears in the generated output",
                       (VLMStage("reference", 0, targeted=True, iterations=iterations, stop_on_success=True),),
                       stop_below=0.5, task=task, keep_worst=False)  # report what the attacked image makes it say


@dataclass
class VLMOutcome:
    """Per-sample results of a protocol on a batch (positions as in the batch)."""

    clean_output: list[str]
    clean_score: np.ndarray
    output: list[str]  # the reported output: the worst one (ensemble) or the attacked one (single)
    score: np.ndarray
    x_adv: torch.Tensor  # the image that produced ``output``
    broken_by: list[str]  # label of the stage that produced ``output`` ("" = the clean image)
    iterations: np.ndarray  # APGD iterations run on the sample, summed over stages
    stages_run: np.ndarray
    success_iteration: np.ndarray  # targeted: iteration at which the target became the argmax (-1: never)
    nonfinite: np.ndarray


def _autocast(device: torch.device, precision: str, fp32: bool):
    if fp32 or precision == "fp32" or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype={"fp16": torch.float16, "bf16": torch.bfloat16}[precision])


def _stage_targets(stage: VLMStage, references: list[list[str]], best_ref: np.ndarray, rows: list[int]):
    """The target text of each sample in ``rows`` for ``stage``, or None where the sample has no such reference."""
    if stage.target == "string":
        return [stage.text for _ in rows]
    if stage.target == "best":
        return [references[r][best_ref[r]] for r in rows]
    return [references[r][stage.index] if stage.index < len(references[r]) else None for r in rows]


def run_vlm_protocol(vlm, x: torch.Tensor, prompts: list[str], references: list[list[str]], protocol: VLMProtocol,
                     eps: float, seeds: torch.Tensor, score: Scorer, max_new_tokens: int, *,
                     precision: str = "fp32", postprocess: Callable[[str], str] = str.strip) -> VLMOutcome:
    """Run ``protocol`` on images ``x`` (in [0,1]) with their ``prompts``; ``references[i]`` are sample i's
    reference texts (captions, most common answers, or its one target string), ``score`` scores outputs."""
    n = len(x)

    def generate(images, rows):
        return [postprocess(t) for t in vlm.generate(images, [prompts[r] for r in rows], max_new_tokens)]

    clean = generate(x, list(range(n)))
    clean_score = np.asarray(score(list(range(n)), clean), dtype=float)
    out = VLMOutcome(clean, clean_score, list(clean), clean_score.copy(), x.detach().clone(), [""] * n,
                     np.zeros(n, dtype=int), np.zeros(n, dtype=int), np.full(n, -1), np.zeros(n, dtype=bool))
    best_ref = np.zeros(n, dtype=int)
    active = np.ones(n, dtype=bool)
    if protocol.stop_below is not None:
        active &= clean_score >= protocol.stop_below
    for si, stage in enumerate(protocol.stages):
        targets_all = _stage_targets(stage, references, best_ref, list(range(n)))
        rows = [r for r in range(n) if active[r] and targets_all[r] is not None]
        if not rows:
            continue
        idx = torch.as_tensor(rows, device=x.device)
        tgt = [targets_all[r] for r in rows]
        sign = -1.0 if stage.targeted else 1.0

        def objective(x_adv, i, rows=rows, tgt=tgt, sign=sign, stage=stage):
            sel = i.tolist()
            with _autocast(x.device, precision, stage.fp32):
                res = vlm.target_loss(x_adv, [prompts[rows[k]] for k in sel], [tgt[k] for k in sel])
            success = res.exact if stage.stop_on_success else torch.zeros_like(res.exact)
            return sign * res.loss, success

        init = out.x_adv[idx] if stage.init == "best" else None
        res = apgd(objective, x[idx], eps, n_iter=stage.iterations, norm=protocol.norm, seeds=seeds[idx.cpu()],
                   stream=si, stop_on_success=stage.stop_on_success, x_init=init)
        outputs = generate(res.x_adv, rows)
        scores = np.asarray(score(rows, outputs), dtype=float)
        for k, r in enumerate(rows):
            out.iterations[r] += int(res.iterations[k])
            out.stages_run[r] += 1
            out.nonfinite[r] |= bool(res.nonfinite[k])
            if stage.stop_on_success and bool(res.success[k]) and out.success_iteration[r] < 0:
                out.success_iteration[r] = int(res.iterations[k])
            if scores[k] < out.score[r] or not protocol.keep_worst:
                out.output[r], out.score[r], out.broken_by[r] = outputs[k], scores[k], stage.label()
                out.x_adv[r] = res.x_adv[k]
                if stage.target == "reference":
                    best_ref[r] = stage.index
            if protocol.stop_below is not None and out.score[r] < protocol.stop_below:
                active[r] = False
    return out


# What ``--attack`` lists beside the classification presets. Each vision-language task resolves a name to its own
# variant (the VQA ensemble adds the targeted runs and stops at accuracy 0; captioning stops at CIDEr < 10).
PRESETS = {
    "ensemble": (ensemble("coco-captioning", 5, 0.10, "its CIDEr < 10"),
                 "vision-language tasks: Schlarmann & Hein's untargeted ensemble (APGD-100 per reference caption or "
                 "common answer, an fp32 pass from the worst image, for VQA also toward 'maybe' and 'Word'; worst "
                 "output kept, a sample stops at CIDEr < 10 / VQA accuracy 0)"),
    "targeted": (targeted("targeted", 10_000), "targeted task: APGD, 10,000 iterations toward the target string "
                 "(the paper's budget)"),
    "targeted-500": (targeted("targeted", 500), "targeted task: APGD, 500 iterations toward the target string (the "
                     "micro suite's budget on a CPU)"),
}
