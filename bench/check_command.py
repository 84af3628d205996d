"""`bench check`: arguments, the run, the printed verdict and the files CI reads. The logic is in ``bench.check``
(comparison), ``bench.check_rebuild`` (encoders and checkpoints), ``bench.check_tolerance`` (what a baseline
records) and ``bench.check_report`` (JUnit XML, Markdown)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.check import (
    DEFAULT_SIGMAS,
    CellResult,
    checkpoint_failures,
    checkpoint_notes,
    compare,
    merge_baseline,
    read_baseline,
    rerun,
    with_checkpoints,
)
from bench.check_rebuild import load_checkpoints, rebuild
from bench.check_report import shown, summary_markdown, write_junit, write_summary
from bench.check_tolerance import POOLING, TrainingNoise, annotate, read_training_noise
from bench.core.errors import BenchError
from bench.encoders.provenance import relative_source
from bench.encoders.sources.train import Trained
from bench.options import split_list as names
from bench.store import Store, writing

EXIT_CODES = """exit status:
  0  every cell within its tolerance
  1  a regression: a cell moved beyond its tolerance, its protocol changed, it is missing, a sanity check started
     failing, an encoder's checkpoint is not the baseline's (without --allow-new-checkpoint), or an encoder could not
     be checked (it needs training: --train)
  2  a usage or input error: a bad option, a missing or malformed baseline, an encoder source that cannot be read
     or reached (a file gone, a hub repository offline, a plugin not installed)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXIT_CODES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--baseline", type=Path, required=True, help="baseline file of tidy rows, e.g. "
                   "results/baselines/micro.csv; its cells say what to run (encoders, datasets, ε, n, seed) and its "
                   "rows' encoder_source what rebuilds each encoder (a registered name, a trained recipe, a tower "
                   "file relative to the baseline or absolute, a URL, an hf-hub: name, a plugin's encoder)")
    p.add_argument("--results", type=Path, metavar="DIR",
                   help="compare the results already under DIR instead of re-running")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where the re-run writes (default: a temporary directory, removed afterwards); every "
                   "cell is recomputed, never reused")
    p.add_argument("--encoder", action="append", help="check only these encoders of the baseline")
    p.add_argument("--dataset", action="append", help="check only these datasets of the baseline")
    p.add_argument("--n-samples", action="append", type=int, metavar="N",
                   help="check only the baseline cells measured on N samples")
    p.add_argument("--train", action="store_true", help="train baseline encoders missing from the training cache "
                   "(about 2 minutes each on the micro suite); without it they make the check fail")
    p.add_argument("--train-override", action="append", metavar="FIELD=VALUE",
                   help="train the baseline's trained encoders with this recipe field changed (repeatable), e.g. "
                   "steps=350 to see a recipe cut to half its steps caught; such an encoder is trained and cached "
                   "apart from the recipe's")
    p.add_argument("--allow-new-checkpoint", action="store_true",
                   help="compare an encoder whose checkpoint (sha256) is not the baseline's instead of failing; a "
                   "note names both (an encoder trained on demand is always compared: training is not bit-identical "
                   "across machines)")
    p.add_argument("--sigmas", type=float, default=DEFAULT_SIGMAS,
                   help=f"tolerance in standard deviations of the measured noise (default {DEFAULT_SIGMAS:g}) for "
                   "cells whose baseline row records no tolerance, and for those --write-baseline records")
    p.add_argument("--junit-xml", type=Path, metavar="FILE",
                   help="write a JUnit XML file: one test case per cell, regressed cells failed with their numbers "
                   "and tolerance")
    p.add_argument("--summary-md", type=Path, metavar="FILE",
                   help="write a Markdown table of every cell (e.g. \"$GITHUB_STEP_SUMMARY\", or a pull-request "
                   "comment); a refreshed baseline cell shows its old → new value")
    p.add_argument("--write-baseline", action="store_true",
                   help="instead of checking: write the re-computed (or --results) cells into the baseline file, "
                   "replacing the same cells and keeping the others, each with its tolerance and why")
    p.add_argument("--training-noise", type=Path, metavar="CSV",
                   help="with --write-baseline: the training noise scripts/measure_training_noise.py measured; the "
                   "cells of the encoders it covers get a training part in their tolerance")
    p.add_argument("--training-sd", choices=POOLING, default="pooled",
                   help="with --training-noise: each cell's own sd across trainings, or the encoder's sd pooled over "
                   "its clean or attacked cells (default: pooled)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def train_overrides(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``--train-override steps=350 --train-override seed=1`` as (field, value) pairs."""
    if not values:
        return ()
    return Trained.parse(":".join(["train", *values])).overrides


def format_results(results: list[CellResult]) -> str:
    lines = [f"{'cell':<66} {'baseline':>8} {'now':>8} {'tol':>6}  verdict"]
    for r in results:
        lines.append(f"{r.name:<66} {shown(r.baseline, r.metric):>8} {shown(r.current, r.metric):>8} "
                     f"{shown(r.tolerance, r.metric):>6}  " + ("ok" if r.ok else "REGRESSED"))
    return "\n".join(lines)


def _select(rows, args):
    if args.encoder:
        rows = rows[rows["encoder"].isin(names(args.encoder))]
    if args.dataset:
        rows = rows[rows["dataset"].isin(names(args.dataset))]
    if args.n_samples:
        rows = rows[rows["n_samples"].isin(args.n_samples)]
    return rows


def _results_dir_rows(args) -> pd.DataFrame:
    if not (args.results / "runs").is_dir():
        raise BenchError(f"no results under {args.results} (expected {args.results / 'runs'})")
    return with_checkpoints(Store(args.results).rows(), args.results)


class Rerun:
    """The baseline's encoders rebuilt and loaded (their checkpoints known), then their cells re-computed."""

    def __init__(self, selected: pd.DataFrame, args):
        self.selected, self.args = selected, args
        self.rebuilt = rebuild(selected, args.baseline.resolve().parent, train_overrides(args.train_override))
        self.loaded, self.untrained = load_checkpoints(self.rebuilt, allow_training=args.train, device=args.device,
                                                       progress=not args.no_progress)

    def rows(self) -> pd.DataFrame:
        args = self.args
        specs = {(r.suite, r.name): r.spec for r in self.rebuilt if r.name not in self.untrained}
        workdir = args.out or Path(tempfile.mkdtemp(prefix="bench-check-"))
        print(f"re-running the baseline's cells ({', '.join(sorted(n for _, n in specs))}; "
              f"{', '.join(sorted(self.selected['dataset'].unique()))}) into {workdir}", file=sys.stderr)
        try:
            return with_checkpoints(rerun(self.selected, specs, workdir, allow_training=args.train, device=args.device,
                                          progress=not args.no_progress), workdir)
        finally:
            if args.out is None:
                shutil.rmtree(workdir, ignore_errors=True)


def write_baseline(args) -> int:
    """Add or refresh cells: from --results (any encoder there) or by re-running the baseline's own cells; each
    compared cell with its tolerance, why, and the value it replaces."""
    baseline = read_baseline(args.baseline) if args.baseline.is_file() else None
    if args.results is None and baseline is None:
        raise BenchError(f"{args.baseline} does not exist: make it from a results directory with --results DIR")
    noise = TrainingNoise(read_training_noise(args.training_noise) if args.training_noise else None,
                          args.training_sd)
    if args.results:
        fresh = _results_dir_rows(args)
    else:
        rebuilt = Rerun(_select(baseline, args), args)
        if rebuilt.untrained:
            raise BenchError("cannot refresh the baseline: " + "; ".join(rebuilt.untrained.values()))
        fresh = rebuilt.rows()
    fresh = _select(fresh, args)
    if fresh.empty:
        raise BenchError("no rows to write (check --results, --encoder and --dataset)")
    fresh = annotate(fresh, baseline, noise, args.sigmas)
    here = args.baseline.resolve().parent
    fresh["encoder_source"] = [relative_source(s, here) for s in fresh["encoder_source"]]
    with writing(args.baseline, "baseline file"):
        args.baseline.parent.mkdir(parents=True, exist_ok=True)
        merge_baseline(baseline, fresh).to_csv(args.baseline, index=False)
    print(f"wrote {fresh['run_id'].nunique()} runs ({len(fresh)} rows) into {args.baseline}")
    return 0


def _not_run(selected: pd.DataFrame, why: dict[str, str], sigmas: float, skipped: str = "") -> list[CellResult]:
    """The selected cells as results that were not compared: failed for the encoders in ``why`` (saying why),
    skipped with the reason ``skipped`` for the others."""
    return [replace(r, reason=why[r.encoder]) if r.encoder in why else replace(r, reason=skipped, skipped=True)
            for r in compare(selected, selected.iloc[0:0], sigmas)]


def _outputs(args, results: list[CellResult], notes: list[str], headline: str, seconds: float) -> None:
    if args.junit_xml:
        write_junit(args.junit_xml, results, seconds)
    if args.summary_md:
        write_summary(args.summary_md, summary_markdown(results, notes, headline))


def run(args) -> int:
    if args.write_baseline:
        return write_baseline(args)
    if args.training_noise:
        raise BenchError("--training-noise applies to --write-baseline (the tolerance a baseline records)")
    t0 = time.time()
    baseline = read_baseline(args.baseline)
    selected = _select(baseline, args)
    if selected.empty:
        raise BenchError(f"no baseline cells left after --encoder/--dataset/--n-samples (baseline has encoders "
                         f"{', '.join(sorted(baseline['encoder'].unique()))})")
    if args.results:
        current, untrained = _results_dir_rows(args), {}
        changed = checkpoint_failures(selected, current, args.allow_new_checkpoint)
    else:
        rerun_ = Rerun(selected, args)
        untrained = rerun_.untrained
        changed = checkpoint_failures(selected, rerun_.loaded, args.allow_new_checkpoint)
        current = None if changed else rerun_.rows()
    if changed:  # stop before anything runs: one line per encoder whose checkpoint is not the baseline's
        print("\n".join(changed.values()))
        results = _not_run(selected, changed, args.sigmas, "not run: the check stopped at a changed checkpoint")
        _outputs(args, results, [], f"bench check: {', '.join(changed)}: checkpoint not the baseline's",
                 time.time() - t0)
        return 1
    results = compare(selected, current, args.sigmas)
    results = [replace(r, reason=f"not checked: {untrained[r.encoder]}") if r.encoder in untrained else r
               for r in results]
    print(format_results(results))
    notes = checkpoint_notes(selected, current)
    for note in notes:
        print(note)
    failed = [r for r in results if not r.ok and r.encoder not in untrained]
    for enc, why in untrained.items():
        print(f"NOT CHECKED {enc}: {why}")
    for r in failed:
        print(f"REGRESSED {r.name}: {r.reason}")
    took = f"{time.time() - t0:.0f} s"
    if failed or untrained:
        headline = f"bench check: {len(failed)} of {len(results)} cells regressed, {len(untrained)} encoder(s) not " \
                   f"checked ({took})"
    else:
        headline = f"bench check: all {len(results)} cell(s) within tolerance ({took})"
    print(headline)
    _outputs(args, results, notes + [f"NOT CHECKED {enc}: {why}" for enc, why in untrained.items()], headline,
             time.time() - t0)
    return 1 if failed or untrained else 0
