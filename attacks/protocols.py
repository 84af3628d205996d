"""Evaluation protocols as data, and the engine that runs one on a classifier.

A protocol is a sequence of stages; each stage attacks only the points still robust after the stages before it
(AutoAttack's "robust flags"). Points the model already misclassifies are never attacked and never robust. The
presets are files (``attacks/presets/*.toml``, read by ``attacks.protocol_files``), and so is a user's protocol.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from attacks.apgd import apgd
from attacks.base import AttackResult
from attacks.eot import BACKWARDS, FIRST_ATTACK_DRAW, backward, drawing
from attacks.library_stages import fab_targeted, square
from attacks.losses import LOSSES, LossSpec, classification_objective
from attacks.memory import BatchSplitter
from attacks.pgd import pgd
from bench.core.checkpoints import atomic_write_bytes, load_tensors, save_tensors
from bench.core.errors import BenchError


# What each stage method is. ``apgd`` and ``pgd`` are the native engine's; ``fab`` (FAB-T) and ``square`` run in
# pyautoattack (``attacks.library_stages``). ``cost``: pass-equivalents of one iteration (a forward pass is a third of a
# forward+backward one: Square's queries are forwards); ``picks_targets``: the method runs its target classes itself.
@dataclass(frozen=True)
class StageMethod:
    label: str  # what a stage label calls it ("" : method and loss, e.g. APGD-CE)
    unit: str  # what ``iterations`` counts
    cost: float = 1.0
    picks_targets: bool = False
    eot: bool = True  # its gradients average over the protocol's EOT draws (FAB and Square see one draw)


METHODS = {"apgd": StageMethod("", "it"), "pgd": StageMethod("", "it"),
           "fab": StageMethod("FAB-T", "it", picks_targets=True, eot=False),
           "square": StageMethod("Square", "queries", 1 / 3, eot=False)}


@dataclass(frozen=True)
class Stage:
    method: str  # a key of METHODS: apgd | pgd | fab | square
    loss: str  # a registered classification loss (attacks.losses.LOSSES): ce | dlr | dlr-targeted | …
    iterations: int  # iterations, or Square's queries
    restarts: int = 1
    targets: int = 0  # target classes tried, for targeted losses
    momentum: float = 0.0  # pgd only
    step_size: float | None = None  # pgd only: a fixed step in pixel units; None: Madry et al.'s 2.5·ε/iterations
    # pgd only: judge a sample by the final iterate alone (as TGA-ZSR's evaluation does), not by its first
    # misclassified iterate; a weaker verdict, since a point broken midway may be classified correctly again
    last_iterate: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown stage method {self.method!r}; expected one of {', '.join(METHODS)}")

    @property
    def loss_spec(self) -> LossSpec:
        return LOSSES.get(self.loss)

    def label(self, n_classes: int | None = None) -> str:
        """``APGD-CE 100 it × 1 restart``; with ``n_classes``, the target classes that actually run on a dataset of
        that many classes (at most C − 1)."""
        method = METHODS[self.method]
        head = method.label or f"{self.method.upper()}-{self.loss_spec.label}"
        targets = self.targets if n_classes is None or not self.targets else min(self.targets, n_classes - 1)
        reps = f"{targets} targets" if self.targets else f"{self.restarts} restart{'s' * (self.restarts > 1)}"
        extra = ([f"step {_levels(self.step_size)}"] if self.step_size is not None else []) + \
            (["last iterate"] if self.last_iterate else [])
        return f"{head} {self.iterations:,} {method.unit} × {reps}" + "".join(f", {e}" for e in extra)

    def pgd_step(self, eps: float) -> float:
        return 2.5 * eps / self.iterations if self.step_size is None else self.step_size

    def target_ranks(self, n_classes: int) -> list[int | None]:
        """One attack per entry: for a targeted loss the rank of each target class tried (at most the C − 1 other
        classes), otherwise a single untargeted attack (None). A method that picks its targets itself runs once."""
        if self.loss_spec.targeted and not METHODS[self.method].picks_targets:
            return list(range(self.n_targets(n_classes)))
        return [None]

    def n_targets(self, n_classes: int) -> int:
        return min(self.targets, n_classes - 1)

    def passes(self, n_classes: int) -> int:
        """Forward+backward passes (or their equivalent in forwards) one sample costs at most in this stage (robust
        through every run)."""
        runs = self.n_targets(n_classes) if self.loss_spec.targeted else 1
        return math.ceil(self.iterations * self.restarts * max(1, runs) * METHODS[self.method].cost)


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


CRAFT_ON = ("model", "base")  # the model evaluated (a defended encoder's whole pipeline), or its undefended base
# fields added to protocols after cells were stored: left out of a protocol's definition while they hold these
# values, so that every cell computed before them keeps its run id
LATER_FIELDS = {"craft_on": "model", "eot": 1, "backward": "autograd"}


@dataclass(frozen=True)
class Protocol(StagedProtocol):
    name: str
    description: str
    stages: tuple[Stage, ...] = ()
    norm: str = "linf"
    # "base": every stage is crafted on the undefended encoder under a test-time defence and the result scored through
    # the defence (the transfer protocol of the defences' own papers); "model": on what is evaluated
    craft_on: str = "model"
    eot: int = 1  # draws of a randomised model each gradient averages over (attacks.eot); FAB and Square take one
    backward: str = "autograd"  # how gradients pass a test-time defence (attacks.eot.BACKWARDS)

    def __post_init__(self):
        if self.craft_on not in CRAFT_ON:
            raise ValueError(f"craft_on must be one of {CRAFT_ON}, got {self.craft_on!r}")
        if self.backward not in BACKWARDS:
            raise ValueError(f"backward must be one of {BACKWARDS}, got {self.backward!r}")
        if self.eot < 1 or (self.eot > 1 and not all(METHODS[s.method].eot for s in self.stages)):
            raise ValueError(f"protocol {self.name}: EOT takes at least one draw and applies to gradient stages")

    def definition(self) -> dict:
        out = super().definition()
        for name, default in LATER_FIELDS.items():
            if out.get(name) == default:
                out.pop(name)
        return out

    def passes(self, n_classes: int) -> int:
        """Forward+backward passes (or their equivalent) one sample costs at most: every stage to its end, each
        gradient stage once per EOT draw."""
        return sum(s.passes(n_classes) * (self.eot if METHODS[s.method].eot else 1) for s in self.stages)

    def summary(self, n_classes: int | None = None) -> str:
        """The stages as they run (with ``n_classes``: the target classes a dataset of that many classes allows), and
        how they see a test-time defence."""
        text = " → ".join(s.label(n_classes) for s in self.stages) or "clean"
        if self.craft_on == "base":
            text += "; crafted on the undefended base, scored through the defence (transfer)"
        if self.eot > 1:
            text += f"; gradients averaged over {self.eot} draws (EOT)"
        if self.backward != "autograd":
            text += f"; {self.backward.upper()} backward through the defence"
        return text


# Resolved per encoder: the attack a test-time defence declares against itself (attacks/presets/adaptive.toml holds
# what runs without a defence).
ADAPTIVE = "adaptive"
# AutoAttack's version for randomised defences (pyautoattack 0.2 autoattack.py, _set_version('rand')): the stages the
# defences' declared adaptive attacks run (bench.defences), as attacks/presets/aa-rand.toml does with 20 EOT draws
AA_RAND_STAGES = (Stage("apgd", "ce", 100), Stage("apgd", "dlr", 100))


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
                 splitter: BatchSplitter | None = None, craft_model=None) -> ClassificationOutcome:
    """Run ``protocol`` on classifier ``model`` for images ``x`` (in [0,1]) and labels ``y``.

    ``seeds`` (one per sample) fix every random start. ``state`` resumes after the last completed stage;
    ``on_stage(state)`` is called after each stage (e.g. to save it). Half precision applies to the attack's
    forward passes on GPU only; a point counts as broken only once its adversarial image is misclassified in fp32
    (as AutoAttack re-scores), so a half-precision artefact never removes a point from the later stages.
    ``splitter`` splits attack batches that do not fit on the device (a new one per call by default).
    ``craft_model``: the classifier a transfer protocol (``craft_on="base"``) crafts on — the undefended base of a
    defended ``model``; every verdict is still ``model``'s. None: ``model`` itself.
    """
    run = _ProtocolRun(model, x, y, eps, protocol, seeds, precision, splitter or BatchSplitter(), craft_model)
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

    def __init__(self, model, x, y, eps: float, protocol: Protocol, seeds, precision: str, splitter: BatchSplitter,
                 craft_model=None):
        self.model, self.x, self.y, self.eps, self.protocol, self.seeds = model, x, y, eps, protocol, seeds
        self.precision, self.splitter = precision, splitter
        # what the attack's forward passes see: the model judged, or (transfer) the undefended base under it
        self.attacked = craft_model if protocol.craft_on == "base" and craft_model is not None else model
        self.clean_logits = score(model, x, splitter)
        self.finite_clean = torch.isfinite(self.clean_logits).all(dim=1)
        self.clean_correct = (self.clean_logits.argmax(dim=1) == y) & self.finite_clean
        self.n_classes = self.clean_logits.shape[1]
        self.nonfinite = ~self.finite_clean  # NaN/Inf met by a sample anywhere, accumulated over the stages

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        """The attack's forward pass: half precision where the run asks for it, logits in fp32."""
        with _autocast(self.x.device, self.precision):
            return self.attacked(inp).float()

    def stage(self, si: int, state: ProtocolState) -> None:
        """Stage ``si`` on the points still robust: once, or once per target class for a targeted loss."""
        stage = self.protocol.stages[si]
        for rank in stage.target_ranks(self.n_classes):
            idx = torch.nonzero(state.robust).flatten()
            if idx.numel() == 0:
                break

            def attack(chunk, rank=rank):
                with backward(self.protocol.backward):
                    return _attack(self.forward, self.x[chunk], self.y[chunk], self.seeds[chunk.cpu()],
                                   self.clean_logits[chunk], self.eps, stage, self.protocol, si * 100 + (rank or 0),
                                   rank)

            for chunk, res in self.splitter.map(attack, idx):
                self.record(stage, chunk, res, state)

    def record(self, stage: Stage, chunk: torch.Tensor, res: AttackResult, state: ProtocolState) -> None:
        """Keep the attack's points; a claimed success breaks a sample only once fp32 re-scoring confirms it. A
        transfer stage claims nothing (its crafting model is not the one judged): every point it returns is scored."""
        self.nonfinite[chunk] |= res.nonfinite
        state.x_adv[chunk] = res.x_adv
        claims = torch.ones_like(res.success) if self.protocol.craft_on == "base" else res.success
        claimed = chunk[claims]
        if not claimed.numel():
            return
        logits = score(self.model, res.x_adv[claims], self.splitter)
        confirmed = (logits.argmax(dim=1) != self.y[claimed]) | ~torch.isfinite(logits).all(dim=1)
        hit = claimed[confirmed]
        state.robust[hit] = False
        state.iterations[hit] = res.iterations[claims][confirmed]
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


