"""Submission through submitit: the executor for the launcher, training jobs first, evaluation jobs after them.

- ``slurm``: ``submitit.AutoExecutor(cluster="slurm")``; an evaluation job that needs a trained encoder carries
  ``--dependency=afterok:<training job>`` and Slurm holds it until the training succeeded.
- ``local``: ``submitit.LocalExecutor`` (through ``AutoExecutor(cluster="local")``), processes on this machine. It has
  no dependencies, so the submitting process waits for the training jobs before submitting the evaluation jobs
  (and then for those, printing what finished).
- ``debug`` (tests): submitit's in-process executor, with the local launcher's order.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError

LAUNCHERS = ("local", "slurm")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default is 2 minutes: a local sweep runs until it is done


@dataclass(frozen=True)
class LaunchOptions:
    launcher: str = "local"
    jobs: int = 1
    gpus_per_job: int = 1  # processes per evaluation job (torchrun sharding when > 1); GPUs asked of Slurm
    partition: str | None = None
    account: str | None = None
    time_min: int | None = None
    constraint: str | None = None
    mem_gb: int | None = None
    cpus_per_task: int | None = None

    def check(self) -> None:
        if self.launcher not in (*LAUNCHERS, "debug"):
            raise BenchError(f"unknown --launcher {self.launcher!r} (known: {', '.join(LAUNCHERS)})")
        if self.jobs < 1:
            raise BenchError(f"--jobs must be at least 1, got {self.jobs}")
        if self.gpus_per_job < 0:
            raise BenchError(f"--gpus-per-job must not be negative, got {self.gpus_per_job}")
        for name in ("time_min", "mem_gb", "cpus_per_task"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BenchError(f"--{name.split('_')[0]} must be at least 1, got {value}")

    @property
    def nproc(self) -> int:
        return max(1, self.gpus_per_job)


def submitit_module():
    try:
        import submitit  # deferred: submitit, for bench sweep and status only; missing, it is one line
    except ImportError as exc:
        raise BenchError("bench sweep needs submitit: pip install 'submitit>=1.5'") from exc
    return submitit


def make_executor(opts: LaunchOptions, folder: Path, name: str):
    """The submitit executor for ``opts.launcher``, writing job files under ``folder/<job id>/``."""
    submitit = submitit_module()
    try:
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=opts.launcher)
    except RuntimeError as exc:  # no srun here: not a Slurm login node
        raise BenchError(f"--launcher {opts.launcher}: {exc}") from exc
    params: dict = {"name": name, "timeout_min": opts.time_min or LOCAL_TIMEOUT_MIN}
    if opts.launcher == "slurm":
        params.update(timeout_min=opts.time_min or 240, gpus_per_node=opts.gpus_per_job, tasks_per_node=1,
                      nodes=1, slurm_partition=opts.partition, slurm_account=opts.account,
                      slurm_constraint=opts.constraint, mem_gb=opts.mem_gb, cpus_per_task=opts.cpus_per_task)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def submit(executor, opts: LaunchOptions, job, depends_on: list[str], gpus: int | None = None):
    """Submit ``job``; on Slurm it starts only after every job in ``depends_on`` succeeded."""
    if opts.launcher == "slurm":
        extra = {"dependency": "afterok:" + ":".join(depends_on)} if depends_on else {}
        executor.update_parameters(slurm_additional_parameters=extra,
                                   gpus_per_node=opts.gpus_per_job if gpus is None else gpus)
    return executor.submit(job)


def wait_for(job, what: str) -> None:
    """Block until ``job`` ends (local launcher); a failure is a one-line error naming its log."""
    exc = job.exception()
    if exc is not None:
        last = last_error_line(job.paths.stderr) or str(exc).strip().splitlines()[-1]
        raise BenchError(f"{what} (job {job.job_id}) failed: {last}; log: {job.paths.stderr}")


def last_error_line(path: Path) -> str:
    """The last line of a job's stderr that is not submitit's own logging."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip() and not line.startswith("submitit ")]
    return lines[-1] if lines else ""


def report_local(jobs: list) -> int:
    """Wait for the local evaluation jobs; how many failed."""
    failed = 0
    for job in jobs:
        if job.exception() is not None:
            failed += 1
            print(f"job {job.job_id} failed: {last_error_line(job.paths.stderr)} (log: {job.paths.stderr})",
                  file=sys.stderr)
        else:
            print(f"job {job.job_id} done", file=sys.stderr)
    return failed
