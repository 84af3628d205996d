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
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as torch_dist
from tqdm import tqdm

from attacks.pgd import pgd
from bench.core.checkpoints import atomic_path, atomic_write_bytes, save_tensors
from bench.core.errors import BenchError, TrainingCollapsed
from bench.encoders.base import ClipEncoder
from bench.sharding import DistInfo
from bench.store import git_sha, now_iso
from bench.train.config import TrainConfig
from bench.train.data import batch_indices
from bench.train.health import CollapseMonitor, cosine_to_original, embedding_spread
from bench.train.objectives import Batch, make_objective
from tasks.zeroshot_model import class_embeddings

LOG_FIELDS = ["step", "lr", "loss", "adv_loss", "cos_to_original", "spread", "grad_norm", "seconds"]
STATE_FILE = "last.pt"


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
        target = original(x)
        clean = student(x) if objective.needs_clean_current else None
    batch = Batch(x, target, clean, labels, classes)

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


@dataclass
class TrainOutcome:
    dir: Path
    card: dict
    collapsed: bool


def estimate_seconds(tower, cfg: TrainConfig, local_batch: int, device, image_shape) -> float:
    """Extrapolate the run's duration from one timed forward/backward on a small batch on this device."""
    n = min(8, local_batch)
    x = torch.rand(n, *image_shape, device=device, requires_grad=True)
    tower(x).sum().backward()  # warm-up
    t0 = time.perf_counter()
    tower(x).sum().backward()
    per_image = (time.perf_counter() - t0) / n
    tower.zero_grad(set_to_none=True)
    passes = cfg.inner_steps + 2 + make_objective(cfg.method).extra_passes  # inner PGD, outer, health forward
    return per_image * passes * local_batch * cfg.grad_accum * cfg.steps


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


