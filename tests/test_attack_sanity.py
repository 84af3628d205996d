"""The gradient-masking checks flag what they should: a model whose gradients are useless, a protocol verdict that
is too generous, accuracy rising with ε; and they are stored as ``sanity:<check>`` rows with details in the card."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from attack_fixtures import one_thread  # noqa: F401  (autouse fixture)
from torch import nn

from attacks.protocols import run_protocol
from attacks.registry import PROTOCOLS
from attacks.sanity import SanityConfig, attack_checks, eps_monotone, eps_sweeps, more_iterations, robust_le_clean
from bench.store import ROW_COLUMNS, Store

EPS = 8 / 255


class Quantised(nn.Module):
    """Gradient masking by construction: the input is rounded to 3 grey levels, so every input gradient is zero,
    while a random search still flips predictions of points near a rounding boundary."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 2) / 2)


def correct_subset(model, x):
    with torch.no_grad():
        return x, model(x).argmax(1)


def test_robust_le_clean():
    clean = torch.tensor([True, True, False])
    assert robust_le_clean(clean, torch.tensor([True, False, False])).passed
    failed = robust_le_clean(clean, torch.tensor([False, False, True]))
    assert not failed.passed and failed.details["robust_but_clean_wrong"] == 1


def test_gradient_free_flags_masked_gradients(tiny_classifier, tiny_batch):
    model = Quantised(tiny_classifier)
    x, y = correct_subset(model, tiny_batch)
    seeds = torch.arange(len(x))
    out = run_protocol(model, x, y, 0.2, PROTOCOLS["apgd"], seeds)
    assert out.robust.all(), "zero gradients: the gradient attack breaks nothing"
    checks = attack_checks(model, x, y, 0.2, PROTOCOLS["apgd"], seeds, 0, out.robust, SanityConfig(square_queries=100))
    verdict = {c.name: c for c in checks}
    assert not verdict["gradient-free"].passed and verdict["gradient-free"].details["square_broken"] > 0
    assert verdict["more-iterations"].passed  # shorter gradient attacks are just as blind


def test_checks_pass_on_an_honest_evaluation(tiny_classifier, tiny_batch):
    x, y = correct_subset(tiny_classifier, tiny_batch)
    seeds = torch.arange(len(x))
    out = run_protocol(tiny_classifier, x, y, EPS, PROTOCOLS["aa-custom"], seeds)
    assert 0 < int(out.robust.sum()) < len(x)
    checks = attack_checks(tiny_classifier, x, y, EPS, PROTOCOLS["aa-custom"], seeds, 0, out.robust,
                           SanityConfig(square_queries=100))
    assert [c.name for c in checks] == ["more-iterations", "gradient-free"]
    assert all(c.passed for c in checks), [c.details for c in checks]
    assert checks[0].details["attacked"] == int(out.robust.sum())
    assert list(checks[0].details["broken_by"]) == ["APGD-CE 10 it × 1 restart", "APGD-CE 25 it × 1 restart"]


def test_more_iterations_flags_a_verdict_a_short_attack_contradicts(tiny_classifier, tiny_batch):
    x, y = correct_subset(tiny_classifier, tiny_batch)
    # every point claimed robust, although 10 iterations already break some
    bad = more_iterations(tiny_classifier, x, y, EPS, PROTOCOLS["aa-custom"], torch.arange(len(x)), SanityConfig())
    assert not bad.passed and bad.details["broken_by"]["APGD-CE 10 it × 1 restart"] > 0


def test_nothing_left_robust_leaves_nothing_to_attack(tiny_classifier, tiny_batch):
    x, y = correct_subset(tiny_classifier, tiny_batch)
    none = torch.zeros(len(x), dtype=torch.bool)
    checks = attack_checks(tiny_classifier, x, y, EPS, PROTOCOLS["apgd"], torch.arange(len(x)), 0, none,
                           SanityConfig())
    assert all(c.passed and c.details == {"attacked": 0} for c in checks)


def test_eps_monotone_flags_a_rise():
    checks = dict(eps_monotone([(0.0, "0", 0.9), (2 / 255, "2/255", 0.5), (4 / 255, "4/255", 0.6)]))
    assert checks["2/255"].passed and not checks["4/255"].passed
    assert checks["4/255"].details["previous_eps"] == "2/255"


def _row(run_id, attack, eps, label, value, protocol="P"):
    return {**{c: "" for c in ROW_COLUMNS}, "run_id": run_id, "suite": "micro", "encoder": "clip", "task": "zeroshot",
            "dataset": "novel-shapes", "attack": attack, "protocol": protocol, "precision": "fp32", "seed": 0,
            "n_samples": 10, "eps": eps, "eps_str": label, "metric": "accuracy", "value": value}


def test_eps_sweeps_become_derived_runs_attached_to_their_cells(tmp_path):
    rows = pd.DataFrame([_row("clean", "none", 0.0, "0", 0.8), _row("a2", "apgd", 2 / 255, "2/255", 0.9),
                         _row("a4", "apgd", 4 / 255, "4/255", 0.1),
                         _row("b4", "apgd", 4 / 255, "4/255", 0.2, protocol="P [backend: autoattack]")])
    derived = eps_sweeps(rows, "sha", "2026-01-01T00:00:00+00:00")
    verdicts = {(d.rows[0]["protocol"], d.rows[0]["eps_str"]): d.rows[0]["value"] for d in derived}
    # robust above clean at 2/255 fails; 4/255 vs 2/255 passes; the autoattack cell is compared with clean only
    assert verdicts == {("P", "2/255"): 0.0, ("P", "4/255"): 1.0, ("P [backend: autoattack]", "4/255"): 1.0}
    store = Store(tmp_path)
    for d in derived:
        store.write_derived(d.run_id, d.card, d.rows)
    written = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*")}
    for d in eps_sweeps(rows, "sha2", "2026-01-02T00:00:00+00:00"):  # the same sweep again: nothing rewritten
        store.write_derived(d.run_id, d.card, d.rows)
    assert written == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*")}
    stored = store.rows()
    assert list(stored.columns) == ROW_COLUMNS and set(stored.metric) == {"sanity:eps-monotone"}
    failed = stored[stored.value == 0].iloc[0]
    card = json.loads((tmp_path / "runs" / failed.run_id / "card.json").read_text())
    assert card["cells"] == ["clean", "a2"] and card["sanity"][0]["name"] == "eps-monotone"


@pytest.mark.slow
def test_bench_run_aa_custom_reports_its_checks_and_backend(tmp_path):
    from bench.cli import main

    out = tmp_path / "results"
    # a large ε keeps this cheap whatever the committed checkpoint: the undefended CLIP falls within a few steps
    common = ["run", "--attack", "aa-custom", "--eps", "16/255", "--n-samples", "4", "--dataset", "novel-shapes",
              "--out", str(out), "--no-progress"]
    assert main(common) == 0
    assert main([*common, "--attack-backend", "torchattacks"]) == 0
    rows = Store(out).rows()
    attacked = rows[rows.attack == "aa-custom"]
    for protocol, group in attacked.groupby("protocol"):
        assert {"accuracy", "sanity:robust-le-clean", "sanity:more-iterations", "sanity:gradient-free",
                "sanity:eps-monotone"} <= set(group.metric), protocol
    assert {p.endswith("[backend: torchattacks]") for p in attacked.protocol} == {True, False}
    cell = attacked[attacked.metric == "accuracy"].run_id.iloc[0]
    card = json.loads((out / "runs" / cell / "card.json").read_text())
    assert [c["name"] for c in card["sanity"]] == ["robust-le-clean", "more-iterations", "gradient-free"]
