"""The ``bench sweep`` and ``bench status`` subcommands: their arguments and glue."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.core.errors import BenchError
from bench.sweep.launch import LaunchOptions, submitit_module
from bench.sweep.status import describe, status


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """Besides the selection flags of ``bench run`` (added by the CLI): where and how the jobs run."""
    g = p.add_argument_group("sweep")
    g.add_argument("--launcher", default="local", help="local (processes on this machine) or slurm (default local)")
    g.add_argument("--jobs", type=int, default=1, metavar="N", help="evaluation jobs to pack the cells into")
    g.add_argument("--gpus-per-job", type=int, default=1, metavar="K",
                   help="GPUs (processes) per job; K > 1 shards each cell's samples over them with torchrun")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--account", help="Slurm account")
    g.add_argument("--time", type=int, metavar="MIN", help="time limit per job in minutes (Slurm default 240); a job "
                   "that reaches it is requeued and resumes")
    g.add_argument("--constraint", help="Slurm node constraint (e.g. a100)")
    g.add_argument("--mem", type=int, metavar="GB", help="memory per job in GB")
    g.add_argument("--cpus-per-task", type=int, metavar="N", help="CPUs per job (Slurm)")
    g.add_argument("--resubmit-failed", action="store_true",
                   help="resubmit only the cells whose job failed (read from the sweep's record)")


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("results"), help="results directory (default: results/)")
    p.add_argument("--sweep", metavar="ID", help="which sweep (default: the latest under --out/sweeps)")


def run_sweep(args, req) -> int:
    submitit_module()  # a one-line error, not an ImportError, when submitit is not installed
    # deferred: submitit (bench.sweep.job subclasses its Checkpointable), which `bench` does not need to start
    from bench.sweep.submit import sweep

    if args.nproc != 1:
        raise BenchError("bench sweep: use --gpus-per-job K (processes per job), not --nproc")
    opts = LaunchOptions(args.launcher, args.jobs, args.gpus_per_job, args.partition, args.account, args.time,
                         args.constraint, args.mem, args.cpus_per_task)
    record = sweep(req, opts, plan_only=args.plan, resubmit_failed=args.resubmit_failed)
    if args.plan:
        return 0
    print(f"{record['sweep_id']}: `bench status --out {req.out} --sweep {record['sweep_id']}` to watch it")
    failed = record.get("failed_jobs", 0)
    if failed:
        raise BenchError(f"{failed} job(s) failed; `bench status --out {req.out}` shows the cells and errors, and the "
                         "same command with --resubmit-failed resubmits them")
    return 0


def run_status(args) -> int:
    submitit_module()
    record, statuses = status(args.out, args.sweep)
    print(describe(record, statuses))
    return 0
