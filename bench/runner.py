"""The runner: turns a request (suite × encoders × tasks × datasets × ε) into result cells, computes the cells not
yet in the store batch by batch, and returns their tidy rows.

A cell is one (encoder, task, dataset, attack, ε); the clean cell (attack ``none``, ε = 0) is always included, so
every table has its clean column. Each finished batch is saved before the next starts, which is what makes a killed
run resumable with at most one batch lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from attacks.registry import ATTACKS
from bench.config import CellConfig
from bench.encoders.registry import ENCODERS
from bench.eps import Eps
from bench.errors import BenchError
from bench.store import Store, git_sha, now_iso, versions
from bench.suites import Suite, get_suite
from tasks.base import EvalContext
from tasks.registry import TASKS

CLEAN = Eps(0.0, "0")


@dataclass(frozen=True)
class RunRequest:
    suite: str = "micro"
    encoders: tuple[str, ...] = ("clip",)
    attack: str = "apgd"
    eps: tuple[Eps, ...] = ()
    tasks: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    n_samples: int | None = None
    seed: int = 0
    out: Path = Path("results")
    device: str = "cpu"
    batch_size: int | None = None
    force: bool = False
    allow_training: bool = True
    progress: bool = True
    precision: str = "fp32"


@dataclass
class Cell:
    cfg: CellConfig
    task: object
    data: object
    encoder: object
    protocol: object
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise BenchError(f"invalid --device {name!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {name} asked for, but no CUDA device is available here; use --device cpu")
    return device


def _validate(req: RunRequest, suite: Suite) -> tuple[list[str], list[str], list[str]]:
    encoders = list(dict.fromkeys(ENCODERS.canonical(e) for e in req.encoders))
    tasks = list(dict.fromkeys(TASKS.canonical(t) for t in req.tasks)) or list(suite.default_tasks)
    for t in tasks:
        if t not in suite.tasks:
            raise BenchError(f"task {t!r} is not part of the {suite.name} suite (it has: {', '.join(suite.tasks)})")
    known = {d for t in tasks for d in suite.tasks[t]}
    for d in req.datasets:
        if d not in known:
            raise BenchError(f"unknown dataset {d!r} for task(s) {', '.join(tasks)} in the {suite.name} suite "
                             f"(known: {', '.join(sorted(known))})")
    protocol = ATTACKS.get(req.attack)
    if protocol.stages and not req.eps:
        raise BenchError(f"--attack {protocol.name} needs at least one --eps (e.g. --eps 4/255)")
    if req.n_samples is not None and req.n_samples < 1:
        raise BenchError(f"--n-samples must be at least 1, got {req.n_samples}")
    return encoders, tasks, [d for d in req.datasets]


def plan(req: RunRequest) -> tuple[Suite, list[str], list[tuple[str, str]], list[tuple[str, Eps]]]:
    """Validate a request and list what it will compute, before anything expensive happens."""
    suite = get_suite(req.suite)
    encoders, tasks, datasets = _validate(req, suite)
    pairs = [(t, d) for t in tasks for d in suite.tasks[t] if not datasets or d in datasets]
    protocol = ATTACKS.get(req.attack)
    budgets = [("none", CLEAN)] + ([(protocol.name, e) for e in sorted(set(req.eps)) if e.value > 0]
                                   if protocol.stages else [])
    return suite, encoders, pairs, budgets


def run(req: RunRequest) -> pd.DataFrame:
    suite, encoder_names, pairs, budgets = plan(req)
    device = resolve_device(req.device)
    n_samples = req.n_samples or suite.n_samples
    batch_size = req.batch_size or suite.batch_size
    store = Store(req.out)
    tasks = {t: TASKS.get(t)() for t, _ in pairs}
    data_cache: dict[tuple[str, str], object] = {}
    results = []

    for enc_name in encoder_names:
        spec = ENCODERS.get(enc_name)
        encoder = suite.load_encoder(spec, str(device), allow_training=req.allow_training, progress=req.progress)
        cells = []
        for task_name, dataset in pairs:
            task = tasks[task_name]
            if (task_name, dataset) not in data_cache:
                data_cache[(task_name, dataset)] = task.load(suite, dataset, n_samples, req.seed)
            data = data_cache[(task_name, dataset)]
            for attack, eps in budgets:
                cfg = CellConfig(suite.name, enc_name, encoder.meta.checkpoint_sha256, task_name, dataset, attack,
                                 eps.value, eps.label, len(task.sample_ids(data)), req.seed,
                                 precision=req.precision)
                cells.append(Cell(cfg, task, data, encoder, ATTACKS.get(attack)))
        for cell in cells:
            cell.rows = _compute_cell(store, cell, spec, device, batch_size, req)
            results.append(cell.rows)
    return pd.concat(results, ignore_index=True) if results else pd.DataFrame()


def _compute_cell(store: Store, cell: Cell, spec, device, batch_size: int, req: RunRequest) -> pd.DataFrame:
    run = store.run(cell.cfg)
    with run.locked():
        if run.complete and not req.force:
            return run.rows()
        if req.force:
            for path in run.samples_dir.glob("*.csv"):
                path.unlink()
        card = run.card()
        ids = cell.task.sample_ids(cell.data)
        done = run.done_ids()
        todo = [i for i, sid in enumerate(ids) if sid not in done]
        started = card.get("started_at") or now_iso()
        seconds_before = float(card.get("compute_seconds", 0.0))
        card = {
            "run_id": cell.cfg.run_id, "status": "running", "config": cell.cfg.as_dict(),
            "encoder": cell.encoder.meta.as_dict(), "protocol": cell.protocol.as_dict(),
            "protocol_summary": cell.protocol.summary(), "git_sha": git_sha(), "versions": versions(),
            "device": str(device), "threads": torch.get_num_threads(), "started_at": started,
            "compute_seconds": seconds_before, "batch_size": batch_size,
        }
        run.write_card(card)
        ctx = EvalContext(cell.protocol, cell.cfg.eps, cell.cfg.seed, device, cell.cfg.precision)
        label = f"{cell.cfg.encoder} {cell.cfg.dataset} {cell.cfg.attack} {cell.cfg.eps_label}"
        bar = tqdm(total=len(ids), initial=len(ids) - len(todo), desc=label, unit="img", leave=False,
                   disable=not req.progress, dynamic_ncols=True)
        t0 = time.time()
        for start in range(0, len(todo), batch_size):
            rows = todo[start:start + batch_size]
            records = cell.task.evaluate(cell.encoder, cell.data, rows, ctx)
            run.write_batch(records)
            card["compute_seconds"] = seconds_before + time.time() - t0
            run.write_card(card)
            bar.update(len(rows))
        bar.close()
        records = run.records()
        if len(records) != len(ids):
            raise BenchError(f"run {cell.cfg.run_id} has {len(records)} of {len(ids)} samples after computing; "
                             "its directory may have been modified concurrently")
        metrics = cell.task.metrics(records, attacked=bool(cell.protocol.stages))
        rows = [_row(cell, spec, m, card) for m in metrics]
        return run.finish(rows, card)


def _row(cell: Cell, spec, metric, card: dict) -> dict:
    cfg, protocol = cell.cfg, cell.protocol
    return {
        "run_id": cfg.run_id, "suite": cfg.suite, "encoder": cfg.encoder, "method": spec.method,
        "train_eps": spec.train_eps_label, "task": cfg.task, "dataset": cfg.dataset, "attack": cfg.attack,
        "protocol": protocol.summary(), "eps": cfg.eps, "eps_str": cfg.eps_label, "steps": protocol.iterations,
        "restarts": protocol.restarts, "precision": cfg.precision, "n_samples": cfg.n_samples,
        "metric": metric.name, "value": metric.value, "ci_low": metric.ci_low, "ci_high": metric.ci_high,
        "seed": cfg.seed, "git_sha": card["git_sha"],
        "versions": ";".join(f"{k}={v}" for k, v in card["versions"].items()),
        "started_at": card["started_at"], "seconds": round(card["compute_seconds"], 2),
    }
