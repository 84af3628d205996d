"""The runner: turns a request (suite × encoders × tasks × datasets × ε) into result cells, computes the cells not
yet in the store batch by batch, and returns their tidy rows.

A cell is one (encoder, task, dataset, attack, ε); the clean cell (attack ``none``, ε = 0) is always included, so
every table has its clean column. Each finished batch is saved before the next starts, which is what makes a killed
run resumable with at most one batch lost.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from attacks import ENGINE_VERSION
from attacks.backends import check_backend, describe
from attacks.registry import resolve_attack
from attacks.sanity import SanityConfig, eps_sweeps
from bench import device as dev
from bench.core.config import CellConfig
from bench.core.eps import Eps
from bench.core.errors import BenchError, NeedsTraining
from bench.core.provenance import git_sha, is_dirty, now_iso, versions
from bench.core.suite import Suite
from bench.defences import declared_protocol
from bench.encoders.defended import DefendedEncoder
from bench.encoders.registry import ENCODERS
from bench.encoders.resolve import resolve_encoders
from bench.sharding import Shards
from bench.sharding import init as init_shards
from bench.store import Store
from bench.suites import get_suite
from bench.train.objectives import method_label
from tasks.base import EvalContext, Metric
from tasks.registry import TASKS, protocol_for

CLEAN = Eps(0.0, "0")


@dataclass(frozen=True)
class RunRequest:
    suite: str = "micro"
    # registered names, hf-hub:ORG/REPO, NAME=SOURCE (bench/encoders/resolve.py), or EncoderSpecs (the Python API)
    encoders: tuple = ("clip",)
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
    backend: str = "native"  # attack backend: native, autoattack or torchattacks (attacks/backends.py)
    data_root: Path | None = None  # paper suites: where local datasets are (else the hub cache)
    encoder_weights: tuple[str, ...] = ()  # paper suites: NAME=PATH|URL|hf-hub:…|train
    plan_only: bool = False  # print the plan (cost estimate) and stop
    base: str | None = None  # --base: what NAME=SOURCE towers go onto (default: the suite's base)


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


def _validate(req: RunRequest, suite: Suite) -> tuple[list, list[str], list[str]]:
    encoders = resolve_encoders(req.encoders, req.base)
    tasks = list(dict.fromkeys(TASKS.canonical(t) for t in req.tasks)) or list(suite.default_tasks)
    for t in tasks:
        if t not in suite.tasks:
            raise BenchError(f"task {t!r} is not part of the {suite.name} suite (it has: {', '.join(suite.tasks)})")
    known = {d for t in tasks for d in suite.tasks[t]}
    for d in req.datasets:
        if d not in known:
            close = difflib.get_close_matches(d, sorted(known), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BenchError(f"unknown dataset {d!r}{hint} for task(s) {', '.join(tasks)} in the {suite.name} suite "
                             f"(known: {', '.join(sorted(known))})")
    protocol = resolve_attack(req.attack)
    for t in tasks:  # a classification protocol on a vision-language task, or the other way round, is refused
        protocol_for(TASKS.get(t), req.attack, req.backend)
    defended = [s.full_name for s in encoders if s.defence is not None]
    reads_tokens = [t for t in tasks if hasattr(TASKS.get(t), "protocol")]
    if defended and reads_tokens:
        raise BenchError(f"{defended[0]}: a test-time defence acts on the embedding zero-shot classification reads; "
                         f"task {reads_tokens[0]} reads patch tokens (run it with --task zeroshot)")
    if protocol.stages and not req.eps:
        raise BenchError(f"--attack {protocol.name} needs at least one --eps (e.g. --eps 4/255)")
    check_backend(req.backend, protocol, dev.attack_precision(req.precision))
    if req.n_samples is not None and req.n_samples < 1:
        raise BenchError(f"--n-samples must be at least 1, got {req.n_samples}")
    if req.batch_size is not None and req.batch_size < 1:
        raise BenchError(f"--batch-size must be at least 1, got {req.batch_size}")
    if req.seed < 0:  # the sample selection and every random start take unsigned seeds
        raise BenchError(f"--seed must not be negative, got {req.seed}")
    return encoders, tasks, [d for d in req.datasets]


def suite_options(req: RunRequest) -> dict:
    """The suite options the request sets (only those: a suite that takes none refuses any)."""
    options = {"data_root": req.data_root, "encoder_weights": req.encoder_weights}
    return {k: v for k, v in options.items() if v}


def plan(req: RunRequest) -> tuple[Suite, list, list[tuple[str, str]], list[tuple[str, Eps]]]:
    """Validate a request and list what it will compute, before anything expensive happens."""
    suite = get_suite(req.suite, **suite_options(req))
    encoders, tasks, datasets = _validate(req, suite)
    pairs = [(t, d) for t in tasks for d in suite.tasks[t] if not datasets or d in datasets]
    protocol = resolve_attack(req.attack)
    # the attack as the request names it (a preset's name, or a protocol file each task resolves again)
    budgets = [("none", CLEAN)] + ([(req.attack, e) for e in sorted(set(req.eps)) if e.value > 0]
                                   if protocol.stages else [])
    return suite, encoders, pairs, budgets


def cell_config(req: RunRequest, suite: str, encoder_meta, task, dataset: str, protocol, eps: Eps, n_samples: int,
                backend: str, defence: dict | None = None, data=None) -> CellConfig:
    """The identity of one cell: what it measures and everything that produced it (see ``CellConfig``);
    ``defence``: the identity of the test-time defence the encoder runs under (``DefendedEncoder.identity``);
    ``data`` (the loaded dataset) adds its definition where the suite generates it."""
    return CellConfig(suite, encoder_meta.name, encoder_meta.checkpoint_sha256, task.name, dataset, protocol.name,
                      eps.value, eps.label, n_samples, req.seed, backend=backend, precision=req.precision,
                      protocol=protocol.definition(), metric_definition=task.metric_definition,
                      engine_version=ENGINE_VERSION, defence=defence,
                      data=getattr(data, "definition", None))


def defence_identity(encoder) -> dict | None:
    """What a cell's identity holds of the encoder's test-time defence (None without one)."""
    return encoder.identity() if isinstance(encoder, DefendedEncoder) else None


def cell_protocol(task, attack: str, backend: str, spec):
    """The protocol a cell runs: the preset for the task, ``adaptive`` resolved to what the encoder's test-time
    defence declares against itself."""
    return declared_protocol(protocol_for(task, attack, backend), spec.defence)


def run(req: RunRequest) -> pd.DataFrame:
    suite, encoder_specs, pairs, budgets = plan(req)
    shards, device = init_shards(resolve_device(req.device))
    dev.check_precision(req.precision, device)
    store = Store(req.out)
    if not req.plan_only:
        store.check_writable()
    tasks = {t: TASKS.get(t)() for t, _ in pairs}
    data_cache: dict[tuple[str, str], object] = {}
    results = []

    for spec in encoder_specs:
        if req.plan_only:  # a plan prices what is there and trains nothing
            encoder = load_if_trained(suite, spec, device, req.progress)
            if encoder is None:
                print(f"plan for {spec.name}: not trained yet; `bench run` trains it first (it prints the measured "
                      f"training estimate when it starts; `bench train --encoder {spec.name}` trains it alone), then "
                      f"prices and computes its cells", file=sys.stderr)
                continue
        else:  # rank 0 first: it downloads (or trains) what is missing, the others then read it from the cache
            encoder = shards.rank0_first(lambda spec=spec: load_encoder(
                suite, spec, device, req.seed, allow_training=req.allow_training and shards.world == 1,
                progress=req.progress))
        batch_size = req.batch_size or dev.fit_batch(encoder, device, suite.batch_size)
        cells = []
        for task_name, dataset in pairs:
            task = tasks[task_name]
            if (task_name, dataset) not in data_cache:
                n_samples = req.n_samples or suite.samples_for(task_name)
                data_cache[(task_name, dataset)] = shards.rank0_first(
                    lambda task=task, dataset=dataset, n=n_samples: task.load(suite, dataset, n, req.seed))
            data = data_cache[(task_name, dataset)]
            for attack, eps in budgets:
                backend = req.backend if attack != "none" else "native"
                protocol = cell_protocol(task, attack, backend, spec)
                cfg = cell_config(req, suite.name, encoder.meta, task, dataset, protocol, eps,
                                  len(task.sample_ids(data)), backend, defence_identity(encoder), data)
                cells.append(Cell(cfg, task, data, encoder, protocol))
        if shards.main:
            _print_plan(store, cells, encoder, device, batch_size, req, shards.world)
        if req.plan_only:
            continue
        for cell in cells:
            cell_batch = req.batch_size or suite.task_batch_size.get(cell.cfg.task, batch_size)
            cell.rows = _compute_cell(store, cell, spec, device, cell_batch, req, shards)
            results.append(cell.rows)
    if not results:
        return pd.DataFrame()
    rows = pd.concat(results, ignore_index=True)
    if shards.main:  # cross-cell checks (accuracy never rises with ε), stored as small derived runs
        derived = [store.write_derived(d.run_id, d.card, d.rows) for d in eps_sweeps(rows, git_sha(), now_iso())]
        rows = pd.concat([rows, *derived], ignore_index=True)
    return rows


def load_if_trained(suite: Suite, spec, device, progress: bool = False, seed: int = 0):
    """The encoder if loading it trains nothing (cached, downloaded or never trained); None if it needs training."""
    try:
        return load_encoder(suite, spec, device, seed, allow_training=False, progress=progress)
    except NeedsTraining:
        return None


def load_encoder(suite: Suite, spec, device, seed: int, *, allow_training: bool = True, progress: bool = True):
    """The encoder ``spec`` names on ``device``; under its test-time defence if it has one (``seed``: the run seed a
    randomised defence keys its draws by). A defence that reads the original CLIP gets it when the encoder is a
    fine-tuned one (for ``clip`` itself, the original is the encoder)."""
    base = suite.load_encoder(replace(spec, defence=None), str(device), allow_training=allow_training,
                              progress=progress)
    if spec.defence is None:
        return base
    original = None
    if spec.defence.reads_original and spec.robust:
        clip = replace(ENCODERS.get("clip"), base=spec.base)
        original = suite.load_encoder(clip, str(device), allow_training=False, progress=progress)
    return DefendedEncoder(base, spec.defence, seed, original)


def _print_plan(store: Store, cells: list[Cell], encoder, device, batch_size: int, req: RunRequest,
                world: int) -> None:
    """The cost of the cells still to compute, before computing them: passes, FLOPs and a short timing here."""
    costs = []
    for cell in cells:
        run = store.existing(cell.cfg)
        if run is not None and run.complete and not req.force:
            continue
        done = 0 if req.force or run is None else len(run.done_ids())
        todo = len(cell.task.sample_ids(cell.data)) - done
        costs.append(dev.cell_cost(cell.task, cell.data, cell.protocol, todo))
    if not costs or not (req.progress or req.plan_only):
        return
    flops = dev.flops_per_image(encoder, device)
    probe = min(batch_size, 8)
    seconds = dev.seconds_per_pass(encoder, device, probe, req.precision)
    defence = (f"{encoder.defence.label}: {encoder.cost().text()}" if isinstance(encoder, DefendedEncoder) else "")
    print(dev.describe_plan(encoder.meta.name, device, costs, flops, seconds, probe, world, defence), file=sys.stderr)


def _compute_cell(store: Store, cell: Cell, spec, device, batch_size: int, req: RunRequest,
                  shards: Shards) -> pd.DataFrame:
    """One cell, resumable. Under torchrun rank 0 holds the run's lock, prepares the run, and merges the per-sample
    files of every rank into the rows; each rank computes its share of the samples still missing."""
    run = store.run(cell.cfg)
    with run.locked() if shards.main else contextlib.nullcontext():
        ids = cell.task.sample_ids(cell.data)
        status = shards.broadcast(_prepare(run, req, ids) if shards.main else None)
        if status == "complete":
            return run.rows()
        done = run.done_ids()
        todo = shards.mine([i for i, sid in enumerate(ids) if sid not in done])
        card = _running_card(cell, run.card(), device, batch_size, shards)
        if shards.main:
            run.write_card(card)
        ctx = EvalContext(cell.protocol, cell.cfg.eps, cell.cfg.seed, device,
                          dev.attack_precision(cell.cfg.precision), cell.cfg.backend)
        _compute_samples(cell, run, todo, ctx, batch_size, card, req, shards, already=len(done))
        shards.barrier()  # every rank's batch files are written
        if not shards.main:
            shards.barrier()  # rank 0 has merged them
            return run.rows()
        finished = run.finish(_metric_rows(cell, spec, run, ids, ctx, card, req), card)
        shards.barrier()
        return finished


def _running_card(cell: Cell, stored: dict, device, batch_size: int, shards: Shards) -> dict:
    """The card of a cell being computed: its configuration, encoder, protocol and provenance; compute time and
    start carry over from an interrupted run of the same cell."""
    return {
        "run_id": cell.cfg.run_id, "status": "running", "config": cell.cfg.as_dict(),
        "encoder": cell.encoder.meta.as_dict(), "protocol": cell.protocol.as_dict(),
        "protocol_summary": describe(cell.protocol, cell.cfg.backend, n_classes(cell.data)), **defence_card(cell),
        "git_sha": git_sha(), "versions": versions(),
        "device": str(device), "threads": torch.get_num_threads(), "started_at": stored.get("started_at") or now_iso(),
        "compute_seconds": float(stored.get("compute_seconds", 0.0)), "batch_size": batch_size,
        "processes": shards.world,
    }


def _compute_samples(cell: Cell, run, todo: list[int], ctx: EvalContext, batch_size: int, card: dict,
                     req: RunRequest, shards: Shards, already: int) -> None:
    """This process's samples, batch by batch; each finished batch is stored (and the card's compute time
    updated) before the next starts, so a kill loses at most one batch."""
    total = len(cell.task.sample_ids(cell.data))
    label = f"{cell.cfg.encoder} {cell.cfg.dataset} {cell.cfg.attack} {cell.cfg.eps_label}"
    bar = tqdm(total=total, initial=already, desc=label, unit="img", leave=False,
               disable=not (req.progress and shards.main), dynamic_ncols=True)
    seconds_before, t0 = card["compute_seconds"], time.time()
    with dev.precision_scope(cell.encoder, device=ctx.device, precision=cell.cfg.precision):
        for start in range(0, len(todo), batch_size):
            rows = todo[start:start + batch_size]
            run.write_batch(cell.task.evaluate(cell.encoder, cell.data, rows, ctx))
            card["compute_seconds"] = seconds_before + time.time() - t0
            if shards.main:
                run.write_card(card)
            bar.update(len(rows) * shards.world)
    bar.close()


def _metric_rows(cell: Cell, spec, run, ids: list[str], ctx: EvalContext, card: dict, req: RunRequest) -> list[dict]:
    """Rank 0, once every sample is stored: the task's metrics, the sanity checks, the gallery, as result rows."""
    records = run.records()
    if len(records) != len(ids):
        raise BenchError(f"run {cell.cfg.run_id} has {len(records)} of {len(ids)} samples after computing; "
                         "its directory may have been modified concurrently")
    metrics = cell.task.metrics(records, attacked=bool(cell.protocol.stages))
    metrics += _sanity_checks(cell, records, ctx, card)
    _gallery(cell, records, ctx, req.out)
    return [_row(cell, spec, m, card) for m in metrics]


