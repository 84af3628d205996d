"""scripts/measure_training_noise.py on a tiny configuration: a baseline of fare4 trained with a two-step recipe
(colour, 8 samples, APGD at 4/255), two training seeds at one thread, then its power against a recipe change and an
attack cut. Its aggregation is ``bench.check_tolerance``'s (tested on synthetic rows in test_check_outputs.py); here
the script trains, re-runs the baseline's cells, and writes what `bench check --write-baseline --training-noise`
reads."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from script_modules import load_script

from bench.cli import main

TINY = "train:steps=2:batch_size=8:n_train=16:warmup_steps=1"


def script():
    return load_script("measure_training_noise")


def test_every_seed_at_the_first_thread_count_and_the_chosen_ones_at_the_others():
    measure = script()
    args = measure.parse_args(["--baseline", "b.csv", "--encoder", "simclip4", "--encoder", "fare4", "--seeds", "0,1,2",
                               "--threads", "2,1", "--seeds-at-other-threads", "0"])
    assert [t.tag for t in measure.planned_trainings(args)] == [
        "simclip4-s0-t2", "simclip4-s1-t2", "simclip4-s2-t2", "simclip4-s0-t1",
        "fare4-s0-t2", "fare4-s1-t2", "fare4-s2-t2", "fare4-s0-t1"]
    every = measure.parse_args(["--baseline", "b.csv", "--encoder", "fare4", "--seeds", "0,1", "--threads", "2,1"])
    assert len(measure.planned_trainings(every)) == 4


@pytest.mark.slow
def test_training_noise_of_a_tiny_recipe(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    assert main(["run", "--encoder", f"fare4={TINY}", "--dataset", "novel-colours", "--n-samples", "8", "--attack",
                 "apgd",
                 "--eps", "4/255", "--out", str(tmp_path / "results"), "--no-progress"]) == 0
    baseline = tmp_path / "baseline.csv"
    assert main(["check", "--baseline", str(baseline), "--results", str(tmp_path / "results"),
                 "--write-baseline"]) == 0
    out = tmp_path / "noise"
    args = ["--baseline", str(baseline), "--encoder", "fare4", "--seeds", "0,1", "--threads", "1", "--out", str(out),
            "--variant", "one-step@fare4=steps=1", "--attack-iterations", "1"]
    text = script().run(args)

    noise = pd.read_csv(out / "training_noise.csv", dtype={"eps_str": str}).set_index("eps_str")
    values = pd.read_csv(out / "training_values.csv", dtype={"eps_str": str})
    assert sorted(noise.index) == ["0", "4/255"] and set(noise["trainings"]) == {2}
    assert set(values["training"]) == {"fare4-s0-t1", "fare4-s1-t1"} and len(values) == 4
    robust = values[values["eps_str"] == "4/255"]["value"]
    assert noise.loc["4/255", "sd"] == pytest.approx(robust.std()) and noise.loc["4/255", "min"] == robust.min()
    seed0 = values[values["training"] == "fare4-s0-t1"].set_index("eps_str")
    assert (seed0["value"] == seed0["baseline"]).all()  # seed 0 is the baseline's recipe, retrained on this machine
    assert len(set(values["encoder_sha256"])) == 2  # the other seed trained another checkpoint

    annotated = pd.read_csv(out / "baseline_with_training_noise.csv", dtype={"eps_str": str})
    cell = annotated[(annotated["metric"] == "accuracy") & (annotated["eps_str"] == "4/255")].iloc[0]
    assert cell["tolerance_train"] == pytest.approx(3 * math.sqrt(2) * noise.loc["4/255", "sd"])
    assert "| fare4 | novel-colours | 4/255 |" in text and "Pooled training sd" in text
    assert "| one-step | fare4 |" in text and "| apgd-1 | fare4 |" in text
    assert (out / "runs" / "fare4-one-step" / "junit.xml").is_file()
    # the attack cut re-runs the first training's encoder: nothing trained for it
    assert not (out / "cache" / "fare4-apgd-1").exists() and (out / "runs" / "fare4-apgd-1" / "junit.xml").is_file()

    assert main(["check", "--baseline", str(baseline), "--encoder", "fare4", "--write-baseline", "--train",
                 "--training-noise", str(out / "training_noise.csv"), "--no-progress"]) == 0
    refreshed = pd.read_csv(baseline, dtype={"eps_str": str})
    assert refreshed["tolerance_reason"].str.contains("training noise", na=False).sum() == 2
