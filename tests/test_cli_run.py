"""End-to-end: the CLI on the micro suite with a few samples, the store, re-run detection and the report."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from bench.cli import main
from bench.store import ROW_COLUMNS, Store


def run_cli(*args: str) -> int:
    return main(list(args))


@pytest.mark.slow
def test_run_report_and_rerun(tmp_path, capsys):
    out = tmp_path / "results"
    code = run_cli("run", "--encoder", "clip", "--attack", "apgd", "--eps", "4/255", "--n-samples", "12",
                   "--out", str(out), "--no-progress", "--dataset", "novel-shapes,count")
    assert code == 0
    printed = capsys.readouterr().out
    assert "| clip |" in printed and "novel-shapes clean" in printed and "count 4/255" in printed

    rows = Store(out).rows()
    assert list(rows.columns) == ROW_COLUMNS
    acc = rows[rows.metric == "accuracy"]
    assert set(acc.dataset) == {"novel-shapes", "count"} and set(acc.eps_str) == {"0", "4/255"}
    assert (acc.n_samples == 12).all() and (acc.attack[acc.eps > 0] == "apgd").all()
    for ds in ("novel-shapes", "count"):
        clean = acc[(acc.dataset == ds) & (acc.eps == 0)].value.item()
        robust = acc[(acc.dataset == ds) & (acc.eps > 0)].value.item()
        assert robust <= clean

    # per-sample records exist and agree with the rows
    run_dir = next(d for d in Store(out).run_dirs() if "apgd" in d.name and "novel-shapes" in d.name)
    samples = pd.concat(pd.read_csv(p) for p in (run_dir / "samples").glob("*.csv"))
    assert len(samples) == 12 and samples.sample_id.is_unique
    robust_row = acc[(acc.dataset == "novel-shapes") & (acc.eps > 0)].value.item()
    assert samples.robust.mean() == pytest.approx(robust_row)

    # the same command again is recognised: nothing recomputed, same rows
    before = {p: p.stat().st_mtime_ns for p in out.rglob("rows.csv")}
    assert run_cli("run", "--encoder", "clip", "--attack", "apgd", "--eps", "4/255", "--n-samples", "12",
                   "--out", str(out), "--no-progress", "--dataset", "novel-shapes,count") == 0
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("rows.csv")}

    assert run_cli("report", "--out", str(out)) == 0
    assert (out / "report" / "table.md").is_file() and (out / "report" / "accuracy_vs_eps.png").is_file()
    table = pd.read_csv(out / "report" / "table.csv", header=[0, 1], index_col=0)
    assert "clip" in table.index


@pytest.mark.parametrize("args,message", [
    (["run", "--eps", "4"], "did you mean 4/255"),
    (["run", "--encoder", "clipp", "--eps", "4/255"], "did you mean 'clip'"),
    (["run", "--attack", "apgdd", "--eps", "4/255"], "unknown attack"),
    (["run", "--dataset", "shapes", "--eps", "4/255"], "unknown dataset 'shapes'"),
    (["run", "--attack", "apgd"], "needs at least one --eps"),
    (["run", "--suite", "nope", "--eps", "4/255"], "unknown suite"),
    (["report", "--out", "/nonexistent/results"], "no results to report"),
])
def test_bad_input_one_line_error(args, message, capsys):
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_list_describes_everything(capsys):
    assert run_cli("list") == 0
    out = capsys.readouterr().out
    for name in ("clip", "simclip{1,2,4}", "simclip-siamese{1,2,4}", "aa-custom", "zeroshot", "micro", "fare"):
        assert name in out
    # the two Sim-CLIP variants, one line each
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "Sim-CLIP as released" in lines["simclip{1,2,4}"]
    assert "Sim-CLIP, paper objective (no anchor to the original encoder)" in lines["simclip-siamese{1,2,4}"]


def test_console_script_help_runs():
    res = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "train" in res.stdout and "report" in res.stdout


def test_plan_trains_nothing(tmp_path, capsys, monkeypatch):
    """`--plan` prices what is there: an untrained encoder gets a line saying it will be trained, not a training."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    out = tmp_path / "results"
    assert run_cli("run", "--encoder", "clip,fare4", "--attack", "apgd", "--eps", "4/255", "--n-samples", "4",
                   "--dataset", "novel-shapes", "--out", str(out), "--plan") == 0
    err = capsys.readouterr().err
    assert "plan for clip on cpu" in err and "forward+backward passes" in err
    assert "plan for fare4: not trained yet" in err and "training fare4" not in err
    assert not (cache / "encoders").exists() and not (out / "runs").exists()
