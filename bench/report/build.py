"""`bench report`: everything a report directory holds, from the store's rows only.

    <report-dir>/table.md, table.csv, table.tex     the paper-style table (Markdown with notes and failed checks)
    <report-dir>/accuracy_vs_eps.{png,svg}          each task's headline metric (accuracy, CIDEr, ...) against ε
    <report-dir>/tradeoff.{png,svg}                 clean against robust, per encoder
    <report-dir>/datasets.{png,svg}                 per-dataset bars
    <report-dir>/training_curves.{png,svg}          when the report shows encoders trained on this machine
    <report-dir>/anchor.{png,svg}                   for those trained with probes (`bench train --probe-every N`)
    <report-dir>/report.html                        with --html: all of it on one self-contained page
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.core.hub import cache_root
from bench.report.html import Figure, build_html, gallery_images
from bench.report.plots import plot_dataset_bars, plot_metric_vs_eps, plot_tradeoff
from bench.report.render import legend, to_latex, to_markdown, write_csv
from bench.report.sanity import flags_markdown
from bench.report.select import Filters
from bench.report.tables import ReportTable, build_table, suite_in_distribution
from bench.report.training import (
    evaluated_checkpoints,
    find_training_runs,
    plot_anchor,
    plot_training_curves,
    training_summary,
)
from bench.store import Store, writing


@dataclass(frozen=True)
class ReportRequest:
    store: Path
    report_dir: Path
    filters: Filters = Filters()
    ci: str | None = None
    html: bool = False
    cache_root: Path | None = None  # training logs; default $BENCH_CACHE


def markdown_report(tab: ReportTable) -> str:
    return to_markdown(tab) + "".join(f"\n- {n}" for n in legend(tab)) + "\n" + flags_markdown(tab.flag_list)


def write_report(req: ReportRequest) -> tuple[ReportTable, list[Path]]:
    tab = build_table(Store(req.store).rows(), req.filters, req.ci, req.store)
    out = req.report_dir
    written = [out / "table.md", out / "table.tex"]
    with writing(out, "report directory"):  # the first writes tell whether the directory can be written at all
        out.mkdir(parents=True, exist_ok=True)
        written[0].write_text(markdown_report(tab))
        written[1].write_text(to_latex(tab))
    written.append(write_csv(tab, out / "table.csv"))

    figures = [Figure("headline metric vs ε", plot_metric_vs_eps(tab, out / "accuracy_vs_eps")[0])]
    if any(c.eps > 0 for c in tab.columns) and any(c.eps == 0 for c in tab.columns):
        figures.append(Figure("clean vs robust trade-off", plot_tradeoff(tab, out / "tradeoff")[0]))
    figures.append(Figure("per-dataset results", plot_dataset_bars(tab, out / "datasets")[0]))
    runs = find_training_runs(req.cache_root or cache_root(),
                              evaluated_checkpoints(req.store, tab.rows["run_id"].unique()))
    if runs:
        figures.append(Figure("training curves (dotted: embedding collapse)",
                              plot_training_curves(runs, out / "training_curves")[0]))
    if any(r.probe is not None for r in runs):
        figures.append(Figure("why the anchor matters: drift from the original encoder and zero-shot accuracy on "
                              "the probe set during training",
                              plot_anchor(runs, out / "anchor", suite_in_distribution(tab.suite))[0]))
    written += [p for f in figures for p in (f.png, f.png.with_suffix(".svg"))]
    if req.html:
        page = build_html(tab, figures, training_summary(runs) if runs else None, gallery_images(req.store))
        written.append(out / "report.html")
        written[-1].write_text(page)
    return tab, written
