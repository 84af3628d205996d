"""Attack backends: the native engine, or the same protocol run through a reference library for cross-checking.

- ``native``: ``attacks.protocols.run_protocol`` (per-sample seeds, early stopping, batched restarts).
- ``autoattack``: pyautoattack (Croce & Hein's AutoAttack, packaged), ``version="custom"`` with the protocol's
  stages as its attack list and its APGD objects configured to the stage's iterations, restarts and targets.
- ``torchattacks``: torchattacks' APGD / APGDT / PGD with the stage's iterations (its AutoAttack would run 10),
  chained on the points still robust with its ``MultiAttack``.

What the libraries do differently, by design: their random starts come from one global seed per call (the run
seed), so their result for a sample depends on which other samples share its batch; they run fp32 only; they do not
report which stage broke a sample or when (``iterations`` is -1). With fewer than 10 classes both would index past
the last class with 9 targets, so the number of target classes is clamped to C − 1 exactly as the native engine
does. Every adversarial image a library returns is re-scored here in fp32 and checked to lie in the ε-ball.

Which losses a library runs, and under which name, is part of each loss's spec (``LossSpec.reference``): for
``autoattack`` the attack name in pyautoattack's ``attacks=[...]`` ("apgd-ce", "apgd-dlr", "apgd-t"), for
``torchattacks`` the ``loss`` of ``torchattacks.APGD`` ("ce", "dlr") or, for a targeted loss, APGDT's own
("dlr-targeted"). A protocol with a loss a library lacks is refused before anything runs. FAB-T and Square stages
run under pyautoattack's own names ("fab-t", "square"; torchattacks is not used for them). A protocol's EOT is the
libraries' ``eot_iter``, and a randomised model gets a fresh draw on every library call (``attacks.eot``).
"""

from __future__ import annotations

import torch
from pyautoattack import AutoAttack
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from pyautoattack.fab_pt import FABAttack_PT
from pyautoattack.square import SquareAttack

from attacks.base import ball
from attacks.eot import backward, fresh_draws
from attacks.library_stages import LIBRARY_NORM, SQUARE_P_INIT, SQUARE_RESCALE_SCHEDULE
from attacks.losses import UNSUPPORTED
from attacks.memory import BatchSplitter
from attacks.protocols import ClassificationOutcome, Protocol, Stage, check_classes, run_protocol, score
from bench.core.errors import BenchError

BACKENDS = ("native", "autoattack", "torchattacks")
TORCHATTACKS_PGD_LOSS = "ce"  # torchattacks.PGD maximises the cross-entropy and nothing else
TORCHATTACKS_TARGETED_LOSS = "dlr-targeted"  # torchattacks.APGDT, its only targeted APGD


def run_classification(backend: str, model, x: torch.Tensor, y: torch.Tensor, eps: float, protocol: Protocol,
                       seeds: torch.Tensor, *, seed: int, precision: str = "fp32",
                       splitter: BatchSplitter | None = None, craft_model=None) -> ClassificationOutcome:
    """Run ``protocol`` with ``backend``; ``seeds`` are the native per-sample seeds, ``seed`` the run seed the
    libraries use. ``craft_model``: what a transfer protocol crafts on (see ``run_protocol``; native only)."""
    check_backend(backend, protocol, precision)
    if backend == "native":
        return run_protocol(model, x, y, eps, protocol, seeds, precision=precision, splitter=splitter,
                            craft_model=craft_model)
    splitter = splitter or BatchSplitter()
    clean_logits = score(model, x, splitter)
    check_classes(protocol, clean_logits.shape[1])
    finite_clean = torch.isfinite(clean_logits).all(dim=1)
    clean_correct = (clean_logits.argmax(dim=1) == y) & finite_clean
    x_adv = x.detach().clone()
    idx = torch.nonzero(clean_correct).flatten()
    if idx.numel() and protocol.stages:
        attack = LIBRARY_ATTACKS[backend](model, protocol, eps, seed, clean_logits.shape[1], x.device)
        cuda = [x.device] if x.device.type == "cuda" else []
        # the libraries reseed the global generators; a randomised model gets a fresh draw per library call (their
        # own EOT loops), never the verdict's
        with torch.random.fork_rng(devices=cuda), fresh_draws(), backward(protocol.backward):
            torch.manual_seed(seed)
            for chunk, adv in splitter.map(lambda c: attack(x[c], y[c]), idx):
                x_adv[chunk] = adv.detach().to(x.dtype)
    _check_in_ball(x_adv, x, eps, protocol.norm, backend)
    adv_logits = score(model, x_adv, splitter)
    finite_adv = torch.isfinite(adv_logits).all(dim=1)
    adv_pred = adv_logits.argmax(dim=1)
    robust = clean_correct & (adv_pred == y) & finite_adv
    broken = clean_correct & ~robust
    return ClassificationOutcome(
        clean_logits.argmax(dim=1), adv_pred, clean_correct, robust, broken,
        [backend if b else "" for b in broken.tolist()],
        torch.where(broken, -1, 0).long(), ~finite_clean | ~finite_adv, x_adv)


