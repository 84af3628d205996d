"""Wall time of a local sweep against the sequential ``bench run`` of the same grid, side by side in one run.

    python scripts/bench_sweep.py [--n-samples N] [--jobs 2] [--encoder clip,fare4] [--eps 2/255 --eps 4/255]
                                  [--work DIR] [--quick-train STEPS]

The grid is the micro suite's three zero-shot datasets × the encoders × the ε (default ``clip,fare4`` × {2/255,
4/255}, the suite's default samples, APGD). Robust encoders missing from the training cache ($BENCH_CACHE) are
trained first with ``bench train`` (the micro recipe, several minutes; timed separately, not part of either figure);
``--quick-train STEPS`` instead plants a few-step training in the recipe's cache entry, for a smoke test only.
Then, each in a fresh store and as its own process:

1. ``bench run`` of the whole grid, with every core (torch's threads);
2. ``bench sweep --launcher local --jobs J``, each job with cores / J threads (OMP_NUM_THREADS), so that the two
   use the same cores;

and prints both wall times, their ratio, and whether the two stores hold the same numbers (metric rows and
per-sample records, timings aside). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

VOLATILE = ["started_at", "seconds", "git_sha", "versions"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-samples", type=int, help="samples per dataset (default: the micro suite's)")
    p.add_argument("--jobs", type=int, default=2, help="sweep jobs (default 2)")
    p.add_argument("--encoder", default="clip,fare4", help="encoders (default clip,fare4)")
    p.add_argument("--eps", action="append", help="budgets (default 2/255 and 4/255)")
    p.add_argument("--attack", default="apgd", help="attack (default apgd)")
    p.add_argument("--work", type=Path, help="where the two stores go (default: a new temporary directory)")
    p.add_argument("--quick-train", type=int, metavar="STEPS",
                   help="smoke test: plant a STEPS-step training of missing robust encoders instead of the recipe")
    return p.parse_args(argv)


def bench(args: list[str], env: dict) -> float:
    """Run ``python -m bench ARGS``; its wall seconds (a failure stops the script with its stderr)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"bench {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def ensure_trained(encoders: list[str], quick: int | None, env: dict) -> None:
    from bench.encoders.registry import ENCODERS
    from bench.micro.suite import training_identity
    from bench.train.cache import encoder_dir, read_card
    from bench.train.recipes import recipe

    for name in encoders:
        spec = ENCODERS.get(name)
        if not spec.robust:
            continue
        target = encoder_dir(recipe("micro", spec.method, round(spec.train_eps * 255), training_identity()))
        if read_card(target) is not None:
            print(f"{name}: trained already ({target})")
            continue
        extra = ["--steps", str(quick), "--batch-size", "8", "--n-train", "32", "--inner-steps", "1",
                 "--out", str(target)] if quick else []
        seconds = bench(["train", "--encoder", name, "--no-progress", *extra], env)
        print(f"{name}: trained in {seconds:.0f} s ({'quick smoke-test training' if quick else 'micro recipe'}), "
              "not counted below")


def records(run_dir: Path) -> pd.DataFrame:
    files = sorted((run_dir / "samples").glob("*.csv"))
    if not files:
        return pd.DataFrame()
    frame = pd.concat([pd.read_csv(p, keep_default_na=False, dtype={"sample_id": str}) for p in files])
    return frame.sort_values("sample_id", ignore_index=True)


def same_numbers(a: Path, b: Path) -> tuple[bool, str]:
    names = sorted(d.name for d in (a / "runs").iterdir())
    if names != sorted(d.name for d in (b / "runs").iterdir()):
        return False, "different run directories"
    for name in names:
        rows_a = pd.read_csv(a / "runs" / name / "rows.csv").drop(columns=VOLATILE)
        rows_b = pd.read_csv(b / "runs" / name / "rows.csv").drop(columns=VOLATILE)
        rec_a, rec_b = records(a / "runs" / name), records(b / "runs" / name)
        if not (rows_a.equals(rows_b) and rec_a.equals(rec_b)) or (len(rec_b) and not rec_b.sample_id.is_unique):
            return False, f"run {name} differs"
    return True, f"{len(names)} runs, rows and per-sample records identical"


def main(argv=None) -> int:
    args = parse_args(argv)
    cores = os.cpu_count() or 1
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    base_env.pop("OMP_NUM_THREADS", None)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    grid = ["--suite", "micro", "--encoder", args.encoder, "--attack", args.attack, "--no-progress"]
    for eps in args.eps or ["2/255", "4/255"]:
        grid += ["--eps", eps]
    if args.n_samples:
        grid += ["--n-samples", str(args.n_samples)]
    ensure_trained(args.encoder.split(","), args.quick_train, base_env)

    sequential = bench(["run", *grid, "--no-train", "--out", str(work / "run")], base_env)
    per_job = {**base_env, "OMP_NUM_THREADS": str(max(1, cores // args.jobs))}
    swept = bench(["sweep", *grid, "--launcher", "local", "--jobs", str(args.jobs), "--out", str(work / "sweep")],
                  per_job)
    equal, detail = same_numbers(work / "run", work / "sweep")
    print(f"grid: {' '.join(grid)}; {cores} cores")
    print(f"sequential bench run ({cores} threads): {sequential:.1f} s")
    print(f"bench sweep --launcher local --jobs {args.jobs} ({per_job['OMP_NUM_THREADS']} thread(s) per job): "
          f"{swept:.1f} s")
    print(f"ratio sweep / run: {swept / sequential:.2f}")
    print(f"same numbers: {'yes' if equal else 'NO'} ({detail}); stores in {work}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
