"""What `bench check` tells a CI system and what its baseline records: the JUnit XML file (read back here), the
Markdown summary, the exit codes its help states, and per-cell tolerances from evaluation and training noise with
the value each refreshed cell replaced (synthetic stores, no model)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from report_synth import add_cell, grid, standard_grid

from bench.check import tolerance
from bench.check_tolerance import NOISE_KEY, pooled_sd, training_spread
from bench.cli import main
from bench.store import Store

LATER = "2026-02-01T00:00:00+00:00"
TRAINED = "trained on demand: fare4-micro-0123456789ab"


def baseline_from(tmp_path, store, *extra) -> str:
    path = tmp_path / "baseline.csv"
    assert main(["check", "--baseline", str(path), "--results", str(store), "--write-baseline", *extra]) == 0
    return str(path)


def test_junit_file_has_a_case_per_cell_and_fails_the_regressed_one(tmp_path, capsys):
    standard_grid(tmp_path / "base")
    baseline = baseline_from(tmp_path, tmp_path / "base")
    standard_grid(tmp_path / "now")
    add_cell(tmp_path / "now", "clip", "novel-colours", "4/255", 0.30, started_at=LATER)
    junit, summary = tmp_path / "ci" / "check.xml", tmp_path / "ci" / "summary.md"
    assert main(["check", "--baseline", baseline, "--results", str(tmp_path / "now"), "--junit-xml", str(junit),
                 "--summary-md", str(summary)]) == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert (len(cases), suite.get("tests"), suite.get("failures")) == (12, "12", "1")
    (failed,) = [c for c in cases if c.find("failure") is not None]
    assert failed.get("name") == "clip zeroshot/novel-colours apgd ε=4/255 accuracy (n=200)"
    assert failed.get("classname") == "bench-check.clip"
    message = failed.find("failure").get("message")
    assert message.startswith(f"baseline 5.0, now 30.0, tolerance ±{100 * tolerance(0.05, 200):.1f}: robust "
                              "accuracy rose by 25.0")
    assert "tolerance: evaluation noise" in failed.find("failure").text

    text = summary.read_text()
    assert text.startswith("### bench check: 1 of 12 cells regressed")
    assert "| clip zeroshot/novel-colours apgd ε=4/255 accuracy (n=200) | 5.0 | 30.0 | +25.0 |" in text
    assert text.count("| ok |") == 11 and "**REGRESSED**: robust accuracy rose" in text


def test_help_states_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out
    assert "0  every cell within its tolerance" in out and "1  a regression" in out and "2  a usage or input" in out


def noise_file(tmp_path, sds: dict[str, float], trainings: int = 6):
    """A training-noise file for fare4's shape cells (clean and 4/255), as the measuring script writes it."""
    rows = [{"encoder": "fare4", "task": "zeroshot", "dataset": "novel-shapes",
             "attack": "none" if eps == "0" else "apgd",
             "eps_str": eps, "metric": "accuracy", "n_samples": 200, "seed": 0, "trainings": trainings,
             "mean": 0.5, "sd": sd, "min": 0.4, "max": 0.6} for eps, sd in sds.items()]
    path = tmp_path / "training_noise.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_baseline_records_each_cells_tolerance_and_why(tmp_path):
    grid(tmp_path / "base", {("fare4", "novel-shapes", "0"): 0.85, ("fare4", "novel-shapes", "4/255"): 0.40,
                             ("clip", "novel-shapes", "0"): 0.90}, encoder_source=TRAINED)
    noise = noise_file(tmp_path, {"0": 0.01, "4/255": 0.04})
    rows = pd.read_csv(baseline_from(tmp_path, tmp_path / "base", "--training-noise", noise))
    cells = rows[rows["metric"] == "accuracy"].set_index(["encoder", "eps_str"])
    robust = cells.loc[("fare4", "4/255")]
    assert robust["tolerance_eval"] == pytest.approx(tolerance(0.40, 200))
    assert robust["tolerance_train"] == pytest.approx(3 * math.sqrt(2) * 0.04)  # pooled over one attacked cell
    assert robust["tolerance"] == pytest.approx(math.hypot(tolerance(0.40, 200), 3 * math.sqrt(2) * 0.04))
    assert "training noise ±17.0 (3 × √2 × 4.00, sd pooled over fare4's 1 attacked cells" in \
        robust["tolerance_reason"]
    clip = cells.loc[("clip", "0")]  # not in the noise file: evaluation noise only
    assert math.isnan(clip["tolerance_train"]) and clip["tolerance"] == pytest.approx(tolerance(0.90, 200))
    assert rows.loc[rows["metric"] == "nonfinite_samples", "tolerance"].isna().all()  # not compared: none


def test_training_noise_widens_only_the_trained_cells(tmp_path, capsys):
    grid(tmp_path / "base", {("fare4", "novel-shapes", "4/255"): 0.40}, encoder_source=TRAINED)
    baseline = baseline_from(tmp_path, tmp_path / "base", "--training-noise",
                             noise_file(tmp_path, {"4/255": 0.04}))
    plain = baseline_from(tmp_path / "plain", tmp_path / "base")
    grid(tmp_path / "now", {("fare4", "novel-shapes", "4/255"): 0.52}, encoder_source=TRAINED)  # +12 points
    assert main(["check", "--baseline", plain, "--results", str(tmp_path / "now")]) == 1  # evaluation noise: ±10.4
    assert main(["check", "--baseline", baseline, "--results", str(tmp_path / "now")]) == 0  # + training: ±19.9
    grid(tmp_path / "worse", {("fare4", "novel-shapes", "4/255"): 0.15}, encoder_source=TRAINED)
    assert main(["check", "--baseline", baseline, "--results", str(tmp_path / "worse")]) == 1
    assert "robust accuracy fell by 25.0 (tolerance 19.9" in capsys.readouterr().out