def check_backend(backend: str, protocol: Protocol, precision: str = "fp32") -> None:
    """Refuse, before anything runs, a backend that cannot run ``protocol`` as the native engine would."""
    if backend not in BACKENDS:
        raise BenchError(f"unknown attack backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "native" or not protocol.stages:
        return
    if precision != "fp32":
        raise BenchError(f"the {backend} backend runs in fp32 only; drop --precision {precision} or use native")
    if protocol.craft_on == "base":  # the libraries judge success on the model they attack and stop there
        raise BenchError(f"the {backend} backend cannot run the transfer protocol {protocol.name}: it would judge "
                         "and stop on the undefended base; use --attack-backend native")
    for stage in protocol.stages:
        if not _library_runs(backend, stage, protocol.norm) or (stage.method == "pgd" and protocol.eot > 1):
            raise BenchError(f"the {backend} backend cannot run stage {stage.label()} of {protocol.name}; "
                             "use --attack-backend native")
    if backend == "autoattack":  # one APGD object for the untargeted losses, one for the targeted one
        for targeted in (False, True):
            settings = {(s.iterations, s.restarts, s.targets) for s in protocol.stages
                        if s.method == "apgd" and s.loss_spec.targeted == targeted}
            if len(settings) > 1:
                raise BenchError(f"protocol {protocol.name} needs two differently configured AutoAttack APGD "
                                 "objects; use --attack-backend native")


def _library_runs(backend: str, stage: Stage, norm: str) -> bool:
    """Whether ``backend`` has an attack that runs ``stage`` as the native engine would."""
    if stage.method in LIBRARY_METHOD_NAMES:  # FAB-T and Square: pyautoattack's, as the native stages run them
        return backend == "autoattack" and LIBRARY_METHOD_NAMES[stage.method] == (stage.method, stage.loss)
    name = stage.loss_spec.reference_name(backend)
    if name == UNSUPPORTED:
        return False
    if stage.method == "pgd":  # only torchattacks has PGD: ℓ∞, no momentum, cross-entropy
        return backend == "torchattacks" and not stage.momentum and name == TORCHATTACKS_PGD_LOSS and norm == "linf"
    if backend == "torchattacks" and stage.loss_spec.targeted:
        return name == TORCHATTACKS_TARGETED_LOSS
    return True


def _check_in_ball(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, backend: str) -> None:
    """A reference library must not hand back images outside the threat model (a few ulps of slack)."""
    worst = float(ball(norm).norm(x_adv - x).max()) if len(x) else 0.0
    if worst > eps * (1 + 1e-5) + 1e-7 or x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError(f"{backend} returned images outside the {norm} ball of radius {eps} or [0,1] "
                           f"(largest perturbation {worst})")


def _targets(stage: Stage, n_classes: int) -> int:
    return stage.n_targets(n_classes)


# stage methods pyautoattack runs under an attack name of their own: (method, loss the native stage uses) and name
LIBRARY_METHOD_NAMES = {"fab": ("fab", "margin-targeted"), "square": ("square", "margin")}
LIBRARY_NAMES = {"fab": "fab-t", "square": "square"}


def _autoattack(model, protocol: Protocol, eps: float, seed: int, n_classes: int, device):
    norm = LIBRARY_NORM[protocol.norm]
    names = [LIBRARY_NAMES.get(s.method) or s.loss_spec.reference_name("autoattack") for s in protocol.stages]
    aa = AutoAttack(model, attacks=names, eps=eps, norm=norm, version="custom", seed=seed, device=device)
    common = dict(norm=norm, eps=eps, seed=seed, rho=0.75, eot_iter=protocol.eot, device=device, logger=aa.logger)
    for stage in protocol.stages:
        # fresh objects: the checkpoint schedule is derived from n_iter in the constructor; AutoAttack sets the
        # untargeted object's loss from the attack name before each run
        if stage.method == "fab":  # AutoAttack sets targeted and one restart itself for "fab-t"
            aa.fab = FABAttack_PT(model, norm=norm, n_iter=stage.iterations, eps=eps, seed=seed, device=device,
                                  n_target_classes=_targets(stage, n_classes))
        elif stage.method == "square":
            aa.square = SquareAttack(model, norm=norm, n_queries=stage.iterations, eps=eps, p_init=SQUARE_P_INIT,
                                     n_restarts=stage.restarts, seed=seed, resc_schedule=SQUARE_RESCALE_SCHEDULE,
                                     device=device)
        elif stage.loss_spec.targeted:
            aa.apgd_targeted = APGDAttack_targeted(model, n_iter=stage.iterations, n_restarts=stage.restarts,
                                                   n_target_classes=_targets(stage, n_classes), **common)
        else:
            aa.apgd = APGDAttack(model, n_iter=stage.iterations, n_restarts=stage.restarts, **common)

    def attack(x, y):
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv

    return attack


def _torchattacks(model, protocol: Protocol, eps: float, seed: int, n_classes: int, device):
    try:
        import torchattacks  # deferred: torchattacks, optional (not a declared dependency)
    except ImportError as exc:
        raise BenchError("--attack-backend torchattacks needs the torchattacks package: "
                         "pip install --no-deps 'torchattacks>=3.5' (its pin of requests~=2.25 "
                         "conflicts with huggingface_hub; it runs with the newer requests)") from exc

    norm = LIBRARY_NORM[protocol.norm]
    attacks = []
    for stage in protocol.stages:
        if stage.method == "apgd" and stage.loss_spec.targeted:  # APGDT on its targeted DLR (check_backend)
            attacks.append(torchattacks.APGDT(model, norm=norm, eps=eps, steps=stage.iterations,
                                              n_restarts=stage.restarts, seed=seed, rho=0.75, eot_iter=protocol.eot,
                                              n_classes=_targets(stage, n_classes) + 1))
        elif stage.method == "apgd":
            attacks.append(torchattacks.APGD(model, norm=norm, eps=eps, steps=stage.iterations,
                                             n_restarts=stage.restarts, seed=seed, eot_iter=protocol.eot,
                                             loss=stage.loss_spec.reference_name("torchattacks"), rho=0.75))
        else:  # ℓ∞ PGD without momentum (check_backend); it returns its last iterate, the native PGD the first
            # successful one
            attacks.append(torchattacks.PGD(model, eps=eps, alpha=stage.pgd_step(eps),
                                            steps=stage.iterations, random_start=True))
    return attacks[0] if len(attacks) == 1 else torchattacks.MultiAttack(attacks)


LIBRARY_ATTACKS = {"autoattack": _autoattack, "torchattacks": _torchattacks}


def describe(protocol: Protocol, backend: str, n_classes: int | None = None) -> str:
    """The protocol text of result rows and cards: the native engine's summary, or the summary tagged with the
    library; with ``n_classes``, what ran on a dataset of that many classes (target classes at most C − 1)."""
    text = protocol.summary(n_classes) if isinstance(protocol, Protocol) else protocol.summary()
    return text if backend == "native" else f"{text} [backend: {backend}]"
