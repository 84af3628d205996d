"""The Slurm path against a fake scheduler: ``sbatch``, ``sacct``, ``squeue``, ``scontrol`` and ``scancel`` on the
PATH record their arguments and answer what submitit expects. Checked: the sbatch scripts (partition, account,
GPUs, time, memory, constraint, the USR2 signal submitit requeues on, append-mode logs), the training dependency,
``bench status`` on queued jobs, and a preemption: USR2 mid-cell makes the job checkpoint and ``scontrol requeue``
itself, and the requeued job (run again as Slurm would) resumes from the stored batches to the same store as
``bench run``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from submitit.helpers import DelayedSubmission
from test_failure_runs import assert_same_results

from bench.cli import main
from bench.sweep import record as records
from bench.sweep.job import EvalJob
from bench.sweep.status import status

FAKE = {
    "sbatch": 'n=$(( $(cat "$FAKE_SLURM/next" 2>/dev/null || echo 1000) + 1 )); echo $n > "$FAKE_SLURM/next"\n'
              'echo "sbatch $*" >> "$FAKE_SLURM/calls"; echo "Submitted batch job $n"\n',
    "sacct": 'echo "sacct $*" >> "$FAKE_SLURM/calls"; echo "JobID|State|NodeList"\n'
             'while [ $# -gt 0 ]; do\n'
             '  if [ "$1" = -j ]; then echo "$2|${FAKE_STATE:-PENDING}|"; shift; fi; shift\n'
             'done\n',
    "squeue": 'echo "squeue $*" >> "$FAKE_SLURM/calls"\n',
    "srun": 'echo "srun $*" >> "$FAKE_SLURM/calls"\n',  # submitit looks for it to tell it is on a cluster
    "scontrol": 'echo "scontrol $*" >> "$FAKE_SLURM/calls"\n',
    "scancel": 'echo "scancel $*" >> "$FAKE_SLURM/calls"\n',
}
SLURM = ["--launcher", "slurm", "--partition", "gpu", "--account", "robust", "--time", "240", "--mem", "64",
         "--constraint", "a100"]
GRID = ["--attack", "apgd", "--eps", "2/255", "--eps", "4/255", "--n-samples", "8", "--batch-size", "2", "--seed", "0",
        "--no-progress"]


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    state = tmp_path / "fake-slurm"
    (state / "bin").mkdir(parents=True)
    for name, body in FAKE.items():
        script = state / "bin" / name
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{state / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    return state


def sbatch_script(record: dict, job_id: str) -> str:
    entry = next(e for e in record["submissions"] if e["job_id"] == job_id)
    return (Path(entry["folder"]) / f"{job_id}_submission.sh").read_text()


def test_sbatch_parameters_and_training_dependency(fake_slurm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "empty-cache"))  # fare4 is untrained here
    out = tmp_path / "out"
    args = ["sweep", "--encoder", "clip,fare4", "--dataset", "novel-colours", "--dataset", "novel-shapes", *GRID,
            *SLURM,
            "--jobs", "2", "--gpus-per-job", "2", "--out", str(out)]
    assert main(args) == 0
    record = records.load(out)
    train = [e for e in record["submissions"] if e["kind"] == "train"]
    evals = [e for e in record["submissions"] if e["kind"] == "eval"]
    assert [e["encoder"] for e in train] == ["fare4"] and len(evals) == 2
    assert (fake_slurm / "calls").read_text().count("sbatch ") == 3  # submitted, never run: a fake cluster

    for entry in [*train, *evals]:
        script = sbatch_script(record, entry["job_id"])
        for line in ("#SBATCH --partition=gpu", "#SBATCH --account=robust", "#SBATCH --time=240",
                     "#SBATCH --mem=64GB", "#SBATCH --constraint=a100", "#SBATCH --signal=USR2@90",
                     "#SBATCH --open-mode=append", "#SBATCH --ntasks-per-node=1"):
            assert line in script, (line, script)
        assert "submitit.core._submit" in script
    assert "#SBATCH --gpus-per-node=1" in sbatch_script(record, train[0]["job_id"])
    for entry in evals:
        script = sbatch_script(record, entry["job_id"])
        assert "#SBATCH --gpus-per-node=2" in script
        needs_fare4 = any(u[0] == "fare4" for u in entry["units"])
        assert (f"#SBATCH --dependency=afterok:{train[0]['job_id']}" in script) == needs_fare4
        if not needs_fare4:
            assert "--dependency" not in script
    assert any(any(u[0] == "fare4" for u in e["units"]) for e in evals)

    # before anything ran: every cell missing (queued), none done
    _, statuses = status(out)
    assert len(statuses) == 2 * 2 * 3 and {s.state for s in statuses} == {"missing"}
    # the same command again submits nothing: every cell sits in a queued job
    capsys.readouterr()
    assert main(args) == 0
    assert (fake_slurm / "calls").read_text().count("sbatch ") == 3
    # the scheduler reports the jobs failed (cancelled): status says so, --resubmit-failed submits them again
    monkeypatch.setenv("FAKE_STATE", "CANCELLED")
    _, statuses = status(out)
    assert {s.state for s in statuses} == {"failed"}
    assert main([*args, "--resubmit-failed"]) == 0
    assert (fake_slurm / "calls").read_text().count("sbatch ") == 6  # training again (still missing), two evals


def _slurm_env(job_id: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "SUBMITIT_EXECUTOR": "slurm",
            "SLURM_JOB_ID": job_id, "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
            "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "node1"}


@pytest.mark.slow
def test_preempted_job_requeues_and_resumes(fake_slurm, tmp_path):
    """What Slurm does on preemption, step by step: USR2 to the job, submitit calls ``EvalJob.checkpoint()`` and
    ``scontrol requeue``; Slurm later starts the same job again, which finds the finished batches."""
    ref, out = tmp_path / "ref", tmp_path / "out"
    grid = ["--encoder", "clip", "--dataset", "novel-colours", *GRID]
    assert main(["run", *grid, "--out", str(ref)]) == 0
    assert main(["sweep", *grid, *SLURM, "--gpus-per-job", "1", "--out", str(out)]) == 0
    (entry,) = records.load(out)["submissions"]
    folder = str(Path(entry["folder"]).parent / "%j")
    command = [sys.executable, "-u", "-m", "submitit.core._submit", folder]

    job = subprocess.Popen(command, env=_slurm_env(entry["job_id"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    deadline = time.monotonic() + 180
    while not list(out.glob("runs/*-apgd-*/samples/*.csv")):
        assert job.poll() is None and time.monotonic() < deadline, job.stderr.read() if job.poll() else "timeout"
        time.sleep(0.005)
    job.send_signal(signal.SIGUSR2)  # preemption (or the time limit near): Slurm's signal to a submitit job
    _, err = job.communicate(timeout=120)
    assert f"scontrol requeue {entry['job_id']}" in (fake_slurm / "calls").read_text(), err
    assert not list(out.glob("runs/*-apgd-4_255-*/rows.csv")), "the signal came too late to interrupt"
    assert "requeueing" in err and "preempted" in err  # srun would write this to the job's log

    again = subprocess.run(command, env=_slurm_env(entry["job_id"]), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert_same_results(out, ref)
    _, statuses = status(out)
    assert {s.state for s in statuses} == {"done"}


def test_checkpoint_resubmits_the_same_job(tmp_path):
    """``checkpoint()`` hands back the job itself (its state is the store); calling it again runs the same units."""
    from bench.runner import RunRequest

    job = EvalJob(RunRequest(out=tmp_path), [("clip", "zeroshot", "novel-colours")])
    delayed = job.checkpoint()
    assert isinstance(delayed, DelayedSubmission) and delayed.function is job and delayed.args == ()
    assert job.unit_request(job.units[0]).allow_training is False