def test_per_cell_or_pooled_training_sd(tmp_path):
    grid(tmp_path / "base", {("fare4", "novel-shapes", "0"): 0.85, ("fare4", "novel-shapes", "2/255"): 0.6,
                             ("fare4", "novel-shapes", "4/255"): 0.40}, encoder_source=TRAINED)
    noise = noise_file(tmp_path, {"0": 0.0, "2/255": 0.01, "4/255": 0.07})
    pooled = pd.read_csv(baseline_from(tmp_path / "p", tmp_path / "base", "--training-noise", noise))
    cell = pd.read_csv(baseline_from(tmp_path / "c", tmp_path / "base", "--training-noise", noise,
                                     "--training-sd", "cell"))

    def train_part(rows, eps):
        return rows[(rows["metric"] == "accuracy") & (rows["eps_str"] == eps)]["tolerance_train"].iloc[0]

    assert train_part(pooled, "2/255") == pytest.approx(3 * math.sqrt(2) * math.sqrt((0.01 ** 2 + 0.07 ** 2) / 2))
    assert train_part(pooled, "2/255") == pytest.approx(train_part(pooled, "4/255"))
    assert train_part(cell, "2/255") == pytest.approx(3 * math.sqrt(2) * 0.01)
    assert train_part(pooled, "0") == 0 and train_part(cell, "4/255") == pytest.approx(3 * math.sqrt(2) * 0.07)


def test_a_refreshed_cell_shows_old_and_new_values(tmp_path):
    grid(tmp_path / "base", {("clip", "novel-shapes", "0"): 0.90, ("clip", "novel-shapes", "4/255"): 0.10})
    baseline = baseline_from(tmp_path, tmp_path / "base")
    add_cell(tmp_path / "base", "clip", "novel-shapes", "4/255", 0.05, started_at=LATER)  # the change that moved it
    assert main(["check", "--baseline", baseline, "--results", str(tmp_path / "base"), "--write-baseline"]) == 0
    rows = pd.read_csv(baseline).query("metric == 'accuracy'").set_index("eps_str")
    assert rows.loc["4/255", "value"] == 0.05 and rows.loc["4/255", "previous_value"] == 0.10
    assert rows.loc["0", "previous_value"] == 0.90  # refreshed, unmoved
    summary = tmp_path / "summary.md"
    assert main(["check", "--baseline", baseline, "--results", str(tmp_path / "base"), "--summary-md",
                 str(summary)]) == 0
    text = summary.read_text()
    assert "| clip zeroshot/novel-shapes apgd ε=4/255 accuracy (n=200) | 10.0 → 5.0 | 5.0 |" in text
    assert "| clip zeroshot/novel-shapes clean accuracy (n=200) | 90.0 | 90.0 |" in text
    assert "1 cell(s) of the baseline were refreshed with a moved value" in text


def test_spread_across_trainings_and_its_pooling():
    values = pd.DataFrame([{"encoder": "simclip4", "task": "zeroshot", "dataset": d, "attack": a, "eps_str": e,
                            "metric": "accuracy", "n_samples": 100, "seed": 0, "training": t, "value": v}
                           for d, a, e, vs in (("novel-shapes", "apgd", "4/255", (0.38, 0.30, 0.41, 0.35)),
                                               ("novel-colours", "apgd", "4/255", (0.96, 0.95, 0.97, 0.96)),
                                               ("novel-shapes", "none", "0", (0.96, 0.95, 0.96, 0.96)))
                           for t, v in enumerate(vs)])
    spread = training_spread(values).set_index(["dataset", "eps_str"])
    shape = spread.loc[("novel-shapes", "4/255")]
    assert (shape["trainings"], shape["min"], shape["max"]) == (4, 0.30, 0.41)
    assert shape["mean"] == pytest.approx(0.36) and shape["sd"] == pytest.approx(pd.Series([.38, .30, .41, .35]).std())
    pooled = pooled_sd(spread.reset_index()).set_index("kind")
    assert pooled.loc["attacked", "sd"] == pytest.approx(math.sqrt((shape["sd"] ** 2 + spread.loc[
        ("novel-colours", "4/255"), "sd"] ** 2) / 2))
    assert pooled.loc["attacked", "cells"] == 2 and pooled.loc["clean", "cells"] == 1
    assert list(training_spread(values.iloc[:1])[NOISE_KEY[:3]].iloc[0]) == ["simclip4", "zeroshot", "novel-shapes"]
    assert training_spread(values.iloc[:1])["sd"].iloc[0] == 0  # one training: no spread measured


@pytest.mark.parametrize("content,message", [
    (None, "training-noise file not found"),
    ("a,b\n1,2\n", "is not what the measuring script writes (missing columns: encoder"),
])
def test_bad_training_noise_file_is_one_line(tmp_path, capsys, content, message):
    add_cell(tmp_path / "base", "clip", "novel-shapes", "0", 0.9)
    noise = tmp_path / "noise.csv"
    if content is not None:
        noise.write_text(content)
    assert main(["check", "--baseline", str(tmp_path / "b.csv"), "--results", str(tmp_path / "base"),
                 "--write-baseline", "--training-noise", str(noise)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b.csv").exists()  # nothing half-written
    assert Store(tmp_path / "base").rows()["value"].iloc[0] == 0.9
