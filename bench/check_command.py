"""`bench check`: arguments, the run, the printed verdict. The logic is in ``bench.check``."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.check import (
    DEFAULT_SIGMAS,
    CellResult,
    checkpoint_notes,
    compare,
    merge_baseline,
    read_baseline,
    rerun,
    with_checkpoints,
)
from bench.core.errors import BenchError
from bench.options import split_list as names
from bench.report.metrics import style
from bench.store import Store, writing


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", type=Path, required=True, help="baseline file of tidy rows, e.g. "
                   "results/baselines/micro.csv; its cells say what to run (encoders, datasets, ε, n, seed)")
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
                   "(minutes each); without it they make the check fail")
    p.add_argument("--sigmas", type=float, default=DEFAULT_SIGMAS,
                   help=f"tolerance in seed-to-seed standard deviations (default {DEFAULT_SIGMAS:g})")
    p.add_argument("--write-baseline", action="store_true",
                   help="instead of checking: write the re-computed (or --results) cells into the baseline file, "
                   "replacing the same cells and keeping the others")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def format_results(results: list[CellResult]) -> str:
    lines = [f"{'cell':<66} {'baseline':>8} {'now':>8} {'tol':>6}  verdict"]
    for r in results:
        s = style(r.metric)
        now = "–" if r.current != r.current else f"{r.current * s.scale:.1f}"
        lines.append(f"{r.name:<66} {r.baseline * s.scale:>8.1f} {now:>8} {r.tolerance * s.scale:>6.1f}  "
                     + ("ok" if r.ok else "REGRESSED"))
    return "\n".join(lines)


def _select(rows, args):
    if args.encoder:
        rows = rows[rows["encoder"].isin(names(args.encoder))]
    if args.dataset:
        rows = rows[rows["dataset"].isin(names(args.dataset))]
    if args.n_samples:
        rows = rows[rows["n_samples"].isin(args.n_samples)]
    return rows


def _current(selected, args) -> tuple:
    """(rows, {encoder: why it could not run}): read from --results, or ``selected`` re-computed."""
    if args.results:
        if not (args.results / "runs").is_dir():
            raise BenchError(f"no results under {args.results} (expected {args.results / 'runs'})")
        return with_checkpoints(Store(args.results).rows(), args.results), {}
    workdir = args.out or Path(tempfile.mkdtemp(prefix="bench-check-"))
    print(f"re-running the baseline's cells ({', '.join(sorted(selected['encoder'].unique()))}; "
          f"{', '.join(sorted(selected['dataset'].unique()))}) into {workdir}", file=sys.stderr)
    try:
        rows, skipped = rerun(selected, workdir, allow_training=args.train, device=args.device,
                              progress=not args.no_progress)
        rows = with_checkpoints(rows, workdir)
    finally:
        if args.out is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows, skipped


def write_baseline(args) -> int:
    """Add or refresh cells: from --results (any encoder there) or by re-running the baseline's own cells."""
    baseline = read_baseline(args.baseline) if args.baseline.is_file() else None
    if args.results is None and baseline is None:
        raise BenchError(f"{args.baseline} does not exist: make it from a results directory with --results DIR")
    if args.results:
        fresh, _ = _current(None, args)
    else:
        fresh, skipped = _current(_select(baseline, args), args)
        if skipped:
            raise BenchError("cannot refresh the baseline: " + "; ".join(skipped.values()))
    fresh = _select(fresh, args)
    if fresh.empty:
        raise BenchError("no rows to write (check --results, --encoder and --dataset)")
    with writing(args.baseline, "baseline file"):
        args.baseline.parent.mkdir(parents=True, exist_ok=True)
        merge_baseline(baseline, fresh).to_csv(args.baseline, index=False)
    print(f"wrote {fresh['run_id'].nunique()} runs ({len(fresh)} rows) into {args.baseline}")
    return 0


def run(args) -> int:
    if args.write_baseline:
        return write_baseline(args)
    t0 = time.time()
    baseline = read_baseline(args.baseline)
    selected = _select(baseline, args)
    if selected.empty:
        raise BenchError(f"no baseline cells left after --encoder/--dataset/--n-samples (baseline has encoders "
                         f"{', '.join(sorted(baseline['encoder'].unique()))})")
    current, skipped = _current(selected, args)
    results = compare(selected, current, args.sigmas)
    print(format_results(results))
    for note in checkpoint_notes(selected, current):
        print(note)
    failed = [r for r in results if not r.ok and r.encoder not in skipped]
    for enc, why in skipped.items():
        print(f"NOT CHECKED {enc}: {why}")
    for r in failed:
        print(f"REGRESSED {r.name}: {r.reason}")
    took = f"{time.time() - t0:.0f} s"
    if failed or skipped:
        print(f"bench check: {len(failed)} of {len(results)} cells regressed, {len(skipped)} encoder(s) not checked "
              f"({took})")
        return 1
    print(f"bench check: all {len(results)} cell(s) within tolerance ({took})")
    return 0
