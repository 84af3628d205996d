"""Evaluation protocols as data, and the engine that runs one on a classifier.

A protocol is a sequence of stages; each stage attacks only the points still robust after the stages before it
(AutoAttack's "robust flags"). Points the model already misclassifies are never attacked and never robust. The
presets are files (``attacks/presets/*.toml``, read by ``attacks.protocol_files``), and so is a user's protocol.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from attacks.apgd import apgd
from attacks.base import AttackResult
from attacks.losses import LOSSES, LossSpec, classification_objective
from attacks.memory import BatchSplitter
from attacks.pgd import pgd
from bench.core.checkpoints import atomic_write_bytes, load_tensors, save_tensors
from bench.core.errors import BenchError

METHODS = ("apgd", "pgd")  # the algorithms a stage can run (``_attack``)


@dataclass(frozen=True)
class Stage:
    method: str  # one of METHODS
    loss: str  # a registered classification loss (attacks.losses.LOSSES): ce | dlr | dlr-targeted | …
    iterations: int
    restarts: int = 1
    targets: int = 0  # target classes tried, for targeted losses
    momentum: float = 0.0  # pgd only
    step_size: float | None = None  # pgd only: a fixed step in pixel units; None: Madry et al.'s 2.5·ε/iterations
    # pgd only: judge a sample by the final iterate alone (as TGA-ZSR's evaluation does), not by its first
    # misclassified iterate; a weaker verdict, since a point broken midway may be classified correctly again
    last_iterate: bool = False

    @property
    def loss_spec(self) -> LossSpec:
        return LOSSES.get(self.loss)

    def label(self) -> str:
        head = f"{self.method.upper()}-{self.loss_spec.label}"
        reps = f"{self.targets} targets" if self.targets else f"{self.restarts} restart{'s' * (self.restarts > 1)}"
        extra = ([f"step {_levels(self.step_size)}"] if self.step_size is not None else []) + \
            (["last iterate"] if self.last_iterate else [])
        return f"{head} {self.iterations} it × {reps}" + "".join(f", {e}" for e in extra)

    def pgd_step(self, eps: float) -> float:
        return 2.5 * eps / self.iterations if self.step_size is None else self.step_size

    def target_ranks(self, n_classes: int) -> list[int | None]:
        """One attack per entry: for a targeted loss the rank of each target class tried (at most the C − 1 other
        classes), otherwise a single untargeted attack (None)."""
        if self.loss_spec.targeted:
            return list(range(min(self.targets, n_classes - 1)))
        return [None]

    def passes(self, n_classes: int) -> int:
        """Forward+backward passes one sample costs at most in this stage (robust through every run)."""
        return self.iterations * self.restarts * max(1, len(self.target_ranks(n_classes)))


def _levels(value: float) -> str:
    """A pixel-unit size as k/255 when it is one (1/255), else as a number."""
    k = value * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-9 else f"{value:g}"


class StagedProtocol:
    """What every protocol (a dataclass with ``stages``) tells result rows: its largest iteration and restart counts
    over the stages, and its fields as a dict. Shared by classification and vision-language protocols."""

    stages: tuple

    @property
    def iterations(self) -> int:
        return max((s.iterations for s in self.stages), default=0)

    @property
    def restarts(self) -> int:
        return max((s.restarts for s in self.stages), default=0)

    def as_dict(self) -> dict:
        return asdict(self)

    def definition(self) -> dict:
        """What decides the numbers (stages, iterations, restarts, losses, norm, …): the fields without the prose, so
        rewording a description keeps a cell and any other edit gives a new one."""
        out = asdict(self)
        out.pop("description", None)
        return out


@dataclass(frozen=True)
class Protocol(StagedProtocol):
    name: str
    description: str
    stages: tuple[Stage, ...] = ()
    norm: str = "linf"

    def summary(self) -> str:
        return " → ".join(s.label() for s in self.stages) or "clean"


@dataclass
class ProtocolState:
    """Robust flags after each completed stage; saved after every stage so a long run resumes where it stopped."""

    next_stage: int
    robust: torch.Tensor  # bool (B,)
    x_adv: torch.Tensor
    broken_by: list[str] = field(default_factory=list)  # per sample: stage label that broke it, or ""
    iterations: torch.Tensor | None = None  # per sample: iterations of the breaking stage (0 if none)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        save_tensors(path.with_suffix(".safetensors"),
                     {"robust": self.robust.cpu(), "x_adv": self.x_adv.cpu(), "iterations": self.iterations.cpu()})
        atomic_write_bytes(path.with_suffix(".json"),
                           json.dumps({"next_stage": self.next_stage, "broken_by": self.broken_by}).encode())

    @classmethod
    def load(cls, path: str | Path) -> ProtocolState:
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        t = load_tensors(path.with_suffix(".safetensors"))
        return cls(meta["next_stage"], t["robust"].bool(), t["x_adv"], meta["broken_by"], t["iterations"])


@dataclass
class ClassificationOutcome:
    """Per-sample results of a protocol on a batch."""

    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    clean_correct: torch.Tensor
    robust: torch.Tensor  # correct on the clean image and on the adversarial one (re-scored in fp32)
    attack_success: torch.Tensor  # broken by a stage: the attack's claim, confirmed by fp32 re-scoring
    broken_by: list[str]
    iterations: torch.Tensor
    nonfinite: torch.Tensor  # NaN/Inf logits on the clean or adversarial image, or in the attack loss
    x_adv: torch.Tensor


def _autocast(device: torch.device, precision: str):
    if precision == "fp32" or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype={"fp16": torch.float16, "bf16": torch.bfloat16}[precision])


def check_classes(protocol: Protocol, n_classes: int) -> None:
    need = max((s.loss_spec.min_classes for s in protocol.stages), default=0)
    if n_classes < need:
        raise BenchError(f"protocol {protocol.name} uses a loss that needs at least {need} classes; "
                         f"this dataset has {n_classes}")


def score(model, x: torch.Tensor, splitter: BatchSplitter) -> torch.Tensor:
    """fp32 logits of ``model`` on ``x``, in chunks that fit on the device."""
    with torch.no_grad():
        parts = [logits for _, logits in splitter.map(lambda c: model(x[c]).float(), torch.arange(len(x)))]
    return torch.cat(parts) if parts else torch.empty(0)


def run_protocol(model, x: torch.Tensor, y: torch.Tensor, eps: float, protocol: Protocol, seeds: torch.Tensor,
                 *, precision: str = "fp32", state: ProtocolState | None = None, on_stage=None,
                 splitter: BatchSplitter | None = None) -> ClassificationOutcome:
    """Run ``protocol`` on classifier ``model`` for images ``x`` (in [0,1]) and labels ``y``.

    ``seeds`` (one per sample) fix every random start. ``state`` resumes after the last completed stage;
    ``on_stage(state)`` is called after each stage (e.g. to save it). Half precision applies to the attack's
    forward passes on GPU only; a point counts as broken only once its adversarial image is misclassified in fp32
    (as AutoAttack re-scores), so a half-precision artefact never removes a point from the later stages.
    ``splitter`` splits attack batches that do not fit on the device (a new one per call by default).
    """
    run = _ProtocolRun(model, x, y, eps, protocol, seeds, precision, splitter or BatchSplitter())
    check_classes(protocol, run.n_classes)
    if state is None:
        state = ProtocolState(0, run.clean_correct.clone(), x.detach().clone(), [""] * len(y),
                              torch.zeros(len(y), dtype=torch.long, device=x.device))
    for si in range(state.next_stage, len(protocol.stages)):
        run.stage(si, state)
        state.next_stage = si + 1
        if on_stage is not None:
            on_stage(state)
    return run.outcome(state)


class _ProtocolRun:
    """One protocol on one batch: the clean scores every stage reads, the stages, and the final fp32 re-scoring."""

    def __init__(self, model, x, y, eps: float, protocol: Protocol, seeds, precision: str, splitter: BatchSplitter):
        self.model, self.x, self.y, self.eps, self.protocol, self.seeds = model, x, y, eps, protocol, seeds
        self.precision, self.splitter = precision, splitter
        self.clean_logits = score(model, x, splitter)
        self.finite_clean = torch.isfinite(self.clean_logits).all(dim=1)
        self.clean_correct = (self.clean_logits.argmax(dim=1) == y) & self.finite_clean
        self.n_classes = self.clean_logits.shape[1]
        self.nonfinite = ~self.finite_clean  # NaN/Inf met by a sample anywhere, accumulated over the stages

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        """The attack's forward pass: half precision where the run asks for it, logits in fp32."""
        with _autocast(self.x.device, self.precision):
            return self.model(inp).float()

    def stage(self, si: int, state: ProtocolState) -> None:
        """Stage ``si`` on the points still robust: once, or once per target class for a targeted loss."""
        stage = self.protocol.stages[si]
        for rank in stage.target_ranks(self.n_classes):
            idx = torch.nonzero(state.robust).flatten()
            if idx.numel() == 0:
                break

            def attack(chunk, rank=rank):
                return _attack(self.forward, self.x[chunk], self.y[chunk], self.seeds[chunk.cpu()],
                               self.clean_logits[chunk], self.eps, stage, self.protocol.norm, si * 100 + (rank or 0),
                               rank)

            for chunk, res in self.splitter.map(attack, idx):
                self.record(stage, chunk, res, state)

    def record(self, stage: Stage, chunk: torch.Tensor, res: AttackResult, state: ProtocolState) -> None:
        """Keep the attack's points; a claimed success breaks a sample only once fp32 re-scoring confirms it."""
        self.nonfinite[chunk] |= res.nonfinite
        state.x_adv[chunk] = res.x_adv
        claimed = chunk[res.success]
        if not claimed.numel():
            return
        logits = score(self.model, res.x_adv[res.success], self.splitter)
        confirmed = (logits.argmax(dim=1) != self.y[claimed]) | ~torch.isfinite(logits).all(dim=1)
        hit = claimed[confirmed]
        state.robust[hit] = False
        state.iterations[hit] = res.iterations[res.success][confirmed]
        for i in hit.tolist():
            state.broken_by[i] = stage.label()

    def outcome(self, state: ProtocolState) -> ClassificationOutcome:
        """Per-sample verdicts from the final adversarial images, re-scored in fp32."""
        adv_logits = score(self.model, state.x_adv, self.splitter)
        finite_adv = torch.isfinite(adv_logits).all(dim=1)
        adv_pred = adv_logits.argmax(dim=1)
        robust = self.clean_correct & (adv_pred == self.y) & finite_adv
        return ClassificationOutcome(self.clean_logits.argmax(dim=1), adv_pred, self.clean_correct, robust,
                                     self.clean_correct & ~state.robust, state.broken_by, state.iterations,
                                     self.nonfinite | ~finite_adv, state.x_adv)