def _sanity_checks(cell: Cell, records: pd.DataFrame, ctx: EvalContext, card: dict) -> list[Metric]:
    """Checks against gradient masking for an attacked cell (attacks/sanity.py), where the task offers them:
    details go into the card under "sanity", a ``sanity:<check>`` row (1 passed, 0 failed) beside the metrics."""
    if not cell.protocol.stages or not hasattr(cell.task, "sanity_checks"):
        return []
    t0, config = time.time(), SanityConfig()
    checks = cell.task.sanity_checks(cell.encoder, cell.data, records, ctx, config)
    card.update(sanity=[c.as_dict() for c in checks], sanity_config=config.as_dict(),
                sanity_seconds=round(time.time() - t0, 2))
    return [Metric(c.metric, float(c.passed)) for c in checks]


def _gallery(cell: Cell, records: pd.DataFrame, ctx: EvalContext, out: Path) -> None:
    """Adversarial examples of an attacked cell as PNGs under ``<out>/gallery/<run_id>/``, where the task draws them
    (the report's HTML page shows every PNG there)."""
    if cell.protocol.stages and hasattr(cell.task, "write_gallery"):
        cell.task.write_gallery(cell.encoder, cell.data, records, ctx, out / "gallery" / cell.cfg.run_id)


def _prepare(run, req: RunRequest, ids: list[str]) -> str:
    """Rank 0, under the run's lock: "complete" when the stored result stands, else clear it if forced. Refused
    rather than mixed in: a stored run holding other samples than this request selects (the same dataset read from
    another source), or one computed by code or packages other than these (see ``reuse_problem``)."""
    if req.force:
        for path in run.samples_dir.glob("*.csv"):
            path.unlink()
        return "compute"
    stray = run.done_ids() - set(ids)
    if stray:
        raise BenchError(f"run {run.cfg.run_id} holds {len(stray)} sample(s) this request does not select (e.g. "
                         f"{sorted(stray)[0]}): the dataset was read from another source; --force recomputes it")
    if run.done_ids():
        problem = reuse_problem(run.card())
        if problem:
            raise BenchError(f"stored cell {run.cfg.run_id} {problem}; --force recomputes it")
    return "complete" if run.complete else "compute"


