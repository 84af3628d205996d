"""A sweep's grid: the request expanded into the runner's own cells (same identity, so same run ids), with what the
store already holds of each and what the rest costs.

The packing unit is one encoder on one dataset with every budget of the request (the clean cell and each ε): that
is exactly what one ``bench run --encoder E --task T --dataset D --eps …`` computes, so a job runs its units through
the normal runner, and the runner's cross-cell check (accuracy never rises with ε, stored per encoder and dataset)
comes out identical to a single ``bench run`` of the whole grid.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import torch

from bench import device as dev
from bench.encoders.registry import ENCODERS
from bench.encoders.resolve import resolve_encoder, spec_key
from bench.runner import RunRequest, cell_config, cell_protocol, defence_identity, load_if_trained, plan
from bench.store import Store
from tasks.registry import TASKS


@dataclass(frozen=True)
class GridCell:
    task: str
    dataset: str
    attack: str
    eps_label: str
    run_id: str | None  # None while the encoder is untrained: its checkpoint's hash is part of the run id
    samples: int
    done: int  # samples already stored
    complete: bool
    cost: float  # FLOPs still to spend (upper bound: every sample stays robust to the end)

    @property
    def label(self) -> str:
        return f"{self.task}/{self.dataset} {self.attack} {self.eps_label}"


@dataclass(frozen=True)
class Unit:
    """One encoder on one dataset, every budget: what a job hands to one ``runner.run``."""

    encoder: str  # the --encoder value as typed (a registered name, hf-hub:…, NAME=SOURCE)
    encoder_name: str  # its name in the store's run ids and rows
    task: str
    dataset: str
    cells: tuple[GridCell, ...]

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.cells if not c.complete)

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.cells)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.encoder, self.task, self.dataset)


@dataclass(frozen=True)
class Grid:
    request: RunRequest
    units: tuple[Unit, ...]
    untrained: tuple[str, ...]  # encoders (as typed) whose checkpoint must be trained before they are evaluated

    @property
    def cells(self) -> list[tuple[Unit, GridCell]]:
        return [(u, c) for u in self.units for c in u.cells]


def expand(req: RunRequest) -> Grid:
    """Every cell of ``req`` with its stored progress and remaining cost. Loads each encoder once (on the CPU, without
    training: an untrained one is noted and costed with its base's FLOPs) and each dataset's sample list."""
    suite, specs, pairs, budgets = plan(req)
    store = Store(req.out)
    tasks = {t: TASKS.get(t)() for t, _ in pairs}
    data = {(t, d): tasks[t].load(suite, d, req.n_samples or suite.samples_for(t), req.seed) for t, d in pairs}
    units, untrained = [], []
    for value, spec in zip(_typed_encoders(req), specs):
        encoder = _load_untrained_as_none(suite, spec, req.seed)
        if encoder is None:
            untrained.append(value)
        flops = dev.flops_per_image(encoder or suite.load_encoder(ENCODERS.get("clip"), "cpu", progress=False),
                                    _cpu())
        for task_name, dataset in pairs:
            task, samples = tasks[task_name], data[(task_name, dataset)]
            cells = tuple(_grid_cell(req, suite, store, spec, encoder, task, samples, dataset, attack, eps, flops)
                          for attack, eps in budgets)
            units.append(Unit(value, spec.full_name, task_name, dataset, cells))
    return Grid(req, tuple(units), tuple(untrained))


def _typed_encoders(req: RunRequest) -> list[str]:
    """The --encoder values in the order ``plan`` resolves them, duplicates (an alias too) dropped as it drops them,
    so that each lines up with its resolved spec."""
    seen, out = set(), []
    for value in req.encoders:
        key = spec_key(resolve_encoder(value, req.base))
        if key not in seen:
            seen.add(key)
            out.append(str(value))
    return out


def _cpu():
    return torch.device("cpu")


def _load_untrained_as_none(suite, spec, seed: int):
    encoder = load_if_trained(suite, spec, "cpu", seed=seed)
    if encoder is None:
        print(f"{spec.name}: not trained yet; the sweep trains it in a job of its own first", file=sys.stderr)
    return encoder


def _grid_cell(req, suite, store: Store, spec, encoder, task, data, dataset: str, attack: str, eps,
               flops) -> GridCell:
    backend = req.backend if attack != "none" else "native"
    protocol = cell_protocol(task, attack, backend, spec)
    n = len(task.sample_ids(data))
    run_id, done, complete = None, 0, False
    if encoder is not None:
        cfg = cell_config(req, suite.name, encoder.meta, task, dataset, protocol, eps, n, backend,
                          defence_identity(encoder), data)
        run_id, run = cfg.run_id, store.existing(cfg)
        if run is not None:
            complete = run.complete and not req.force
            done = n if complete else (0 if req.force else len(run.done_ids()))
    cost = 0.0 if complete else dev.cell_cost(task, data, protocol, n - done).flops(*flops)
    return GridCell(task.name, dataset, protocol.name, eps.label, run_id, n, done, complete, cost)


def only(grid: Grid, keys: set[tuple[str, str, str]]) -> Grid:
    """The grid restricted to the units ``keys`` names."""
    return replace(grid, units=tuple(u for u in grid.units if u.key in keys))
