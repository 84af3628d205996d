"""The report for test-time defences: each attack in its own columns, the worst case over them per sample beside
them (never mixed in), the gap of the papers' transfer protocol to it, ``adaptive`` as each encoder's own protocol,
the inference cost in the notes; and, end to end on the micro CLIP, that the adaptive attack and the worst case are
never weaker than the transfer protocol."""

from __future__ import annotations

import pytest
from report_synth import add_cell

from bench.core.errors import BenchError
from bench.report.render import to_markdown
from bench.report.select import Filters
from bench.report.tables import build_table
from bench.report.worst import WORST, gap_name
from bench.store import Store

N = 10
TTC_ROW = {"defence": "TTC (ttc)", "inference_cost": "4 forwards + 2 backwards of the image tower per image"}
# per sample: robust under each attack (clean-correct everywhere)
ROBUST = {"transfer-apgd": [i < 6 for i in range(N)],
          "adaptive": [3 <= i < 8 for i in range(N)],
          "square": [i in (0, 2, 3, 4, 8) for i in range(N)]}


def store_with_attacks(root, encoder="clip+ttc", attacks=tuple(ROBUST), dataset="novel-shapes", row_extra=TTC_ROW):
    add_cell(root, encoder, dataset, "0", 1.0, row_extra=row_extra, n=N)
    for attack in attacks:
        flags = ROBUST[attack]
        add_cell(root, encoder, dataset, "1/255", sum(flags) / N, attack=attack, robust=flags, n=N,
                 protocol=f"{attack} ({encoder})", row_extra=row_extra)


def table(root, protocols):
    return build_table(Store(root).rows(), Filters(protocols=protocols), store_root=root)


def value(tab, encoder, attack):
    col = next(c for c in tab.columns if c.attack == attack and c.eps > 0 and c.dataset == "novel-shapes")
    return tab.display(encoder, col)


def test_worst_case_is_per_sample_and_its_own_column(tmp_path):
    store_with_attacks(tmp_path)
    tab = table(tmp_path, ("transfer-apgd", "adaptive", "square"))
    assert [c.attack for c in tab.columns if c.eps > 0] == ["transfer-apgd", "adaptive", "square", WORST,
                                                              gap_name("transfer-apgd")]
    assert value(tab, "clip+ttc", "transfer-apgd") == 60.0 and value(tab, "clip+ttc", "adaptive") == 50.0
    # robust under every attack: samples 3 and 4 only (the smallest column alone would say 50)
    assert value(tab, "clip+ttc", WORST) == 20.0
    assert value(tab, "clip+ttc", gap_name("transfer-apgd")) == 40.0
    text = to_markdown(tab)
    assert "1/255 worst case" in text and "1/255 gap transfer-apgd" in text
    notes = " ".join(tab.notes)
    assert "robust only if every attack shown (transfer-apgd, adaptive, square) failed on it" in notes
    assert "clip+ttc: test-time defence TTC (ttc); inference 4 forwards + 2 backwards" in notes


def test_no_worst_case_from_a_subset_of_the_attacks(tmp_path):
    store_with_attacks(tmp_path, attacks=("transfer-apgd", "adaptive"))
    tab = table(tmp_path, ("transfer-apgd", "adaptive", "square"))
    assert not any(c.attack == WORST for c in tab.columns)
    missing = "no worst case where an attack has no cell: clip+ttc zeroshot/novel-shapes 1/255"
    assert any(missing in n for n in tab.notes)


def test_a_single_attack_has_no_worst_case_column(tmp_path):
    store_with_attacks(tmp_path, attacks=("adaptive",))
    tab = table(tmp_path, ("adaptive",))
    assert not any(c.attack in (WORST,) or c.is_gap for c in tab.columns)


def test_averages_of_the_worst_case_carry_an_interval_and_the_gaps_none(tmp_path):
    """With --ci, the zero-shot average of the worst case has the interval of a mean of proportions over the
    attacks' common samples; a gap is a difference of two accuracies and gets none (it once raised a KeyError)."""
    for dataset in ("novel-shapes", "novel-colours"):
        store_with_attacks(tmp_path, dataset=dataset, attacks=("transfer-apgd", "adaptive"))
    tab = build_table(Store(tmp_path).rows(), Filters(protocols=("transfer-apgd", "adaptive")), ci="wilson",
                      store_root=tmp_path)
    average = {c.attack: c for c in tab.columns if c.dataset == "average" and c.eps > 0}
    assert tab.display("clip+ttc", average[WORST]) == 30.0  # samples 3, 4, 5 on both datasets
    low, high = tab.intervals[("clip+ttc", average[WORST])]
    assert low < 0.3 < high
    assert ("clip+ttc", average[gap_name("transfer-apgd")]) in tab.values
    assert ("clip+ttc", average[gap_name("transfer-apgd")]) not in tab.intervals


def test_adaptive_is_each_encoders_own_protocol(tmp_path):
    store_with_attacks(tmp_path, attacks=("adaptive",))
    store_with_attacks(tmp_path, encoder="clip", attacks=("adaptive",), row_extra={})
    tab = table(tmp_path, ("adaptive",))  # two protocol texts in one column: allowed for adaptive alone
    assert any("adaptive: adaptive (clip+ttc), fp32 (for clip+ttc)" in n for n in tab.notes)
    add_cell(tmp_path, "clip", "novel-shapes", "1/255", 0.5, attack="apgd", n=N)
    with pytest.raises(BenchError, match="different protocols"):  # never mixed with another attack
        build_table(Store(tmp_path).rows(), Filters(), store_root=tmp_path)
    assert tab.encoders == ["clip", "clip+ttc"]  # a defended encoder sits after its base


@pytest.mark.slow
def test_adaptive_and_worst_case_never_weaker_than_transfer_on_micro(tmp_path, monkeypatch):
    """The committed micro CLIP under TTC and CLIPure-Cos (shape, 4 samples, ε = 1/255): the transfer protocol, then
    each defence's adaptive attack, through the runner, then the report. TTC's declared attack (APGD-CE and
    APGD-DLR, 100 iterations each, 4 EOT draws) would take minutes here; it runs cut to 20 iterations and 2 draws —
    a weaker attack, so the property checked holds a fortiori for the declared one."""
    import dataclasses

    from bench.core.eps import parse_eps
    from bench.defences.ttc import TestTimeCounterattacks
    from bench.runner import RunRequest, run

    declared = TestTimeCounterattacks.adaptive
    cut = dataclasses.replace(declared, eot=2, stages=tuple(dataclasses.replace(s, iterations=20)
                                                             for s in declared.stages))
    monkeypatch.setattr(TestTimeCounterattacks, "adaptive", cut)
    out = tmp_path / "results"
    for attack in ("transfer-apgd", "adaptive"):
        run(RunRequest(encoders=("clip+ttc", "clip+clipure"), attack=attack, eps=(parse_eps("1/255"),),
                       datasets=("novel-shapes",), n_samples=4, out=out, progress=False))
    tab = table(out, ("transfer-apgd", "adaptive"))
    for encoder in ("clip+ttc", "clip+clipure"):
        transfer = value(tab, encoder, "transfer-apgd")
        assert value(tab, encoder, "adaptive") <= transfer
        assert value(tab, encoder, WORST) <= min(transfer, value(tab, encoder, "adaptive"))
        assert value(tab, encoder, gap_name("transfer-apgd")) >= 0
