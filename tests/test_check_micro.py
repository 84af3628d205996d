"""`bench check` against the committed baseline on the real micro suite.

The test re-runs one CI cell of the baseline: clip on `novel-colours` (seven hues 15° apart, 100 % clean) at
ε = 1/255 with 200 samples, where APGD-CE has to work (45.5 % robust with 100 iterations). With the attack cut to 2
iterations (a silent iteration cut that keeps the protocol's label) it must fail and name the cell; the report is
then drawn from the re-run's rows. That the committed code passes on these cells (and the baseline's other
datasets) is `.ci/run`'s own step, `bench check --baseline results/baselines/micro.csv --encoder clip`, after the
tests: re-running it here too cost CI about a minute for nothing it does not already show.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.check import read_baseline
from bench.cli import main

BASELINE = Path(__file__).resolve().parents[1] / "results" / "baselines" / "micro.csv"
# the baseline also holds trained encoders' cells; a fresh machine has not trained them (docs/regression-check.md)
QUICK = ["--encoder", "clip", "--dataset", "novel-colours", "--n-samples", "200"]


def weaken_apgd(monkeypatch, iterations: int) -> None:
    """Cut every APGD run of the protocol engine to ``iterations`` without touching the protocol's description."""
    import attacks.protocols as protocols

    real = protocols.apgd

    def weakened(*args, **kwargs):
        return real(*args, **{**kwargs, "n_iter": min(kwargs["n_iter"], iterations)})

    monkeypatch.setattr(protocols, "apgd", weakened)


def test_committed_baseline_measures_the_committed_micro_clip():
    """A new micro CLIP must come with a refreshed baseline (docs/regression-check.md)."""
    from bench.micro.encoders import micro_card

    rows = read_baseline(BASELINE)
    clip = rows[rows["encoder"] == "clip"]
    assert set(clip["encoder_sha256"]) == {micro_card()["sha256"]}
    quick = clip[(clip["dataset"] == "novel-colours") & (clip["n_samples"] == 200) & (clip["metric"] == "accuracy")]
    assert set(quick["eps_str"]) == {"0", "1/255"}


@pytest.mark.slow
def test_check_fails_on_weakened_attack_naming_the_cell(tmp_path, monkeypatch, capsys):
    check = ["check", "--baseline", str(BASELINE), *QUICK, "--no-progress"]
    weaken_apgd(monkeypatch, 2)
    assert main([*check, "--out", str(tmp_path / "weak")]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED clip zeroshot/novel-colours apgd ε=1/255 accuracy (n=200): robust accuracy rose" in out
    assert "attack got weaker" in out and "clean accuracy" not in out.split("REGRESSED", 1)[1]
    assert "clip zeroshot/novel-colours clean accuracy (n=200)" in out  # compared, and within its tolerance

    assert main(["report", "--out", str(tmp_path / "weak"), "--html", "--ci", "bootstrap"]) == 0
    report = tmp_path / "weak" / "report"
    assert (report / "report.html").stat().st_size > 0 and (report / "tradeoff.svg").is_file()
    assert "| clip |" in (report / "table.md").read_text()
