"""Bad input gives a one-line error and exit status 2, never a traceback (``--debug`` shows it). Complements the
cases in test_cli_run.py: negative and out-of-range ε, incompatible combinations, unreadable files, a results
directory that cannot be written."""

from __future__ import annotations

import pytest

from bench.cli import main

MICRO = ["--n-samples", "4", "--dataset", "colour", "--no-progress"]


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
    (["run", "--eps", "4/255", "--dataset", "colr"], "did you mean 'colour'"),
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
