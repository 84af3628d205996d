"""``bench sweep`` through submitit's local launcher equals ``bench run`` of the same grid; a job killed mid-cell and
resubmitted loses nothing and duplicates nothing; ``bench status`` counts what the store holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_failure_runs import assert_same_results

from bench.cli import main
from bench.core.errors import BenchError
from bench.sweep import record as records
from bench.sweep.packing import pack
from bench.sweep.status import status

GRID = ["--encoder", "clip", "--attack", "apgd", "--eps", "2/255", "--eps", "4/255", "--n-samples", "8",
        "--dataset", "novel-shapes,novel-colours,count",
        "--batch-size", "2", "--seed", "0", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


class Unit:
    def __init__(self, name: str, cost: float):
        self.name, self.cost = name, cost


def test_packing_balances_cost_not_cells():
    """Longest processing time first: one expensive unit gets a job to itself, the cheap ones share the other."""
    units = [Unit("cheap1", 1.0), Unit("big", 10.0), Unit("cheap2", 1.0), Unit("cheap3", 2.0)]
    packs = pack(units, 2)
    assert [[u.name for u in p.units] for p in packs] == [["big"], ["cheap3", "cheap1", "cheap2"]]
    assert [p.cost for p in packs] == [10.0, 4.0]
    assert len(pack(units, 10)) == 4  # never an empty job
    with pytest.raises(BenchError, match="--jobs must be at least 1"):
        pack(units, 0)


@pytest.mark.parametrize("args, message", [
    (["--launcher", "pbs"], "unknown --launcher 'pbs'"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--force"], "never recomputes"),
    (["--resubmit-failed"], "no sweep"),
])
def test_user_errors_are_one_line(args, message, tmp_path, capsys):
    assert main(["sweep", *GRID, "--dataset", "novel-colours", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_missing_submitit_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # what `import submitit` finds when it is not installed
    assert main(["status", "--out", str(tmp_path)]) == 2
    assert "needs submitit: pip install" in capsys.readouterr().err


def test_status_without_a_sweep_is_one_line(tmp_path, capsys):
    assert main(["status", "--out", str(tmp_path)]) == 2
    assert "no sweep recorded" in capsys.readouterr().err


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The grid as one sequential ``bench run``."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["run", *GRID, "--out", str(out)]) == 0
    return out


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            out += children
            todo += children
    return out


def _job_process(pid: int) -> int | None:
    """A running submitit job task (``python -m submitit.core._submit``) below ``pid``."""
    for child in _descendants(pid):
        try:
            if b"submitit.core._submit" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            continue
    return None


def _counts(out: Path) -> dict[str, int]:
    _, statuses = status(out)
    return {state: sum(1 for s in statuses if s.state == state) for state in ("done", "running", "failed", "missing")}


def _complete_runs(out: Path) -> int:
    return sum(1 for d in (out / "runs").glob("clip-*") if (d / "rows.csv").is_file())


@pytest.mark.slow
def test_killed_job_resubmitted_loses_nothing(reference, tmp_path):
    """Two local jobs; one is killed (SIGKILL) in the middle of an attacked cell; ``--resubmit-failed`` finishes
    the sweep, and the store equals the sequential run's: same rows, same per-sample records, each sample once.
    ``bench status`` agrees with the store before, during and after."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench", "sweep", *GRID, "--launcher", "local", "--jobs", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("runs/*-apgd-*/samples/*.csv")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.005)
    victim = _job_process(proc.pid)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "failed" in err, err

    during = _counts(out)
    assert during["failed"] > 0 and during["running"] == 0
    assert during["done"] == _complete_runs(out) < 9 and sum(during.values()) == 9

    assert main(["sweep", *GRID, "--launcher", "local", "--jobs", "2", "--out", str(out), "--resubmit-failed"]) == 0
    assert _counts(out) == {"done": 9, "running": 0, "failed": 0, "missing": 0}
    assert_same_results(out, reference)
    record = records.load(out)
    assert len([s for s in record["submissions"] if s["kind"] == "eval"]) >= 3  # the resubmission is recorded

    # the same command once more: nothing left to submit
    assert main(["sweep", *GRID, "--launcher", "local", "--jobs", "2", "--out", str(out)]) == 0
    assert len(records.load(out)["submissions"]) == len(record["submissions"])


@pytest.mark.slow
def test_many_jobs_on_overlapping_cells_share_the_store(reference, tmp_path):
    """Three local jobs at once, two of them given the same unit (and one a unit that another also holds): the
    per-run lock makes each cell computed once; the store equals the sequential run's, no sample twice."""
    import submitit

    from bench.core.eps import parse_eps
    from bench.runner import RunRequest
    from bench.sweep.job import EvalJob

    out = tmp_path / "out"
    req = RunRequest(encoders=("clip",), attack="apgd", eps=(parse_eps("2/255"), parse_eps("4/255")), n_samples=8,
                     batch_size=2, seed=0, out=out, progress=False)
    units = [[("clip", "zeroshot", "novel-shapes"), ("clip", "zeroshot", "novel-colours")],
             [("clip", "zeroshot", "novel-colours"), ("clip", "zeroshot", "count")],
             [("clip", "zeroshot", "novel-colours")]]
    executor = submitit.AutoExecutor(folder=str(tmp_path / "jobs" / "%j"), cluster="local")
    executor.update_parameters(timeout_min=30)
    jobs = [executor.submit(EvalJob(req, u)) for u in units]
    assert [len(job.result()) for job in jobs] == [2, 2, 1]
    assert_same_results(out, reference)