def _attack(forward, x, y, seeds, clean_logits, eps, stage: Stage, norm: str, stream: int, target_rank: int | None):
    """One stage (or one target class of a targeted stage) on the points ``x``."""
    target = None
    if target_rank is not None:
        # AutoAttack's choice: the (rank+2)-th most likely class on the clean image
        target = clean_logits.argsort(dim=1, descending=True)[:, target_rank + 1]
    objective = classification_objective(forward, y, stage.loss, target)
    if stage.method == "apgd":
        return apgd(objective, x, eps, n_iter=stage.iterations, restarts=stage.restarts, norm=norm, seeds=seeds,
                    stream=stream)
    if stage.last_iterate:
        res = pgd(objective, x, eps, n_iter=stage.iterations, step_size=stage.pgd_step(eps), momentum=stage.momentum,
                  norm=norm, seeds=seeds, stream=stream, last_iterate=True)
        # pgd does not evaluate the final iterate (training does not need it); the verdict is that iterate's alone
        with torch.no_grad():
            loss, success = objective(res.x_adv, torch.arange(len(x), device=x.device))
        return replace(res, success=success, loss=loss, nonfinite=res.nonfinite | ~torch.isfinite(loss),
                       iterations=torch.full_like(res.iterations, stage.iterations))
    return pgd(objective, x, eps, n_iter=stage.iterations, step_size=stage.pgd_step(eps), momentum=stage.momentum,
               norm=norm, seeds=seeds, stream=stream, stop_on_success=True)
