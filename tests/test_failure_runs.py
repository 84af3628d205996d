"""Runs that are killed, run twice at once, or hit a full disk end with exactly the results of one uninterrupted run:
real ``bench`` subprocesses on the micro suite, signalled at several points, then re-run with the same command."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import bench.store
from bench.cli import main
from bench.core.checkpoints import load_tensors

RUN = ["run", "--encoder", "clip", "--attack", "apgd", "--eps", "4/255", "--dataset", "novel-colours",
       "--n-samples", "12",
       "--batch-size", "2", "--seed", "0", "--no-progress"]
N_BATCHES = 6  # 12 samples in batches of 2, per cell
CLEAN, ATTACKED = "-none-0-", "-apgd-4_255-"
VOLATILE = ["started_at", "seconds", "git_sha", "versions"]  # when and by which checkout, not what was measured
TRAIN = ["train", "--encoder", "fare4", "--steps", "10", "--batch-size", "8", "--n-train", "64", "--inner-steps", "1",
         "--checkpoint-every", "1", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _default_sigint() -> None:
    # a test runner started in the background (`cmd &` in a script) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: the child must start as from a terminal for Ctrl-C to mean anything
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def batch_files(out: Path, cell: str) -> list[Path]:
    return sorted(p for d in (out / "runs").glob(f"*{cell}*") for p in (d / "samples").glob("*.csv"))


def kill_when(proc: subprocess.Popen, ready, sig: signal.Signals, timeout: float = 120.0) -> tuple[int, str]:
    """Send ``sig`` as soon as ``ready()`` holds; the process must still be running then."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (status {proc.returncode}) before the kill point: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("kill point never reached")
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def raw_records(run_dir: Path) -> pd.DataFrame:
    """Every per-sample line on disk (no de-duplication: a sample written twice would show here)."""
    frames = [pd.read_csv(p, keep_default_na=False, dtype={"sample_id": str}) for p in
              sorted((run_dir / "samples").glob("*.csv"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def assert_same_results(out: Path, ref: Path) -> None:
    """Same run directories, each complete with the same metric rows and per-sample records, each sample once."""
    names = sorted(d.name for d in (ref / "runs").iterdir())
    assert sorted(d.name for d in (out / "runs").iterdir()) == names
    for name in names:
        got = pd.read_csv(out / "runs" / name / "rows.csv").drop(columns=VOLATILE)
        want = pd.read_csv(ref / "runs" / name / "rows.csv").drop(columns=VOLATILE)
        pd.testing.assert_frame_equal(got, want)
        assert not got.duplicated(["run_id", "metric"]).any()
        records, expected = raw_records(out / "runs" / name), raw_records(ref / "runs" / name)
        if len(expected):
            assert records.sample_id.is_unique and len(records) == len(expected)
            pd.testing.assert_frame_equal(records.sort_values("sample_id", ignore_index=True),
                                          expected.sort_values("sample_id", ignore_index=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted run, in-process."""
    out = tmp_path_factory.mktemp("reference")
    assert main([*RUN, "--out", str(out)]) == 0
    assert len(batch_files(out, ATTACKED)) == N_BATCHES and len(batch_files(out, CLEAN)) == N_BATCHES
    return out


KILLS = [  # (signal, cell, after how many of its batch files): each kill hits a run resumed from the one before
    (signal.SIGTERM, CLEAN, 1),  # during the clean cell
    (signal.SIGKILL, ATTACKED, 1),  # in the attacked cell, after its first batch
    # Ctrl-C in the middle of the attacked cell: three batches still to go, so that on a fast machine the signal
    # does not arrive after the run has finished (with one batch left, CI saw the run end first and exit 0)
    (signal.SIGINT, ATTACKED, 3),
]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_results(reference, tmp_path):
    out = tmp_path / "out"
    kept: set[Path] = set()
    for sig, cell, after in KILLS:
        code, err = kill_when(start([*RUN, "--out", str(out)], tmp_path),
                              lambda cell=cell, after=after: len(batch_files(out, cell)) >= after, sig)
        assert code == (130 if sig == signal.SIGINT else -sig), err
        if sig == signal.SIGINT:
            assert "finished batches are saved" in err
        assert not list((out / "runs").glob(f"*{ATTACKED}*/rows.csv")), "the kill came too late to interrupt"
        on_disk = set(batch_files(out, CLEAN) + batch_files(out, ATTACKED))
        assert kept <= on_disk  # a finished batch is never lost or redone
        for path in on_disk - kept:  # and whatever was written is whole
            assert len(pd.read_csv(path)) == 2
        kept = on_disk

    assert main([*RUN, "--out", str(out)]) == 0  # the same command, once more to the end
    assert_same_results(out, reference)


@pytest.mark.slow
def test_concurrent_runs_share_a_store(reference, tmp_path):
    """Two identical commands and a third sharing only the clean cell, all at once on one --out."""
    out = tmp_path / "out"
    clean_only = [a if a != "apgd" else "none" for a in RUN]
    procs = [start([*args, "--out", str(out)], tmp_path) for args in (RUN, RUN, clean_only)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert_same_results(out, reference)


@pytest.mark.parametrize("batch_size", ["2", "5"], ids=["same-config", "other-batching"])
def test_same_seed_same_records(batch_size, reference, tmp_path):
    """Twice the same: identical records. Batches of 5 (one uneven) too: each sample's random start is its own."""
    args = [*RUN[:RUN.index("--batch-size") + 1], batch_size, *RUN[RUN.index("--batch-size") + 2:]]
    assert main([*args, "--out", str(tmp_path)]) == 0
    assert_same_results(tmp_path, reference)


def test_full_disk_keeps_finished_batches(reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    real_write = bench.store.atomic_write_bytes
    attacked_batches = []

    def write(path, data):
        path = Path(path)
        if ATTACKED in str(path) and path.parent.name == "samples":
            attacked_batches.append(path)
            if len(attacked_batches) > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(bench.store, "atomic_write_bytes", write)
    assert main([*RUN, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "disk full" in err and len(err.splitlines()) == 1
    assert len(batch_files(out, ATTACKED)) == 1  # the batch before the fault is kept

    monkeypatch.setattr(bench.store, "atomic_write_bytes", real_write)
    assert main([*RUN, "--out", str(out)]) == 0
    assert_same_results(out, reference)


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_weights(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    # the killed process trains at one thread (ENV); the in-process trainings must too, or their sums are reduced in
    # another order and the weights differ by float noise that grows with the steps the killed process got through
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed_equals_uninterrupted(ref, out, tmp_path)
    finally:
        torch.set_num_threads(threads)


def resumed_equals_uninterrupted(ref: Path, out: Path, tmp_path: Path) -> None:
    assert main([*TRAIN, "--out", str(ref)]) == 0
    code, err = kill_when(start([*TRAIN, "--out", str(out)], tmp_path), (out / "last.pt").exists, signal.SIGKILL)
    assert code == -signal.SIGKILL, err
    assert not (out / "visual.safetensors").exists(), "the kill came too late to interrupt training"
    step = torch.load(out / "last.pt", weights_only=True)["step"]
    assert 1 <= step < 10

    assert main([*TRAIN, "--out", str(out), "--resume"]) == 0
    want, got = load_tensors(ref / "visual.safetensors"), load_tensors(out / "visual.safetensors")
    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)
    log = pd.read_csv(out / "train_log.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(log, pd.read_csv(ref / "train_log.csv").drop(columns="seconds"), rtol=1e-5)