def _attack(forward, x, y, seeds, clean_logits, eps, stage: Stage, protocol: Protocol, stream: int,
            target_rank: int | None):
    """One stage (or one target class of a targeted stage) on the points ``x``. Gradient stages see a randomised
    model through the protocol's EOT draws; FAB and Square through one attack draw (never the verdict's)."""
    norm = protocol.norm
    if stage.method in ("fab", "square"):
        with drawing(FIRST_ATTACK_DRAW):
            if stage.method == "square":
                return square(forward, x, y, eps, queries=stage.iterations, restarts=stage.restarts, norm=norm,
                              seeds=seeds, stream=stream)
            return fab_targeted(forward, x, y, eps, iterations=stage.iterations,
                                targets=stage.n_targets(clean_logits.shape[1]), norm=norm, seed=stream)
    target = None
    if target_rank is not None:
        # AutoAttack's choice: the (rank+2)-th most likely class on the clean image
        target = clean_logits.argsort(dim=1, descending=True)[:, target_rank + 1]
    objective = classification_objective(forward, y, stage.loss, target, draws=protocol.eot)
    if protocol.craft_on == "base":
        objective = whole_budget(objective)
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


def whole_budget(objective):
    """``objective`` without its success flags: a transfer stage maximises the crafting model's loss for its whole
    budget (the papers' PGD keeps its last iterate) and hands back its best point, instead of stopping where the
    undefended base first misclassifies — a point the defence was never asked about."""

    def run(x_adv: torch.Tensor, idx: torch.Tensor):
        loss, success = objective(x_adv, idx)
        return loss, torch.zeros_like(success)

    return run
