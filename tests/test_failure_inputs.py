"""Bad input gives a one-line error and exit status 2, never a traceback (``--debug`` shows it). Complements the
cases in test_cli_run.py: negative and out-of-range ε, incompatible combinations, unreadable files, a results
directory that cannot be written."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main

MICRO = ["--n-samples", "4", "--dataset", "novel-colours", "--no-progress"]


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("args,message", [
    (["run", "--eps=-4/255"], "must not be negative"),
    (["run", "--eps", "-0.01"], "must not be negative"),
    (["run", "--eps", "-4/255"], None),  # argparse takes "-4/255" for an option: its own usage error, status 2
    (["run", "--eps", "1.5"], "must be ≤ 1"),
    (["run", "--eps", "300/255"], "must be ≤ 1"),
    (["run", "--eps", "4/255/2"], "expected a fraction"),
    (["run", "--eps", "inf"], "expected a fraction"),
    (["run", "--eps", "4/255", "--task", "zeroshott"], "did you mean 'zeroshot'"),
    (["run", "--eps", "4/255", "--dataset", "novel-colors"], "did you mean 'novel-colours'"),
    (["run", "--eps", "4/255", "--attack", "apgd-dl"], "did you mean 'apgd-dlr'"),
    (["run", "--eps", "4/255", "--suite", "mirco"], "did you mean 'micro'"),
    (["run", "--eps", "4/255", "--attack", "ensemble"], "vision-language protocol; task zeroshot takes"),
    (["run", "--eps", "4/255", "--n-samples", "0"], "--n-samples must be at least 1"),
    (["run", "--eps", "4/255", "--batch-size", "-1"], "--batch-size must be at least 1"),
    (["run", "--eps", "4/255", "--seed", "-1"], "--seed must not be negative"),
    (["run", "--eps", "4/255", "--device", "cuda:7"], "no CUDA device"),
    (["run", "--eps", "4/255", "--encoder-weights", "fare4=x.pt"], "paper suites only"),
    (["train", "--encoder", "clip"], "nothing to train"),
    (["train", "--encoder", "tecoa4", "--steps", "0"], "steps must be at least 1"),
    (["check", "--baseline", "missing.csv"], "baseline file not found"),
])
def test_bad_arguments(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written into the repository, whatever slips through
    if message is None:
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
        return
    assert message in one_line_error(capsys, args)
    assert not (tmp_path / "results").exists()  # validated before anything was stored


def test_debug_shows_the_traceback(capsys):
    assert main(["--debug", "run", "--eps", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: invalid ε")


@pytest.mark.parametrize("content,message", [
    (b'run_id,metric\n"unterminated,1\n', "corrupt results file"),
    (b"\x80\x81\xfe binary", "corrupt results file"),
    (b"a,b\n1,2\n", "is not a file of tidy result rows"),
])
def test_unreadable_baseline(content, message, capsys, tmp_path):
    path = tmp_path / "baseline.csv"
    path.write_bytes(content)
    assert message in one_line_error(capsys, ["check", "--baseline", str(path)])


def test_corrupt_training_checkpoint_is_refused_on_resume(capsys, tmp_path):
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 this is not a torch archive")
    err = one_line_error(capsys, ["train", "--encoder", "fare4", "--steps", "2", "--batch-size", "8", "--n-train",
                                  "16", "--resume", "--out", str(tmp_path), "--no-progress"])
    assert "cannot resume from" in err and not (tmp_path / "visual.safetensors").exists()


@pytest.mark.parametrize("sub", ["", "sub"])
def test_results_directory_under_a_regular_file(sub, capsys, tmp_path):
    """``--out`` below a file cannot be created, even by root (for whom chmod would not stop a write)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    out = blocker / sub if sub else blocker
    err = one_line_error(capsys, ["run", "--attack", "none", "--out", str(out), *MICRO])
    assert "results directory is not writable" in err
    assert blocker.read_text() == "not a directory\n"


def _never_load_an_encoder(*_args, **_kwargs):
    raise AssertionError("an unwritable results directory must be refused before an encoder is loaded or trained")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where nothing can be created")
def test_results_directory_where_nothing_can_be_created(capsys, monkeypatch):
    """``mkdir`` under /proc fails with ENOENT (a FileNotFoundError, even for root): refused in one line, before any
    encoder is loaded."""
    monkeypatch.setattr("bench.micro.suite.load_encoder", _never_load_an_encoder)
    err = one_line_error(capsys, ["run", "--encoder", "clip", "--attack", "apgd", "--eps", "4/255", "--out",
                                  "/proc/forbidden", "--no-progress"])
    assert "results directory is not writable: /proc/forbidden" in err


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_report_and_baseline_destinations_that_cannot_be_written(where, capsys, tmp_path):
    from report_synth import add_cell

    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    store = tmp_path / "results"
    add_cell(store, "clip", "novel-colours", "0", 0.9)
    add_cell(store, "clip", "novel-colours", "4/255", 0.1)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    bad = blocker / "sub" if where == "under-a-file" else Path("/proc/forbidden")
    err = one_line_error(capsys, ["report", "--out", str(store), "--report-dir", str(bad)])
    assert f"report directory is not writable: {bad}" in err
    err = one_line_error(capsys, ["check", "--results", str(store), "--write-baseline", "--baseline",
                                  str(bad / "baseline.csv")])
    assert f"baseline file is not writable: {bad / 'baseline.csv'}" in err
    assert blocker.read_text() == "not a directory\n"