def train(cfg: TrainConfig, base: ClipEncoder, data, out_dir: Path, *, device: torch.device, resume: bool = False,
          progress: bool = True, fail_on_collapse: bool = False, base_name: str = "",
          on_step=None) -> TrainOutcome:
    """Fine-tune ``base``'s image tower with ``cfg``; write checkpoints, log and card into ``out_dir``.

    ``on_step(step, row)`` is called after every optimiser step and its periodic checkpoint (for callers that
    log elsewhere or stop early).
    """
    cfg.validate()
    dist = DistInfo.from_env(device)
    if cfg.batch_size % (cfg.grad_accum * dist.world):
        raise BenchError(f"global batch {cfg.batch_size} is not divisible by grad_accum × processes "
                         f"({cfg.grad_accum} × {dist.world})")
    local_batch = cfg.batch_size // cfg.grad_accum // dist.world
    out_dir = Path(out_dir)
    if dist.main:
        out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    base = base.to(device)
    original = base.tower  # frozen: ClipEncoder never lets its parameters require grad
    student = copy.deepcopy(base.tower)
    student.requires_grad_(True)
    if cfg.grad_checkpointing:
        student.visual.set_grad_checkpointing(True)
    objective = make_objective(cfg.method, cfg.inner_loss)
    classes = class_embeddings(base, data.class_prompts) if objective.needs_labels else None
    decay = [p for p in student.parameters() if p.ndim >= 2]
    no_decay = [p for p in student.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    model = student
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(student, device_ids=[device] if device.type == "cuda"
                                                          else None)

    start_step, log_rows = 0, []
    monitor = CollapseMonitor() if objective.keeps_original_embedding else \
        CollapseMonitor(min_cosine=None, drift_cosine=None)  # only the spread tells a TeCoA collapse
    state_path = out_dir / STATE_FILE
    if resume and state_path.is_file():
        state = _load_state(state_path)
        student.visual.load_state_dict(state["tower"])
        opt.load_state_dict(state["optimizer"])
        start_step = int(state["step"])
        log_rows = [dict(zip(LOG_FIELDS, row)) for row in state["log"]]
        monitor.reference_spread = float(state["reference_spread"])
        for row in log_rows:  # the monitor's state (patience count, first drift, collapse) as if never stopped
            monitor.update(int(row["step"]), row["spread"], row["cos_to_original"])
    elif resume and dist.main:
        print(f"no checkpoint in {out_dir}; starting from step 0", file=sys.stderr)
    if monitor.reference_spread is None:
        x0, _ = data.load(batch_indices(0, 0, cfg.grad_accum, cfg.batch_size, data.n, cfg.seed))
        with torch.no_grad():
            monitor.reference_spread = embedding_spread(original(x0.to(device)))

    if dist.main and start_step == 0:
        image_shape = tuple(data.load(batch_indices(0, 0, cfg.grad_accum, cfg.batch_size, data.n, cfg.seed)[:1])[0]
                            .shape[1:])
        est = estimate_seconds(student, cfg, local_batch, device, image_shape)
        print(f"training {cfg.encoder_name} ({cfg.suite}): {cfg.steps} steps × batch {cfg.batch_size}, "
              f"PGD-{cfg.inner_steps} inner at ε={cfg.eps_levels}/255 — estimated {est / 60:.1f} min on {device}",
              file=sys.stderr)

    wall0 = time.time() - (float(log_rows[-1]["seconds"]) if log_rows else 0.0)
    bar = tqdm(range(start_step, cfg.steps), initial=start_step, total=cfg.steps, desc=f"train {cfg.encoder_name}",
               unit="step", disable=not (progress and dist.main), dynamic_ncols=True)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):
            idx = batch_indices(step, micro, cfg.grad_accum, cfg.batch_size, data.n, cfg.seed)
            mine = range(dist.rank * local_batch, (dist.rank + 1) * local_batch)
            x, labels = data.load(idx[mine.start:mine.stop])
            x, labels = x.to(device), labels.to(device)
            sync = model.no_sync() if dist.world > 1 and micro < cfg.grad_accum - 1 else contextlib.nullcontext()
            with sync:
                loss, emb_adv, batch = adversarial_step(cfg, objective, student, model, original, x, labels, classes,
                                                        step_seeds(cfg, step, micro, mine))
            loss_sum += float(loss)
        # after DDP's all-reduce, so every process (and a single-process run) sees the same global gradient
        grad_norm = float(torch.nn.utils.clip_grad_norm_(student.parameters(), float("inf")))
        opt.step()
        opt.zero_grad(set_to_none=True)

        with torch.no_grad():
            emb_clean = student(x)  # after the update
            adv_loss = objective.inner_loss(emb_adv, batch, torch.arange(len(x), device=device)).mean()
            figures = torch.tensor([loss_sum / cfg.grad_accum, float(adv_loss),
                                    cosine_to_original(emb_clean, batch.target), embedding_spread(emb_clean)])
        if dist.world > 1:
            torch_dist.all_reduce(figures)
            figures /= dist.world
        row = {"step": step + 1, "lr": lr_at(step, cfg), "loss": float(figures[0]), "adv_loss": float(figures[1]),
               "cos_to_original": float(figures[2]), "spread": float(figures[3]), "grad_norm": grad_norm,
               "seconds": round(time.time() - wall0, 2)}
        log_rows.append(row)
        drifted_before = monitor.drifted_at is not None
        newly = monitor.update(step + 1, row["spread"], row["cos_to_original"])
        if dist.main and not drifted_before and monitor.drifted_at is not None:
            tqdm.write(f"warning: {cfg.encoder_name} drifted from the original encoder at step {step + 1}: cosine "
                       f"{row['cos_to_original']:.3f} < {monitor.drift_cosine} (zero-shot accuracy may suffer)",
                       file=sys.stderr)
        if newly and dist.main:
            tqdm.write(f"warning: {cfg.encoder_name} embedding collapse at step {step + 1}: spread {row['spread']:.4f}"
                       f" (original {monitor.reference_spread:.4f}), cosine to original "
                       f"{row['cos_to_original']:.3f}", file=sys.stderr)
        bar.set_postfix(loss=f"{row['loss']:.3f}", cos=f"{row['cos_to_original']:.3f}",
                        spread=f"{row['spread']:.4f}")
        if dist.main and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            _save_state(state_path, student, opt, step + 1, log_rows, monitor.reference_spread)
            _write_log(out_dir / "train_log.csv", log_rows)
        if on_step is not None:
            on_step(step + 1, row)
        if newly and fail_on_collapse:
            if dist.main:
                _write_log(out_dir / "train_log.csv", log_rows)
            raise TrainingCollapsed(f"{cfg.encoder_name} collapsed at step {step + 1} "
                                    f"(see {out_dir / 'train_log.csv'})")
    bar.close()

    card = {}
    if dist.main:
        sha = save_tensors(out_dir / "visual.safetensors", student.visual.state_dict())
        last = log_rows[-1] if log_rows else {}
        card = {
            "encoder": cfg.encoder_name, "method": cfg.method, "eps": f"{cfg.eps_levels}/255",
            "config": cfg.weights_dict(), "config_hash": cfg.hash, "data": data.description, "base_model": base_name,
            "base_sha256": base.meta.checkpoint_sha256, "code_version": git_sha(), "world_size": dist.world,
            "device": str(device), "threads": torch.get_num_threads(), "wall_seconds": last.get("seconds"),
            "final_health": {k: last.get(k) for k in ("loss", "adv_loss", "cos_to_original", "spread")},
            "reference_spread": monitor.reference_spread, "collapsed_at_step": monitor.collapsed_at,
            "drifted_at_step": monitor.drifted_at,
            "finished_at": now_iso(), "sha256": sha,
        }
        atomic_write_bytes(out_dir / "card.json", (json.dumps(card, indent=2, default=str) + "\n").encode())
    if dist.world > 1:
        torch_dist.barrier()
    return TrainOutcome(out_dir, card, monitor.collapsed)
