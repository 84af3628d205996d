"""`bench report` tables from synthetic stores: layout, averages, best marks, protocol refusal, headline metrics,
intervals, sanity flags, LaTeX/CSV, filters and run cards."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from report_synth import add_cell, grid, standard_grid

from bench.cli import main
from bench.core.errors import BenchError
from bench.report import Filters, build_table, to_latex, to_markdown
from bench.report.training import probe_curves
from bench.store import Store


def table_of(root, **kw):
    return build_table(Store(root).rows(), store_root=root, **kw)


def md_row(md: str, encoder: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {encoder} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_layout_averages_and_best(tmp_path):
    standard_grid(tmp_path)
    tab = table_of(tmp_path)
    md = to_markdown(tab)
    header = md.splitlines()[0]
    assert header == ("| encoder | novel-shapes clean | novel-shapes 2/255 | novel-shapes 4/255 | novel-colours clean "
                      "| novel-colours 2/255 | novel-colours 4/255 | average clean | average 2/255 | average 4/255 |")
    assert tab.encoders == ["clip", "fare4"]  # registry order, not insertion order
    clip, fare = md_row(md, "clip"), md_row(md, "fare4")
    assert clip[:3] == ["**90.0**", "10.0", "0.0"] and fare[:3] == ["85.0", "**60.0**", "**40.0**"]
    # averages over the two datasets, and their best marks
    assert clip[6:] == ["**85.0**", "20.0", "2.5"] and fare[6:] == ["80.0", "**57.5**", "**37.5**"]


def test_ties_all_marked_and_missing_cells(tmp_path):
    grid(tmp_path, {("clip", "novel-shapes", "0"): 0.5, ("fare4", "novel-shapes", "0"): 0.5,
                    ("clip", "novel-colours", "0"): 0.7})
    md = to_markdown(table_of(tmp_path))
    assert md_row(md, "clip") == ["**50.0**", "70.0", "60.0"]  # a lone value in a column is not "best"
    assert md_row(md, "fare4") == ["**50.0**", "–", "–"]  # no average over fewer datasets


def test_refuses_two_protocols_in_one_column(tmp_path):
    add_cell(tmp_path, "clip", "novel-shapes", "4/255", 0.0, attack="apgd")
    add_cell(tmp_path, "fare4", "novel-shapes", "4/255", 0.3, attack="aa-custom")
    with pytest.raises(BenchError, match="different protocols.*--protocol"):
        table_of(tmp_path)
    tab = table_of(tmp_path, filters=Filters(protocols=("apgd-ce",)))  # aliases resolve
    assert tab.encoders == ["clip"]


def test_refuses_same_attack_name_with_other_iterations(tmp_path):
    add_cell(tmp_path, "clip", "novel-shapes", "4/255", 0.0)
    add_cell(tmp_path, "fare4", "novel-shapes", "4/255", 0.3, protocol="APGD-CE 10 it × 1 restart", steps=10)
    with pytest.raises(BenchError, match="different protocols"):
        table_of(tmp_path)


def two_protocol_grid(root) -> None:
    """clip and fare1 on two datasets, clean and at 1/255 under both aa-custom and pgd-100-tga."""
    values = {("clip", "0"): (0.9, 0.8), ("fare1", "0"): (0.85, 0.75)}
    robust = {("clip", "aa-custom"): (0.0, 0.1), ("clip", "pgd-100-tga"): (0.05, 0.2),
              ("fare1", "aa-custom"): (0.5, 0.4), ("fare1", "pgd-100-tga"): (0.6, 0.5)}
    for (enc, _), (shape, colour) in values.items():
        add_cell(root, enc, "novel-shapes", "0", shape)
        add_cell(root, enc, "novel-colours", "0", colour)
    for (enc, attack), (shape, colour) in robust.items():
        add_cell(root, enc, "novel-shapes", "1/255", shape, attack=attack)
        add_cell(root, enc, "novel-colours", "1/255", colour, attack=attack)


def test_two_protocols_side_by_side_in_columns_of_their_own(tmp_path):
    two_protocol_grid(tmp_path)
    with pytest.raises(BenchError, match="different protocols.*--protocol a,b"):  # one column would mix them
        table_of(tmp_path)
    tab = table_of(tmp_path, filters=Filters(protocols=("aa-custom", "pgd-100-tga")))
    md = to_markdown(tab)
    # each attack's columns, then the worst case over them per sample (bench.report.worst)
    assert md.splitlines()[0] == (
        "| encoder | novel-shapes clean | novel-shapes 1/255 aa-custom | novel-shapes 1/255 pgd-100-tga "
        "| novel-shapes 1/255 worst case | novel-colours clean | novel-colours 1/255 aa-custom "
        "| novel-colours 1/255 pgd-100-tga | novel-colours 1/255 worst case | average clean | average 1/255 aa-custom "
        "| average 1/255 pgd-100-tga | average 1/255 worst case |")
    assert md_row(md, "clip") == ["**90.0**", "0.0", "5.0", "0.0", "**80.0**", "10.0", "20.0", "10.0", "**85.0**",
                                  "5.0", "12.5", "5.0"]
    assert md_row(md, "fare1") == ["85.0", "**50.0**", "**60.0**", "**50.0**", "75.0", "**40.0**", "**50.0**",
                                   "**40.0**", "80.0", "**45.0**", "**55.0**", "**45.0**"]
    assert any("side by side" in n and "aa-custom, pgd-100-tga" in n for n in tab.notes)
    # the order the protocols are named in is the order of their columns
    flipped = to_markdown(table_of(tmp_path, filters=Filters(protocols=("pgd-100-tga", "aa-custom"))))
    assert "novel-shapes 1/255 pgd-100-tga | novel-shapes 1/255 aa-custom" in flipped.splitlines()[0]
    # one protocol named: the plain layout, the other protocol's rows left out
    single = to_markdown(table_of(tmp_path, filters=Filters(protocols=("aa-custom",))))
    assert "novel-shapes 1/255 |" in single.splitlines()[0] and md_row(single, "fare1")[1] == "**50.0**"


def test_split_columns_still_refuse_one_attack_with_two_settings(tmp_path):
    two_protocol_grid(tmp_path)
    add_cell(tmp_path, "tecoa1", "novel-shapes", "1/255", 0.3, attack="aa-custom", protocol="APGD-CE 10 it × 1 restart",
             steps=10)
    with pytest.raises(BenchError, match="different protocols.*re-run one set"):
        table_of(tmp_path, filters=Filters(protocols=("aa-custom", "pgd-100-tga")))


def test_split_columns_mark_sanity_flags_of_their_own_protocol(tmp_path):
    two_protocol_grid(tmp_path)
    add_cell(tmp_path, "fare1", "novel-shapes", "1/255", 0.6, attack="pgd-100-tga",
             extra_rows=[{"metric": "sanity:more-iterations", "value": 0.0}], started_at="2026-01-02T00:00:00+00:00")
    tab = table_of(tmp_path, filters=Filters(protocols=("aa-custom", "pgd-100-tga")))
    flagged = {(enc, col.dataset, col.eps_label) for (enc, col) in tab.flags}
    assert flagged == {("fare1", "novel-shapes", "1/255 pgd-100-tga"), ("fare1", "average", "1/255 pgd-100-tga")}


def test_cli_report_two_protocols(tmp_path, capsys):
    two_protocol_grid(tmp_path)
    assert main(["report", "--out", str(tmp_path), "--protocol", "aa-custom,pgd-100-tga", "--html"]) == 0
    out = capsys.readouterr().out
    assert "| novel-shapes 1/255 aa-custom | novel-shapes 1/255 pgd-100-tga |" in out
    csv = pd.read_csv(tmp_path / "report" / "table.csv", header=[0, 1], index_col=0)
    assert csv.loc["fare1", ("average", "1/255 pgd-100-tga")] == 55.0
    assert csv.loc["clip", ("novel-shapes", "1/255 aa-custom")] == 0.0
    for name in ("accuracy_vs_eps.png", "datasets.png", "tradeoff.png", "report.html"):
        assert (tmp_path / "report" / name).stat().st_size > 0


def test_refuses_several_suites(tmp_path):
    add_cell(tmp_path, "clip", "novel-shapes", "0", 0.9)
    add_cell(tmp_path, "clip", "cifar10", "0", 0.9, suite="paper")
    with pytest.raises(BenchError, match="several suites"):
        table_of(tmp_path)
    assert table_of(tmp_path, filters=Filters(suites=("paper",))).suite == "paper"


def test_latest_run_wins_and_mixed_sample_sets_are_warned(tmp_path):
    add_cell(tmp_path, "clip", "novel-shapes", "0", 0.5, started_at="2026-01-01T00:00:00+00:00")
    add_cell(tmp_path, "clip", "novel-shapes", "0", 0.7, n=100, started_at="2026-01-02T00:00:00+00:00")
    add_cell(tmp_path, "clip", "novel-shapes", "4/255", 0.1)
    tab = table_of(tmp_path)
    assert md_row(to_markdown(tab), "clip")[0] == "70.0"
    assert any("mixes sample sets (n=100 seed=0, n=200 seed=0)" in n for n in tab.notes)
    assert md_row(to_markdown(table_of(tmp_path, filters=Filters(n_samples=(200,)))), "clip")[0] == "50.0"


def test_a_constant_answer_is_named_not_read_as_robustness(tmp_path):
    """An encoder that answers one class for 92 % of the images keeps its accuracy under any attack; the report
    says so. One answering the right class (a balanced spread of answers) is not named."""
    n, labels = 100, [i % 4 for i in range(100)]
    collapsed = [(y, 2 if i < 92 else 3) for i, y in enumerate(labels)]
    for eps, value in (("0", 0.25), ("4/255", 0.25)):
        add_cell(tmp_path, "tecoa4", "novel-shapes", eps, value, n=n, predictions=collapsed)
        add_cell(tmp_path, "fare4", "novel-shapes", eps, value, n=n, predictions=[(y, y) for y in labels])
    notes = [note for note in table_of(tmp_path).notes if note.startswith("constant answers")]
    assert notes == ["constant answers: tecoa4 gives one class for most clean images on novel-shapes (92.0 %); there "
                     "its accuracy, clean and robust, is that class's share of the data, not robustness"]
    assert not [note for note in build_table(Store(tmp_path).rows()).notes if note.startswith("constant")]  # no store


def test_headline_metric_is_data_driven(tmp_path):
    extra = [{"metric": "bleu4", "value": 0.3}]
    add_cell(tmp_path, "clip", "coco", "0", 1.155, task="coco-captioning", metric="cider", extra_rows=extra)
    add_cell(tmp_path, "clip", "coco", "4/255", 0.031, task="coco-captioning", metric="cider", extra_rows=extra,
             attack="ensemble")
    add_cell(tmp_path, "clip", "things", "0", 0.4, task="newtask", metric="score")
    tab = table_of(tmp_path)
    md = to_markdown(tab)
    assert "coco clean" in md and md_row(md, "clip")[:2] == ["115.5", "3.1"]  # CIDEr shown ×100, as in papers
    assert {c.metric for c in tab.columns} == {"cider", "score"}
    assert any("CIDEr" in n for n in tab.notes)
    tab = table_of(tmp_path, filters=Filters(tasks=("coco-captioning",), metric_overrides={"coco-captioning": "bleu4"}))
    assert md_row(to_markdown(tab), "clip")[0] == "0.3"  # unknown metric: stored scale


def test_ambiguous_metric_asks_for_an_override(tmp_path):
    add_cell(tmp_path, "clip", "things", "0", 0.4, task="newtask", metric="alpha", extra_rows=[{"metric": "beta"}])
    with pytest.raises(BenchError, match="--metric newtask=METRIC"):
        table_of(tmp_path)


def test_lower_is_better_metric_marks_the_minimum(tmp_path):
    for enc, v in (("clip", 0.9), ("fare4", 0.2)):
        add_cell(tmp_path, enc, "strings", "4/255", v, task="targeted", metric="success_rate")
    assert md_row(to_markdown(table_of(tmp_path)), "fare4") == ["**20.0**"]


def test_wilson_and_bootstrap_intervals(tmp_path):
    add_cell(tmp_path, "clip", "novel-shapes", "0", 0.5, n=400)
    wilson = table_of(tmp_path, ci="wilson")
    md = to_markdown(wilson)
    assert md_row(md, "clip") == ["50.0 [45.1, 54.9]"]
    boot = table_of(tmp_path, ci="bootstrap")
    lo, hi = boot.interval("clip", boot.columns[0])
    assert lo < 50 < hi and abs((hi - lo) - 9.8) < 1.5  # close to Wilson's width for n = 400, p = 0.5
    assert any("bootstrap" in n for n in boot.notes)
    assert "95 % intervals: Wilson score intervals from the stored rows" in wilson.notes


def test_stored_intervals_of_a_mean_are_not_called_wilson(tmp_path):
    """A captioning task stores a bootstrap interval of the mean CIDEr: the note says what is shown."""
    add_cell(tmp_path, "clip", "coco", "0", 1.155, task="coco-captioning", metric="cider")
    add_cell(tmp_path, "clip", "novel-shapes", "0", 0.5)
    notes = table_of(tmp_path, ci="wilson").notes
    assert ("95 % intervals: those stored with the rows (a percentile bootstrap of the mean for cider; Wilson score "
            "for the proportions)") in notes


def test_bootstrap_falls_back_when_records_do_not_match(tmp_path):
    add_cell(tmp_path, "clip", "novel-shapes", "0", 0.5, records=False)
    tab = table_of(tmp_path, ci="bootstrap")
    assert tab.interval("clip", tab.columns[0]) == (43.1, 56.9)  # the stored Wilson interval
    assert any("unavailable: zeroshot/novel-shapes" in n for n in tab.notes)


def test_failed_sanity_checks_are_marked_and_listed(tmp_path):
    ok = [{"metric": "sanity:robust_le_clean", "value": 1.0}]
    bad = [{"metric": "sanity:eps_monotone", "value": 0.0}]
    add_cell(tmp_path, "clip", "novel-shapes", "0", 0.9)
    add_cell(tmp_path, "clip", "novel-shapes", "4/255", 0.1, extra_rows=ok)
    add_cell(tmp_path, "clip", "novel-colours", "0", 0.8)
    add_cell(tmp_path, "clip", "novel-colours", "4/255", 0.3, extra_rows=bad,
             card_extra={"sanity": {"eps_monotone": {"passed": False, "robust_2": 0.2, "robust_4": 0.3}}})
    tab = table_of(tmp_path)
    md = to_markdown(tab)
    assert md_row(md, "clip") == ["90.0", "10.0", "80.0", "30.0†", "85.0", "20.0†"]  # the average inherits it
    from bench.report.build import markdown_report

    text = markdown_report(tab)
    assert "Failed sanity checks" in text and "eps_monotone" in text and '"robust_4": 0.3' in text
    assert "robust_le_clean" not in text


def test_nonfinite_samples_are_flagged(tmp_path):
    add_cell(tmp_path, "clip", "novel-shapes", "4/255", 0.1, extra_rows=[{"metric": "nonfinite_samples", "value": 3.0}])
    tab = table_of(tmp_path)
    assert tab.flag_list[0].check == "nonfinite" and "3 sample(s)" in tab.flag_list[0].detail


def test_latex_table(tmp_path):
    standard_grid(tmp_path)
    add_cell(tmp_path, "simclip-siamese4", "novel-shapes", "0", 0.8)
    tex = to_latex(table_of(tmp_path, ci="wilson"))
    assert tex.count(r"\toprule") == 1 and r"\bottomrule" in tex and r"\end{tabular}" in tex
    assert r"\multicolumn{3}{c}{novel-shapes}" in tex and r"\cmidrule(lr){2-4}" in tex
    assert r"\textbf{90.0}" in tex and r"\scriptsize[" in tex and "accuracy (\\%)" in tex
    assert "\nsimclip-siamese4 & 80.0" in tex  # rows in registry order, hyphen kept
    assert "begin{tabular}{l" + "r" * 9 + "}" in tex


def test_several_tasks_get_a_task_header(tmp_path):
    add_cell(tmp_path, "clip", "novel-shapes", "0", 0.9)
    add_cell(tmp_path, "clip", "coco", "0", 1.1, task="coco-captioning", metric="cider")
    tex = to_latex(table_of(tmp_path))
    assert r"\multicolumn{1}{c}{zeroshot}" in tex and r"\multicolumn{1}{c}{coco-captioning}" in tex


def test_cli_report_writes_tables_and_figures(tmp_path, capsys):
    standard_grid(tmp_path)
    assert main(["report", "--out", str(tmp_path), "--ci", "--encoder", "fare4,clip"]) == 0
    out = tmp_path / "report"
    for name in ("table.md", "table.csv", "table.tex", "accuracy_vs_eps.png", "accuracy_vs_eps.svg", "tradeoff.png",
                 "tradeoff.svg", "datasets.png", "datasets.svg"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "accuracy_vs_eps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "tradeoff.svg").read_bytes()[:500]
    csv = pd.read_csv(out / "table.csv", header=[0, 1], index_col=0)
    assert csv.loc["fare4", ("novel-shapes", "4/255")] == 40.0 and csv.loc["clip", ("average", "clean")] == 85.0
    assert ("novel-shapes", "4/255 ci_low") in csv.columns
    assert "| clip |" in capsys.readouterr().out

    assert main(["report", "--out", str(tmp_path), "--encoder", "fare4", "--dataset", "novel-shapes"]) == 0
    assert "| clip |" not in capsys.readouterr().out


def test_cli_report_training_curves_of_evaluated_encoders(tmp_path, capsys):
    add_cell(tmp_path, "fare4", "novel-shapes", "0", 0.8, encoder_sha256="f" * 64)
    cache = tmp_path / "cache"
    for name, sha in (("fare4-micro-aaa", "f" * 64), ("tecoa4-micro-bbb", "e" * 64)):
        d = cache / "encoders" / name
        d.mkdir(parents=True)
        (d / "card.json").write_text(json.dumps({"encoder": name.split("-")[0], "method": "fare", "eps": "4/255",
                                                 "sha256": sha, "config": {"steps": 3, "lr": 1e-4},
                                                 "final_health": {"cos_to_original": 0.9, "spread": 0.07},
                                                 "collapsed_at_step": 2}))
        pd.DataFrame({"step": [1, 2, 3], "lr": [1e-4] * 3, "loss": [3.0, 2.0, 1.0], "adv_loss": [4.0, 3.0, 2.0],
                      "cos_to_original": [1.0, 0.95, 0.9], "spread": [0.08, 0.075, 0.07],
                      "seconds": [1, 2, 3]}).to_csv(d / "train_log.csv", index=False)
    assert main(["report", "--out", str(tmp_path), "--cache", str(cache), "--html"]) == 0
    assert (tmp_path / "report" / "training_curves.png").is_file()
    page = (tmp_path / "report" / "report.html").read_text()
    assert "fare4-micro-aaa" in page and "tecoa4-micro-bbb" not in page  # only the evaluated checkpoint


def test_probe_curves_keep_the_in_distribution_dataset_out_of_the_zero_shot_average():
    probe = pd.DataFrame({"step": [0, 0, 0, 50, 50, 50], "dataset": ["objects", "count", "sketch"] * 2,
                          "clean_accuracy": [0.9, 0.6, 0.4, 0.5, 0.3, 0.1],
                          "robust_accuracy": [0.0, 0.2, 0.0, 0.4, 0.1, 0.1]})
    curves = dict(probe_curves(probe, ("objects",)))
    assert list(curves) == ["zero-shot average", "in-distribution"]
    assert curves["zero-shot average"]["clean_accuracy"].round(6).tolist() == [0.5, 0.2]
    assert curves["in-distribution"]["robust_accuracy"].tolist() == [0.0, 0.4]
    only = probe_curves(probe[probe["dataset"] != "objects"], ("objects",))  # nothing in distribution was probed
    assert [name for name, _ in only] == ["zero-shot average"]
    assert [name for name, _ in probe_curves(probe, ())] == ["zero-shot average"]  # a suite without one


def test_cli_report_draws_the_anchor_figure_from_probe_logs(tmp_path, capsys):
    add_cell(tmp_path, "fare4", "novel-shapes", "0", 0.8, encoder_sha256="f" * 64)
    d = tmp_path / "cache" / "encoders" / "fare4-micro-aaa"
    d.mkdir(parents=True)
    (d / "card.json").write_text(json.dumps({"encoder": "fare4", "method": "fare", "sha256": "f" * 64}))
    pd.DataFrame({"step": [1, 2], "cos_to_original": [0.9, 0.95], "spread": [0.07, 0.07]}).to_csv(
        d / "train_log.csv", index=False)
    pd.DataFrame({"step": [0, 0, 2, 2], "dataset": ["objects", "novel-shapes"] * 2,
                  "clean_accuracy": [0.9, 0.8, 0.7, 0.6], "robust_accuracy": [0.0, 0.0, 0.3, 0.2],
                  "iterations": 10}).to_csv(d / "probe_log.csv", index=False)
    assert main(["report", "--out", str(tmp_path), "--cache", str(tmp_path / "cache")]) == 0
    assert (tmp_path / "report" / "anchor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "probe: in-distribution" in (tmp_path / "report" / "anchor.svg").read_text()


def test_run_card_shows_provenance(tmp_path, capsys):
    run_id = add_cell(tmp_path, "clip", "novel-shapes", "4/255", 0.1,
                      extra_rows=[{"metric": "sanity:eps_monotone", "value": 0.0}],
                      card_extra={"sanity": {"eps_monotone": "robust accuracy rose from 2/255 to 4/255"},
                                  "finished_at": "2026-01-01T00:01:00+00:00"})
    # a check across cells, stored as a derived run whose card names the cells it compared
    derived = tmp_path / "runs" / f"sanity-{run_id}-abcdef"
    derived.mkdir()
    row = pd.read_csv(tmp_path / "runs" / run_id / "rows.csv").iloc[:1].assign(
        run_id=derived.name, metric="sanity:eps-monotone", value=1.0)
    row.to_csv(derived / "rows.csv", index=False)
    (derived / "card.json").write_text(json.dumps({"kind": "sanity", "cells": ["clean-run", run_id], "sanity": [
        {"name": "eps-monotone", "passed": True, "details": {"accuracy": 0.1, "previous_accuracy": 0.9}}]}))
    assert main(["report", "--out", str(tmp_path), "--run", run_id[:22]]) == 0
    text = capsys.readouterr().out
    for needed in (run_id, "configuration", "encoder_sha256", "APGD-CE 100 it × 1 restart", "git_sha", "abc123",
                   "version torch", "2.14.1", "compute_seconds", "finished_at", "per-sample records  200",
                   "eps_monotone (FAILED)", "robust accuracy rose", f"eps-monotone (passed; run {derived.name})",
                   '"previous_accuracy": 0.9'):
        assert needed in text, needed


def test_run_card_unknown_id_is_a_one_line_error(tmp_path, capsys):
    run_id = add_cell(tmp_path, "clip", "novel-shapes", "0", 0.9)
    assert main(["report", "--out", str(tmp_path), "--run", run_id[:-1] + "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "did you mean" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--metric", "zeroshot"], "TASK=METRIC"),
    (["--suite", "nope"], "no results to report"),
])
def test_cli_report_bad_input(tmp_path, capsys, args, message):
    add_cell(tmp_path, "clip", "novel-shapes", "0", 0.9)
    assert main(["report", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_rows_of_another_engine_version_never_mix_in(tmp_path):
    """A cell computed by an older attack engine (whose numbers may differ) is left out of the table, with a note,
    and reported on its own with --engine-version."""
    standard_grid(tmp_path)
    add_cell(tmp_path, "tecoa4", "novel-shapes", "4/255", 0.5, engine_version="2000.1")
    tab = table_of(tmp_path)
    assert "tecoa4" not in tab.encoders
    assert any("2 stored row(s)" in n and "2000.1" in n and "--engine-version" in n for n in tab.notes)
    old = build_table(Store(tmp_path).rows(), Filters(engine_version="2000.1"))
    assert old.encoders == ["tecoa4"]
