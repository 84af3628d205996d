"""The sweep's record, ``<out>/sweeps/<sweep_id>.json``: the request, and every submission — which job got which
units and cells, where its submitit folder is, when. ``bench status`` and ``--resubmit-failed`` read it. It is
written only by the submitting process, atomically (temporary file + rename), so a reader never sees half a file.

The sweep id is a hash of the selection (not of the launcher or the job count): running the same ``bench sweep``
again adds a submission to the same record instead of starting a new sweep.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from bench.core.checkpoints import atomic_write_bytes
from bench.core.config import config_hash
from bench.core.errors import BenchError
from bench.core.provenance import now_iso
from bench.runner import RunRequest
from bench.store import writing

SELECTION = ("suite", "encoders", "attack", "eps", "tasks", "datasets", "n_samples", "seed", "precision", "backend",
             "data_root", "encoder_weights", "base")


def selection(req: RunRequest) -> dict:
    """What the sweep measures (JSON-ready)."""
    values = asdict(req)
    out = {k: values[k] for k in SELECTION}
    out["encoders"] = [str(e) for e in req.encoders]
    out["eps"] = [e.label for e in req.eps]
    out["data_root"] = str(req.data_root) if req.data_root else None
    return out


def sweep_id(req: RunRequest) -> str:
    return f"sweep-{config_hash(selection(req))}"


def sweeps_dir(out: Path) -> Path:
    return Path(out) / "sweeps"


def record_path(out: Path, sid: str) -> Path:
    return sweeps_dir(out) / f"{sid}.json"


def load(out: Path, sid: str | None = None) -> dict:
    """The record of sweep ``sid``, or of the latest sweep under ``out``."""
    if sid is None:
        found = sorted(sweeps_dir(out).glob("sweep-*.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise BenchError(f"no sweep recorded under {sweeps_dir(out)}; start one with `bench sweep --out {out}`")
        path = found[-1]
    else:
        path = record_path(out, sid)
        if not path.is_file():
            known = ", ".join(p.stem for p in sorted(sweeps_dir(out).glob("sweep-*.json"))) or "none"
            raise BenchError(f"no sweep {sid!r} under {sweeps_dir(out)} (known: {known})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"corrupt sweep record {path}: {exc}") from exc


def new_record(req: RunRequest, launcher: str) -> dict:
    return {"sweep_id": sweep_id(req), "created_at": now_iso(), "launcher": launcher, "out": str(req.out),
            "request": selection(req), "submissions": [], "cells": {}}


def load_or_new(req: RunRequest, launcher: str) -> dict:
    path = record_path(req.out, sweep_id(req))
    return load(req.out, sweep_id(req)) if path.is_file() else new_record(req, launcher)


def add_job(record: dict, job, kind: str, units: list, cells: list[dict], cost: float,
            depends_on: str | None = None) -> dict:
    """Note a submitted job and point each of its cells at it (a resubmitted cell points at its newest job)."""
    entry = {"job_id": str(job.job_id), "kind": kind, "folder": str(job.paths.folder), "submitted_at": now_iso(),
             "units": [list(u) for u in units], "cost": cost, "depends_on": depends_on}
    record["submissions"].append(entry)
    for cell in cells:
        record["cells"][cell["key"]] = {**cell, "job_id": entry["job_id"], "submitted_at": entry["submitted_at"]}
    return entry


def save(record: dict, out: Path) -> Path:
    path = record_path(out, record["sweep_id"])
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(record, indent=2, default=str) + "\n").encode())
    return path


def cell_key(encoder: str, cell) -> str:
    """A cell's name in the record, stable before and after its encoder is trained (the run id is not)."""
    return f"{encoder} {cell.task}/{cell.dataset} {cell.attack} {cell.eps_label}"
