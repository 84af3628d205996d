"""``bench status``: what the store holds of a sweep, cell by cell, and how far the sweep is.

A cell is
- ``done``     its run is complete in the store;
- ``running``  some process holds its run's lock (the store's own per-run lock: exact on any launcher), with the
               samples stored so far;
- ``failed``   not done, and the job it was last given to ended without finishing (an error, a kill, a Slurm
               failure or cancellation), with the last line of that job's stderr;
- ``missing``  none of these: queued in a live job, or never submitted.
The ETA extrapolates from the sweep so far: seconds since it was first submitted per unit of cost finished, times
the cost still to do (by cells when no cost finished yet).
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from bench.core.config import safe_component
from bench.device import duration_text
from bench.store import read_samples
from bench.sweep import record as records
from bench.sweep.launch import last_error_line

# PREEMPTED: a submitit job requeues itself on preemption; UNKNOWN: not in sacct yet (just submitted)
SLURM_ALIVE = {"PENDING", "REQUEUED", "CONFIGURING", "RUNNING", "COMPLETING", "RESIZING", "SUSPENDED", "UNKNOWN",
               "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED", "READY"}


@dataclass
class CellStatus:
    key: str
    state: str  # done, running, failed, missing
    progress: str = ""  # running: samples stored / samples
    error: str = ""  # failed: the last error line of its job
    job_id: str = ""


def job_state(launcher: str, entry: dict) -> str:
    """``success``, ``failed`` or ``alive`` (running or queued) for a recorded job."""
    return job_states(launcher, [entry])[entry["job_id"]]


def job_states(launcher: str, entries: list[dict]) -> dict[str, str]:
    """``success``, ``failed`` or ``alive`` for each recorded job: from submitit's result file when the job wrote
    one, else from Slurm (one ``sacct`` for all) or, locally, from whether its process is alive."""
    from submitit.core.utils import JobPaths  # deferred: submitit, for bench sweep and bench status only

    states, unfinished = {}, []
    for entry in entries:
        result = JobPaths(entry["folder"], entry["job_id"], 0).result_pickle
        if result.is_file():
            states[entry["job_id"]] = _outcome(result)
        elif launcher == "slurm":
            unfinished.append(entry["job_id"])
        else:
            alive = entry["job_id"].isdigit() and _process_alive(int(entry["job_id"]))
            states[entry["job_id"]] = "alive" if alive else "failed"
    if unfinished:
        for job_id, state in slurm_states(unfinished).items():
            states[job_id] = "alive" if state.split()[0] in SLURM_ALIVE else "failed"
    return states


def _outcome(result: Path) -> str:
    try:
        with result.open("rb") as fh:
            outcome = pickle.load(fh)[0]
    except (OSError, pickle.UnpicklingError, EOFError, IndexError, AttributeError, ImportError):
        return "failed"
    return "success" if outcome == "success" else "failed"


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm's state of each job, from one ``sacct`` call now (submitit's watcher would otherwise answer from a
    cache it refreshes only now and then)."""
    import submitit  # deferred: submitit, for bench sweep and bench status only

    watcher = submitit.SlurmJob.watcher
    for job_id in job_ids:
        watcher.register_job(str(job_id))
    watcher.update()
    return {j: watcher.get_state(str(j), mode="cache") for j in job_ids}


def _process_alive(pid: int) -> bool:
    """A local job's controller process is running (a zombie left to its parent counts as ended)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _run_dir(out: Path, cell: dict) -> Path | None:
    """The cell's run directory: by run id when the record knows it, else (an encoder trained after submission) the
    newest run with the cell's readable name and configuration."""
    runs = Path(out) / "runs"
    if cell.get("run_id"):
        return runs / cell["run_id"]
    prefix = safe_component(f"{cell['encoder_name']}-{cell['task']}-{cell['dataset']}-{cell['attack']}-"
                            f"{cell['eps_label'].replace('/', '_')}") + "-"
    found = []
    for d in runs.glob(f"{prefix}*"):
        try:
            config = json.loads((d / "card.json").read_text()).get("config", {})
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if config.get("n_samples") == cell["samples"] and config.get("seed") == cell["seed"]:
            found.append(d)
    return max(found, key=lambda d: d.stat().st_mtime) if found else None


def _is_complete(run_dir: Path) -> bool:
    try:
        card = json.loads((run_dir / "card.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return (run_dir / "rows.csv").is_file() and card.get("status") == "complete"


def _is_locked(run_dir: Path) -> bool:
    lock = FileLock(str(run_dir / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def cell_statuses(record: dict) -> list[CellStatus]:
    out, seed = Path(record["out"]), record["request"]["seed"]
    jobs = {e["job_id"]: e for e in record["submissions"]}
    states = job_states(record["launcher"], list(jobs.values())) if jobs else {}
    result = []
    for key, cell in sorted(record["cells"].items()):
        run_dir = _run_dir(out, {**cell, "seed": seed})
        status = CellStatus(key, "missing", job_id=cell.get("job_id", ""))
        if run_dir is not None and _is_complete(run_dir):
            status.state = "done"
        elif run_dir is not None and (run_dir / ".lock").exists() and _is_locked(run_dir):
            status.state = "running"
            status.progress = f"{len(read_samples(run_dir))}/{cell['samples']}"
        elif status.job_id in jobs and states[status.job_id] != "alive":
            entry = jobs[status.job_id]
            from submitit.core.utils import JobPaths  # deferred: submitit, for the sweep commands only

            status.state = "failed"
            status.error = last_error_line(JobPaths(entry["folder"], entry["job_id"], 0).stderr) or \
                f"job {status.job_id} ended without finishing this cell"
        result.append(status)
    return result


def eta_seconds(record: dict, statuses: list[CellStatus]) -> float | None:
    """Seconds to go, from the rate of the sweep so far (None until something finished)."""
    cost = {k: float(c.get("cost") or 0.0) for k, c in record["cells"].items()}
    done = [s.key for s in statuses if s.state == "done"]
    todo = [s.key for s in statuses if s.state != "done"]
    if not done or not todo:
        return 0.0 if not todo else None
    elapsed = (datetime.now(UTC) - datetime.fromisoformat(record["created_at"])).total_seconds()
    done_cost, todo_cost = sum(cost[k] for k in done), sum(cost[k] for k in todo)
    if done_cost > 0 and todo_cost > 0:
        return elapsed * todo_cost / done_cost
    return elapsed * len(todo) / len(done)


def describe(record: dict, statuses: list[CellStatus]) -> str:
    lines = [f"{'cell':<48} {'state':<8} {'job':<10} detail"]
    for s in statuses:
        detail = s.progress or s.error
        lines.append(f"{s.key:<48} {s.state:<8} {s.job_id:<10} {detail}".rstrip())
    counts = {state: sum(1 for s in statuses if s.state == state) for state in ("done", "running", "failed", "missing")}
    eta = eta_seconds(record, statuses)
    eta_text = "unknown until a cell finishes" if eta is None else duration_text(eta)
    lines.append(f"{record['sweep_id']}: {counts['done']} / {len(statuses)} cells done, {counts['running']} running, "
                 f"{counts['failed']} failed, {counts['missing']} missing; ETA {eta_text}")
    if counts["failed"]:
        lines.append("resubmit the failed cells: the same `bench sweep` command with --resubmit-failed")
    return "\n".join(lines)


def status(out: Path, sid: str | None = None) -> tuple[dict, list[CellStatus]]:
    record = records.load(out, sid)
    record["out"] = str(out)  # where the reader finds the store (the record may hold another spelling of it)
    return record, cell_statuses(record)
