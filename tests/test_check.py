"""`bench check`: the tolerance model, which direction of change regresses, protocol and sample-set changes, the
CLI on synthetic stores, and baseline writing."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from report_synth import add_cell, grid, standard_grid

from bench.check import NOISE_RATIO, compare, tolerance
from bench.cli import main
from bench.core.errors import BenchError
from bench.store import Store


def rows_of(root):
    return Store(root).rows()


def by_name(results):
    return {r.name: r for r in results}


def test_tolerance_follows_binomial_noise():
    assert tolerance(0.5, 200) == pytest.approx(3 * NOISE_RATIO * math.sqrt(0.25 / 200), rel=1e-3)
    assert 0 < tolerance(0.0, 200) < tolerance(0.1, 200) < tolerance(0.5, 200)  # 0 % still allows a sample or two
    assert tolerance(0.2, 200) == pytest.approx(tolerance(0.8, 200))
    assert tolerance(0.5, 500) < tolerance(0.5, 200) < tolerance(0.5, 100)


def test_identical_results_pass(tmp_path):
    standard_grid(tmp_path)
    results = compare(rows_of(tmp_path), rows_of(tmp_path))
    assert len(results) == 12 and all(r.ok for r in results)


@pytest.mark.parametrize("cell,new,ok,reason", [
    (("clip", "novel-colours", "4/255"), 0.06, True, ""),  # +1 point: noise
    (("clip", "novel-colours", "4/255"), 0.25, False, "attack got weaker"),  # robust up
    (("fare4", "novel-shapes", "4/255"), 0.20, False, "defence got weaker"),  # robust down
    (("clip", "novel-shapes", "0"), 0.70, False, "clean accuracy dropped"),
    (("clip", "novel-shapes", "0"), 0.99, False, "clean accuracy rose"),
])
def test_each_direction_is_named(tmp_path, cell, new, ok, reason):
    base = tmp_path / "base"
    standard_grid(base)
    now = tmp_path / "now"
    standard_grid(now)
    add_cell(now, *cell, new, started_at="2026-02-01T00:00:00+00:00")  # the later run of the cell wins
    results = compare(rows_of(base), rows_of(now))
    changed = [r for r in results if (r.encoder, r.dataset, r.eps_str) == cell][0]
    assert changed.ok is ok and reason in changed.reason
    assert sum(not r.ok for r in results) == (0 if ok else 1)


def test_targeted_success_rate_direction_is_reversed(tmp_path):
    add_cell(tmp_path / "base", "clip", "strings", "4/255", 0.90, task="targeted", metric="success_rate")
    add_cell(tmp_path / "now", "clip", "strings", "4/255", 0.40, task="targeted", metric="success_rate")
    (r,) = compare(rows_of(tmp_path / "base"), rows_of(tmp_path / "now"))
    assert not r.ok and "attack got weaker" in r.reason  # less attack success = better for the defender


def test_protocol_change_is_caught_even_when_numbers_agree(tmp_path):
    add_cell(tmp_path / "base", "clip", "novel-shapes", "4/255", 0.0)
    add_cell(tmp_path / "now", "clip", "novel-shapes", "4/255", 0.0, protocol="APGD-CE 10 it × 1 restart", steps=10)
    (r,) = compare(rows_of(tmp_path / "base"), rows_of(tmp_path / "now"))
    assert not r.ok and "protocol changed" in r.reason and "steps 100 → 10" in r.reason


def test_other_samples_are_not_comparable_and_missing_cells_fail(tmp_path):
    grid(tmp_path / "base", {("clip", "novel-shapes", "0"): 0.9, ("clip", "novel-colours", "0"): 0.8})
    add_cell(tmp_path / "now", "clip", "novel-shapes", "0", 0.9, n=100)
    res = by_name(compare(rows_of(tmp_path / "base"), rows_of(tmp_path / "now")))
    assert "not comparable: the results have it only with n=100 seed=0" in \
        res["clip zeroshot/novel-shapes clean accuracy (n=200)"].reason
    assert "missing" in res["clip zeroshot/novel-colours clean accuracy (n=200)"].reason


def test_sanity_check_that_starts_failing_regresses(tmp_path):
    for where, base_value, now_value in (("a", 1.0, 0.0), ("b", 0.0, 1.0)):
        add_cell(tmp_path / where / "base", "clip", "novel-shapes", "4/255", 0.0,
                 extra_rows=[{"metric": "sanity:eps_monotone", "value": base_value}])
        add_cell(tmp_path / where / "now", "clip", "novel-shapes", "4/255", 0.0,
                 extra_rows=[{"metric": "sanity:eps_monotone", "value": now_value}])
    res = by_name(compare(rows_of(tmp_path / "a" / "base"), rows_of(tmp_path / "a" / "now")))
    assert not res["clip zeroshot/novel-shapes apgd ε=4/255 sanity:eps_monotone (n=200)"].ok
    assert all(r.ok for r in compare(rows_of(tmp_path / "b" / "base"), rows_of(tmp_path / "b" / "now")))


def test_metrics_without_a_noise_model_need_a_tolerance_column(tmp_path):
    add_cell(tmp_path, "clip", "coco", "0", 1.1, task="coco-captioning", metric="cider")
    base = rows_of(tmp_path)
    with pytest.raises(BenchError, match="tolerance"):
        compare(base, base)
    base["tolerance"] = [0.05 if m == "cider" else None for m in base["metric"]]
    now = rows_of(tmp_path)
    now.loc[now["metric"] == "cider", "value"] = 1.0
    (r,) = compare(base, now)
    assert not r.ok and "clean cider dropped by 10.0 (tolerance 5.0" in r.reason


def test_cli_check_reads_results_and_names_regressed_cells(tmp_path, capsys):
    standard_grid(tmp_path / "base")
    baseline = tmp_path / "baseline.csv"
    rows_of(tmp_path / "base").to_csv(baseline, index=False)
    standard_grid(tmp_path / "now")
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "now")]) == 0
    assert "all 12 cell(s) within tolerance" in capsys.readouterr().out

    add_cell(tmp_path / "now", "clip", "novel-colours", "4/255", 0.30, started_at="2026-02-01T00:00:00+00:00")
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "now")]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED clip zeroshot/novel-colours apgd ε=4/255 accuracy (n=200): robust accuracy rose by 25.0" in out
    assert "1 of 12 cells regressed" in out
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "now"), "--encoder", "fare4"]) == 0


def test_cli_write_baseline_merges_cells(tmp_path, capsys):
    grid(tmp_path / "clip", {("clip", "novel-shapes", "0"): 0.9, ("clip", "novel-shapes", "4/255"): 0.0})
    grid(tmp_path / "fare", {("fare4", "novel-shapes", "0"): 0.8, ("fare4", "novel-shapes", "4/255"): 0.4})
    baseline = tmp_path / "baselines" / "micro.csv"
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "clip"), "--write-baseline"]) == 0
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "fare"), "--write-baseline",
                 "--encoder", "fare4"]) == 0
    written = pd.read_csv(baseline)
    assert set(written["encoder"]) == {"clip", "fare4"} and len(written) == 8  # accuracy + nonfinite per cell
    assert set(written["encoder_sha256"]) == {"sha-clip", "sha-fare4"}  # the checkpoints measured
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "fare")]) == 1  # clip missing
    assert "missing from the current results" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--baseline", "/nonexistent.csv"], "baseline file not found"),
    (["--baseline", "{base}", "--encoder", "nope"], "no baseline cells left"),
    (["--baseline", "{base}", "--results", "/nonexistent"], "no results under"),
])
def test_cli_check_bad_input(tmp_path, capsys, args, message):
    add_cell(tmp_path / "base", "clip", "novel-shapes", "0", 0.9)
    base = tmp_path / "b.csv"
    rows_of(tmp_path / "base").to_csv(base, index=False)
    assert main(["check", *[a.format(base=base) for a in args]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_one_cell_on_two_sample_sets_is_two_baseline_cells(tmp_path, capsys):
    add_cell(tmp_path / "res", "clip", "novel-colours", "4/255", 0.07, n=200)
    add_cell(tmp_path / "res", "clip", "novel-colours", "4/255", 0.075, n=40)
    baseline = tmp_path / "b.csv"
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "res"), "--write-baseline"]) == 0
    assert sorted(pd.read_csv(baseline).query("metric == 'accuracy'")["n_samples"]) == [40, 200]
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "res"), "--n-samples", "40"]) == 0
    out = capsys.readouterr().out
    assert "all 1 cell(s) within tolerance" in out and "(n=40)" in out and "(n=200)" not in out.split("wrote")[-1]


def test_changed_checkpoint_fails_in_one_line_unless_allowed_or_retrained(tmp_path, capsys):
    add_cell(tmp_path / "base", "clip", "novel-shapes", "0", 0.9, encoder_sha256="a" * 64)
    add_cell(tmp_path / "now", "clip", "novel-shapes", "0", 0.9, encoder_sha256="b" * 64)
    baseline = tmp_path / "b.csv"
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "base"), "--write-baseline"]) == 0
    capsys.readouterr()
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "now")]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("CHECKPOINT CHANGED clip: sha256 " + "b" * 64) and "baseline's " + "a" * 64 in line
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "now"),
                 "--allow-new-checkpoint"]) == 0
    assert "clip's checkpoint differs from the baseline's (aaaaaaaaaaaa → bbbbbbbbbbbb)" in capsys.readouterr().out

    # an encoder trained on demand is compared with a note: training is not bit-identical across machines
    add_cell(tmp_path / "tbase", "fare4", "novel-shapes", "0", 0.9, encoder_sha256="c" * 64,
             encoder_source="trained on demand: fare4-micro-0123456789ab")
    add_cell(tmp_path / "tnow", "fare4", "novel-shapes", "0", 0.9, encoder_sha256="d" * 64,
             encoder_source="trained on demand: fare4-micro-0123456789ab")
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "tbase"), "--write-baseline"]) == 0
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "tnow"), "--encoder", "fare4"]) == 0
    assert "fare4's checkpoint differs from the baseline's (cccccccccccc → dddddddddddd)" in capsys.readouterr().out
