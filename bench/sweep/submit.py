"""``bench sweep``: expand, skip what is done (or already queued), pack by cost, train what is missing, submit."""

from __future__ import annotations

import sys
from dataclasses import replace

from bench.core.errors import BenchError
from bench.runner import RunRequest
from bench.sweep import grid as grids
from bench.sweep import launch
from bench.sweep import record as records
from bench.sweep.job import EvalJob, TrainJob
from bench.sweep.packing import describe_packing, pack
from bench.sweep.status import cell_statuses, job_states


def sweep(req: RunRequest, opts: launch.LaunchOptions, *, plan_only: bool = False, resubmit_failed: bool = False,
          wait: bool = True) -> dict:
    """Submit the cells of ``req`` not yet in the store; the sweep's record. With the local launcher and ``wait``,
    returns once every job ended (``record["failed_jobs"]`` counts the failures)."""
    opts.check()
    if req.force:
        raise BenchError("bench sweep skips the cells already stored and never recomputes them; delete their run "
                         "directories (or use `bench run --force`) to recompute")
    req = replace(req, plan_only=False, progress=False)
    record = records.load_or_new(req, opts.launcher)
    full = grids.expand(req)
    for unit, cell in full.cells:  # the whole grid, so that status counts done / total over all of it
        record["cells"].setdefault(records.cell_key(unit.encoder, cell), {**_cell_entry(unit, cell), "job_id": ""})
    grid = grids.only(full, _to_submit(full, record, resubmit_failed))
    todo = [u for u in grid.units if not u.complete]
    if not todo:
        print(f"{records.sweep_id(req)}: nothing to submit ({_why_nothing(resubmit_failed)})", file=sys.stderr)
        return record
    packs = pack(todo, opts.jobs)
    needs_training = [e for e in grid.untrained if any(u.encoder == e for u in todo)]
    print(describe_packing(packs) + "".join(f"\ntraining job: {e}" for e in needs_training), file=sys.stderr)
    if plan_only:
        return record
    return _submit(req, opts, record, packs, needs_training, wait)


def _to_submit(grid, record: dict, resubmit_failed: bool) -> set:
    """The units to submit: with --resubmit-failed those holding a failed cell; else every unit not done whose cells
    are not all in a live job already (rerunning the same command neither duplicates queued work nor skips lost)."""
    if resubmit_failed and not record["submissions"]:
        raise BenchError(f"no sweep {record['sweep_id']} recorded under {req_out(record)} to resubmit; run the same "
                         "command without --resubmit-failed")
    statuses = {s.key: s.state for s in cell_statuses(record)} if record["submissions"] else {}
    alive = {j for j, state in job_states(record["launcher"], record["submissions"]).items() if state == "alive"}
    keys = set()
    for unit in grid.units:
        todo = [records.cell_key(unit.encoder, c) for c in unit.cells if not c.complete]
        states = [statuses.get(k, "missing") for k in todo]
        if resubmit_failed:
            wanted = "failed" in states
        else:  # not done, and not sitting in a job that is still queued or running
            queued = [record["cells"].get(k, {}).get("job_id") in alive for k in todo]
            wanted = any(s in ("missing", "failed") for s in states) and not any(queued)
        if wanted:
            keys.add(unit.key)
    return keys


def req_out(record: dict) -> str:
    return f"{record['out']}/sweeps"


def _why_nothing(resubmit_failed: bool) -> str:
    return "no failed cells" if resubmit_failed else "every cell is stored or queued; `bench status` shows them"


def _submit(req: RunRequest, opts: launch.LaunchOptions, record: dict, packs, needs_training, wait: bool) -> dict:
    record["launcher"] = opts.launcher
    folder = records.sweeps_dir(req.out) / record["sweep_id"]
    executor = launch.make_executor(opts, folder, f"bench-{record['sweep_id']}")
    training = {}
    for encoder in needs_training:  # one job per encoder, however many evaluation jobs need it
        job = launch.submit(executor, opts, TrainJob(req, encoder), [], gpus=min(1, opts.gpus_per_job))
        records.add_job(record, job, "train", [], [], 0.0)["encoder"] = encoder
        records.save(record, req.out)
        print(f"training job {job.job_id}: {encoder}", file=sys.stderr)
        training[encoder] = job
    if opts.launcher != "slurm":  # no scheduler dependencies here: the training ends before evaluation starts
        for encoder, job in training.items():
            launch.wait_for(job, f"training {encoder}")
    jobs = []
    for p in packs:
        deps = sorted({str(training[u.encoder].job_id) for u in p.units if u.encoder in training})
        job = launch.submit(executor, opts, EvalJob(req, [u.key for u in p.units], opts.nproc),
                            deps if opts.launcher == "slurm" else [])
        cells = [_cell_entry(u, c) for u in p.units for c in u.cells if not c.complete]
        records.add_job(record, job, "eval", [u.key for u in p.units], cells, p.cost, ",".join(deps) or None)
        records.save(record, req.out)
        print(f"job {job.job_id}: {len(cells)} cell(s)" + (f", after {', '.join(deps)}" if deps else ""),
              file=sys.stderr)
        jobs.append(job)
    if opts.launcher != "slurm" and wait:
        record["failed_jobs"] = launch.report_local(jobs)
    return record


def _cell_entry(unit, cell) -> dict:
    return {"key": records.cell_key(unit.encoder, cell), "encoder": unit.encoder, "encoder_name": unit.encoder_name,
            "task": cell.task, "dataset": cell.dataset, "attack": cell.attack, "eps_label": cell.eps_label,
            "run_id": cell.run_id, "samples": cell.samples, "cost": cell.cost}
