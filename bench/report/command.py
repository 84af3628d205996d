"""`bench report` arguments and command."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.options import split_list as names
from bench.report.build import ReportRequest, markdown_report, write_report
from bench.report.metrics import parse_metric_overrides
from bench.report.runcard import describe_run
from bench.report.select import Filters


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("results"), help="results directory to read (default: results/)")
    p.add_argument("--suite", action="append", help="only these suites (a report shows one suite)")
    p.add_argument("--task", action="append", help="only these tasks")
    p.add_argument("--encoder", action="append", help="only these encoders")
    p.add_argument("--dataset", action="append", help="only these datasets")
    p.add_argument("--protocol", action="append", metavar="ATTACK",
                   help="only these attack protocols (plus the clean results); needed when a column has several")
    p.add_argument("--n-samples", action="append", type=int, metavar="N", help="only runs on N samples per dataset")
    p.add_argument("--seed", action="append", type=int, help="only runs with this seed")
    p.add_argument("--metric", action="append", metavar="TASK=METRIC",
                   help="the metric a task's table shows (default: the task's headline metric, e.g. accuracy, "
                   "cider, vqa_accuracy)")
    p.add_argument("--ci", nargs="?", const="wilson", choices=["wilson", "bootstrap"],
                   help="show 95%% confidence intervals: wilson (default, from the rows) or bootstrap (over the "
                   "per-sample records)")
    p.add_argument("--html", action="store_true", help="also write one self-contained page, report.html")
    p.add_argument("--report-dir", type=Path, help="where to write tables, plots and the page "
                   "(default: <out>/report)")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="training cache with the training logs (default: $BENCH_CACHE or ~/.cache/clip-robust-bench)")
    p.add_argument("--run", metavar="RUN_ID", help="instead: show the full provenance of one run (id or a unique "
                   "prefix)")
    p.add_argument("--engine-version", metavar="VERSION",
                   help="report rows computed by this attack-engine version (default: the installed one; rows of "
                   "other versions are counted in the notes, never mixed in)")


def run(args) -> int:
    if args.run:
        print(describe_run(args.out, args.run))
        return 0
    filters = Filters(names(args.suite), names(args.task), names(args.encoder), names(args.dataset),
                      names(args.protocol), tuple(args.n_samples or ()), tuple(args.seed or ()),
                      parse_metric_overrides(args.metric), engine_version=args.engine_version)
    req = ReportRequest(args.out, args.report_dir or args.out / "report", filters, args.ci, args.html, args.cache)
    tab, written = write_report(req)
    print(markdown_report(tab), end="")
    print(f"wrote {len(written)} files to {req.report_dir}" + (f"; open {req.report_dir / 'report.html'}"
                                                               if args.html else ""))
    return 0