def reuse_problem(card: dict) -> str | None:
    """Why a stored cell (complete, or partial and about to be resumed) must not be reused by this process: it was
    computed by uncommitted code other than this checkout's, or with other package versions. None if it may."""
    stored_code, code = str(card.get("git_sha", "")), git_sha()
    if is_dirty(stored_code) and stored_code != code:
        return f"was computed by uncommitted code ({stored_code}) that is not this checkout's ({code})"
    stored = card.get("versions") or {}
    differ = [f"{k} {stored.get(k)} (now {v})" for k, v in versions().items() if k in stored and stored[k] != v]
    if differ:
        return f"was computed with {', '.join(differ)}"
    return None


def _row(cell: Cell, spec, metric, card: dict) -> dict:
    cfg, protocol = cell.cfg, cell.protocol
    return {
        "run_id": cfg.run_id, "suite": cfg.suite, "encoder": cfg.encoder, "method": spec.method,
        "train_eps": spec.train_eps_label, "task": cfg.task, "dataset": cfg.dataset, "attack": cfg.attack,
        "protocol": describe(protocol, cfg.backend, n_classes(cell.data)), "eps": cfg.eps, "eps_str": cfg.eps_label,
        "steps": protocol.iterations, "restarts": protocol.restarts, "precision": cfg.precision,
        "n_samples": cfg.n_samples, "metric": metric.name, "value": metric.value, "ci_low": metric.ci_low,
        "ci_high": metric.ci_high, "seed": cfg.seed, "git_sha": card["git_sha"],
        "versions": ";".join(f"{k}={v}" for k, v in card["versions"].items()),
        "started_at": card["started_at"], "seconds": round(card["compute_seconds"], 2),
        "encoder_sha256": cfg.encoder_sha256 or "", "encoder_source": cell.encoder.meta.source,
        "method_label": method_label(spec.method), "engine_version": cfg.engine_version,
        **defence_columns(cell.encoder),
    }


def n_classes(data) -> int | None:
    """The classes of a classification dataset (None for other tasks' data)."""
    return len(data.class_prompts) if hasattr(data, "class_prompts") else None


def defence_columns(encoder) -> dict:
    """What rows say of the encoder's test-time defence: its spelling and label, and what one inference costs."""
    if not isinstance(encoder, DefendedEncoder):
        return {"defence": "", "inference_cost": ""}
    return {"defence": f"{encoder.defence.label} ({encoder.defence.spelling})",
            "inference_cost": encoder.cost().text()}


def defence_card(cell: Cell) -> dict:
    """A defended cell's card: the defence, its settings, citation, BPDA and inference cost."""
    if not isinstance(cell.encoder, DefendedEncoder):
        return {}
    d = cell.encoder.defence
    return {"defence": {**cell.encoder.identity(), "label": d.label, "spelling": d.spelling, "citation": d.citation,
                        "randomised": d.randomised, "bpda": d.bpda, "inference_cost": cell.encoder.cost().text(),
                        "undefended_base": cell.encoder.base.meta.as_dict()}}
