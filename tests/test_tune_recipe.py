"""scripts/tune_micro_recipe.py end to end on a two-step candidate: it trains into a directory of its own and
scores the tower (clean and APGD-CE at the training ε) on the fine-tuning set's validation split."""

from __future__ import annotations

import re

import pytest
from script_modules import load_script


def script():
    return load_script("tune_micro_recipe")


@pytest.mark.slow
def test_a_candidate_is_trained_and_scored_on_the_validation_split(tmp_path, capsys):
    tune = script()
    candidate = "steps=2,batch_size=8,n_train=16,warmup_steps=1"
    assert tune.main(["--encoder", "fare4", "--candidate", candidate, "--n-val", "8", "--work", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith("micro CLIP (not fine-tuned)")  # the reference row, before any candidate
    row = lines[-1]
    assert row.startswith(candidate)
    clean, robust = (float(v) for v in re.findall(r"(\d+\.\d) \[", row))
    assert 0 <= robust <= clean <= 100
    assert (tmp_path / "fare4-batch_size8-n_train16-steps2-warmup_steps1" / "card.json").is_file()
