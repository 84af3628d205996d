"""The adversarial fine-tuning loop: one loop, pluggable objectives, single process or DDP (``torchrun``).

Everything random is a pure function of (seed, step): which images a step sees (``batch_indices``) and every PGD
random start (one generator per sample). Together with the saved optimiser state this makes ``--resume`` continue
exactly where an uninterrupted run would be, and a DDP run with N processes equal to a single-process run with the
same global batch (up to floating-point summation order).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from tqdm import tqdm

from attacks.pgd import pgd
from bench.core.checkpoints import atomic_path, atomic_write_bytes, save_tensors
from bench.core.dist import DistInfo
from bench.core.errors import BenchError, TrainingCollapsed
from bench.core.provenance import git_sha, now_iso
from bench.encoders.base import ClipEncoder, ImageTower
from bench.train.config import TrainConfig
from bench.train.data import batch_indices
from bench.train.health import CollapseMonitor, cosine_to_original, embedding_spread
from bench.train.objectives import OBJECTIVES, Batch, make_objective
from bench.train.probe import Probe
from tasks.zeroshot_model import class_embeddings

LOG_FIELDS = ["step", "lr", "loss", "adv_loss", "cos_to_original", "spread", "grad_norm", "seconds"]
STATE_FILE = "last.pt"
PROBE_FILE = "probe_log.csv"


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def step_seeds(cfg: TrainConfig, step: int, micro: int, positions: range) -> torch.Tensor:
    """One seed per (step, micro-batch, position in the global batch) for the PGD random starts."""
    base = (cfg.seed * 1_000_003 + step) * (cfg.grad_accum + 1) + micro
    return torch.tensor([base * 100_003 + p for p in positions], dtype=torch.long)


def adversarial_step(cfg: TrainConfig, objective, student, model, original, x, labels, classes, seeds):
    """One micro-batch: the inner PGD against the current encoder (parameters frozen), then the outer loss and its
    backward pass (scaled for gradient accumulation). ``model`` is ``student`` or its DDP wrapper."""
    with torch.no_grad():
        target = original(x)  # the health figures compare with it, whatever the objective
        clean = student(x) if objective.needs_clean_current else None
    batch = Batch(x, target, clean, labels, classes, original, images_per_step=cfg.batch_size)

    def inner(x_adv, rows):
        return objective.inner_loss(student(x_adv), batch, rows), torch.zeros_like(rows, dtype=torch.bool)

    student.requires_grad_(False)  # the inner attack differentiates the input only
    try:
        x_adv = pgd(inner, x, cfg.eps, n_iter=cfg.inner_steps, step_size=cfg.inner_step_size,
                    momentum=cfg.inner_momentum, seeds=seeds, last_iterate=True).x_adv
    finally:
        student.requires_grad_(True)
    loss, emb_adv = objective.outer_loss(model, x_adv, batch)
    (loss / cfg.grad_accum).backward()
    return loss.detach(), emb_adv.detach(), batch


def make_optimizer(cfg: TrainConfig, student: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW (FARE's recipe) or SGD with momentum (PMG-AFT, TGA-ZSR, AGFT); weight decay on matrices only (the
    later papers train with weight decay 0, where the grouping changes nothing)."""
    decay = [p for p in student.parameters() if p.ndim >= 2]
    no_decay = [p for p in student.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.sgd_momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


@dataclass
class TrainOutcome:
    dir: Path
    card: dict
    collapsed: bool


@dataclass
class TrainingState:
    """Everything one run carries from step to step."""

    cfg: TrainConfig
    dist: DistInfo
    device: torch.device
    out_dir: Path
    data: object
    original: torch.nn.Module  # φ₀, frozen
    student: ImageTower  # φ, trained
    model: torch.nn.Module  # the student, or its DDP wrapper
    objective: object
    classes: torch.Tensor | None
    opt: torch.optim.Optimizer
    monitor: CollapseMonitor
    local_batch: int
    start_step: int = 0
    log_rows: list[dict] = field(default_factory=list)

    @property
    def state_path(self) -> Path:
        return self.out_dir / STATE_FILE

    def batch_indices(self, step: int, micro: int = 0) -> np.ndarray:
        cfg = self.cfg
        return batch_indices(step, micro, cfg.grad_accum, cfg.batch_size, self.data.n, cfg.seed)


def setup_run(cfg: TrainConfig, base: ClipEncoder, data, out_dir: Path, device: torch.device) -> TrainingState:
    """The student (a trainable copy of the image tower), its optimiser, DDP wrapper and collapse monitor."""
    cfg.validate()
    dist = DistInfo.from_env(device)
    if cfg.batch_size % (cfg.grad_accum * dist.world):
        raise BenchError(f"global batch {cfg.batch_size} is not divisible by grad_accum × processes "
                         f"({cfg.grad_accum} × {dist.world})")
    out_dir = Path(out_dir)
    if dist.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    base = base.to(device)
    student = copy.deepcopy(base.tower)
    student.requires_grad_(True)
    if cfg.grad_checkpointing:
        student.visual.set_grad_checkpointing(True)
    objective = make_objective(cfg.method, cfg.inner_loss, cfg.objective_options)
    reads_text = objective.needs_labels or objective.needs_class_embeddings
    classes = class_embeddings(base, data.class_prompts) if reads_text else None
    opt = make_optimizer(cfg, student)
    model = student
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(student, device_ids=[device] if device.type == "cuda"
                                                          else None)
    # a supervised method moves away from the original embedding by design: only its spread tells a collapse
    monitor = CollapseMonitor() if objective.keeps_original_embedding else \
        CollapseMonitor(min_cosine=None, drift_cosine=None)
    return TrainingState(cfg, dist, device, out_dir, data, base.tower, student, model, objective, classes, opt,
                         monitor, cfg.batch_size // cfg.grad_accum // dist.world)


def _restore(run: TrainingState) -> None:
    """Continue from the last periodic checkpoint: weights, optimiser, log, and the monitor as if never stopped."""
    if not run.state_path.is_file():
        if run.dist.main:
            print(f"no checkpoint in {run.out_dir}; starting from step 0", file=sys.stderr)
        return
    state = _load_state(run.state_path)
    run.student.visual.load_state_dict(state["tower"])
    run.opt.load_state_dict(state["optimizer"])
    run.start_step = int(state["step"])
    run.log_rows = [dict(zip(LOG_FIELDS, row)) for row in state["log"]]
    run.monitor.reference_spread = float(state["reference_spread"])
    for row in run.log_rows:
        if row["spread"] is not None:
            run.monitor.update(int(row["step"]), row["spread"], row["cos_to_original"])


def train_step(run: TrainingState, step: int) -> dict:
    """One optimiser step over the global batch (accumulated micro-batches, all-reduced under DDP); its log row."""
    cfg, device = run.cfg, run.device
    for group in run.opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    loss_sum = 0.0
    for micro in range(cfg.grad_accum):
        idx = run.batch_indices(step, micro)
        mine = range(run.dist.rank * run.local_batch, (run.dist.rank + 1) * run.local_batch)
        x, labels = run.data.load(idx[mine.start:mine.stop])
        x, labels = x.to(device), labels.to(device)
        last = micro == cfg.grad_accum - 1
        sync = run.model.no_sync() if run.dist.world > 1 and not last else contextlib.nullcontext()
        with sync:
            loss, emb_adv, batch = adversarial_step(cfg, run.objective, run.student, run.model, run.original, x,
                                                    labels, run.classes, step_seeds(cfg, step, micro, mine))
        loss_sum += float(loss)
    # after DDP's all-reduce, so every process (and a single-process run) sees the same global gradient
    grad_norm = float(torch.nn.utils.clip_grad_norm_(run.student.parameters(), float("inf")))
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    checked = (step + 1) % cfg.health_every == 0 or step + 1 == cfg.steps
    return {"step": step + 1, "lr": lr_at(step, cfg), "grad_norm": grad_norm,
            **_health(run, loss_sum / cfg.grad_accum, x, emb_adv, batch, checked)}


def _health(run: TrainingState, loss: float, x, emb_adv, batch, checked: bool) -> dict:
    """Loss and inner loss (free: from the step's own passes) and, on the steps that check health, the cosine of
    the clean embedding to the original's and its spread after the update (one more forward pass); averaged over
    processes. Unchecked steps leave those two figures empty."""
    with torch.no_grad():
        rows = torch.arange(len(x), device=run.device)
        figures = [loss, float(run.objective.inner_loss(emb_adv, batch, rows).mean())]
        if checked:
            emb_clean = run.student(x)
            figures += [cosine_to_original(emb_clean, batch.target), embedding_spread(emb_clean)]
        figures = torch.tensor(figures)
    if run.dist.world > 1:
        torch_dist.all_reduce(figures)
        figures /= run.dist.world
    values = [float(v) for v in figures] + [None, None][: 4 - len(figures)]
    return dict(zip(("loss", "adv_loss", "cos_to_original", "spread"), values))


def _watch(run: TrainingState, row: dict) -> bool:
    """Feed the collapse monitor; warn once on drift and on collapse. True when collapse was just detected."""
    name = run.cfg.encoder_name
    if row["spread"] is None:  # not a health-check step
        return False
    drifted_before = run.monitor.drifted_at is not None
    newly = run.monitor.update(row["step"], row["spread"], row["cos_to_original"])
    if run.dist.main and not drifted_before and run.monitor.drifted_at is not None:
        tqdm.write(f"warning: {name} drifted from the original encoder at step {row['step']}: cosine "
                   f"{row['cos_to_original']:.3f} < {run.monitor.drift_cosine} (zero-shot accuracy may suffer)",
                   file=sys.stderr)
    if newly and run.dist.main:
        tqdm.write(f"warning: {name} embedding collapse at step {row['step']}: spread {row['spread']:.4f} "
                   f"(original {run.monitor.reference_spread:.4f}), cosine to original "
                   f"{row['cos_to_original']:.3f}", file=sys.stderr)
    return newly


def measure_step_seconds(run: TrainingState) -> float:
    """Seconds of one training step of this process, measured rather than extrapolated (the estimate must hold
    within 1.3×): a real step on throwaway copies of the student and its optimiser after a warm-up step, plus the
    time to draw one batch of training images the first time (lazily drawn data costs at first use)."""
    trial = copy.copy(run)
    trial.student = copy.deepcopy(run.student)
    trial.model = trial.student  # the timing is per process, without DDP's communication
    trial.opt = make_optimizer(run.cfg, trial.student)
    trial.dist = DistInfo()
    seconds = []
    for _ in range(4):  # the first step warms up (allocator, the optimiser's state); the median of the other three
        t0 = time.perf_counter()
        train_step(trial, 0)
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        seconds.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    run.data.load(run.batch_indices(1)[:run.local_batch])  # kept: step 1 reads it from memory
    draw = time.perf_counter() - t0
    # data that keeps what it drew (the micro world) pays the draw once per image, not once per epoch
    fresh = min(1.0, run.data.n / (run.cfg.steps * run.cfg.batch_size)) if getattr(run.data, "keeps_drawn", False) \
        else 1.0
    return sorted(seconds[1:])[1] + fresh * draw * run.cfg.grad_accum


def _announce(run: TrainingState) -> None:
    cfg = run.cfg
    per_step = measure_step_seconds(run)
    inner = (f"PGD-{cfg.inner_steps} (steps of {cfg.inner_step_size * 255:.3g}/255)" if cfg.inner_steps > 1 else
             f"one step of {cfg.inner_step_size * 255:.3g}/255 from a random start")
    print(f"training {cfg.encoder_name} ({cfg.suite}): {cfg.steps} steps × batch {cfg.batch_size}, inner attack "
          f"{inner} at ε={cfg.eps_levels}/255 — estimated {per_step * cfg.steps / 60:.1f} min on {run.device} "
          f"({per_step:.2f} s per step, measured)", file=sys.stderr)


def _save_state(path: Path, student, opt, step: int, log_rows: list[dict], reference_spread: float) -> None:
    state = {"step": step, "tower": student.visual.state_dict(), "optimizer": opt.state_dict(),
             "log": [[row[k] for k in LOG_FIELDS] for row in log_rows], "reference_spread": reference_spread}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which, do not guess
        raise BenchError(f"cannot resume from {path}: {str(exc).splitlines()[0]}") from exc


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def _checkpoint(run: TrainingState, step: int) -> None:
    if run.dist.main:
        _save_state(run.state_path, run.student, run.opt, step, run.log_rows, run.monitor.reference_spread)
        _write_log(run.out_dir / "train_log.csv", run.log_rows)


def _finish(run: TrainingState, base: ClipEncoder, base_name: str) -> dict:
    """The trained tower and its card (rank 0); every process waits for them."""
    card = {}
    if run.dist.main:
        cfg, last = run.cfg, (run.log_rows[-1] if run.log_rows else {})
        sha = save_tensors(run.out_dir / "visual.safetensors", run.student.visual.state_dict())
        card = {
            "encoder": cfg.encoder_name, "method": cfg.method, "method_label": OBJECTIVES.get(cfg.method).label,
            "eps": f"{cfg.eps_levels}/255", "config": cfg.weights_dict(), "config_hash": cfg.hash,
            "data": run.data.description, "base_model": base_name, "base_sha256": base.meta.checkpoint_sha256,
            "code_version": git_sha(), "world_size": run.dist.world, "device": str(run.device),
            "threads": torch.get_num_threads(), "wall_seconds": last.get("seconds"),
            "final_health": {k: last.get(k) for k in ("loss", "adv_loss", "cos_to_original", "spread")},
            "reference_spread": run.monitor.reference_spread, "collapsed_at_step": run.monitor.collapsed_at,
            "drifted_at_step": run.monitor.drifted_at, "finished_at": now_iso(), "sha256": sha,
        }
        atomic_write_bytes(run.out_dir / "card.json", (json.dumps(card, indent=2, default=str) + "\n").encode())
    if run.dist.world > 1:
        torch_dist.barrier()
    return card


def train(cfg: TrainConfig, base: ClipEncoder, data, out_dir: Path, *, device: torch.device, resume: bool = False,
          progress: bool = True, fail_on_collapse: bool = False, base_name: str = "", on_step=None,
          probe: Probe | None = None) -> TrainOutcome:
    """Fine-tune ``base``'s image tower with ``cfg``; write checkpoints, log and card into ``out_dir``.

    ``on_step(step, row)`` is called after every optimiser step and its periodic checkpoint (for callers that
    log elsewhere or stop early). ``probe`` measures zero-shot accuracy every few steps (``probe_log.csv``).
    """
    run = setup_run(cfg, base, data, out_dir, device)
    if resume:
        _restore(run)
    if run.monitor.reference_spread is None:
        x0, _ = data.load(run.batch_indices(0))
        with torch.no_grad():
            run.monitor.reference_spread = embedding_spread(run.original(x0.to(device)))
    if run.dist.main and run.start_step == 0:
        _announce(run)
    probe = probe if run.dist.main else None
    if probe is not None:
        probe.resume(run.out_dir / PROBE_FILE, run.start_step)
        if run.start_step == 0:
            probe.measure(run.student, 0)

    wall0 = time.time() - (float(run.log_rows[-1]["seconds"]) if run.log_rows else 0.0)
    bar = tqdm(range(run.start_step, cfg.steps), initial=run.start_step, total=cfg.steps,
               desc=f"train {cfg.encoder_name}", unit="step", disable=not (progress and run.dist.main),
               dynamic_ncols=True)
    for step in bar:
        row = train_step(run, step)
        row["seconds"] = round(time.time() - wall0, 2)
        run.log_rows.append(row)
        newly = _watch(run, row)
        if row["spread"] is not None:
            bar.set_postfix(loss=f"{row['loss']:.3f}", cos=f"{row['cos_to_original']:.3f}",
                            spread=f"{row['spread']:.4f}")
        if probe is not None and probe.due(step + 1, cfg.steps):
            probe.measure(run.student, step + 1)
            probe.write(run.out_dir / PROBE_FILE)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            _checkpoint(run, step + 1)
        if on_step is not None:
            on_step(step + 1, row)
        if newly and fail_on_collapse:
            if run.dist.main:
                _write_log(run.out_dir / "train_log.csv", run.log_rows)
            raise TrainingCollapsed(f"{cfg.encoder_name} collapsed at step {step + 1} "
                                    f"(see {run.out_dir / 'train_log.csv'})")
    bar.close()
    return TrainOutcome(run.out_dir, _finish(run, base, base_name), run.monitor.collapsed)
