"""Seed-to-seed noise of the micro benchmark: the figures behind `bench check`'s tolerance and sample count.

    python scripts/measure_noise.py [--encoder clip] [--attack apgd] [--eps 4/255 ...] [--seeds 0,1,2,3]
        [--n-samples 200] [--subsets 100,50] [--start-seeds 1] [--weakened 10,2] [--out results/noise]
        [--analyse-only] [--checkpoint SHA-PREFIX]

Measurements (all resumable: finished cells are reused from the store under --out):
1. **seed-to-seed**: `bench run` with each of --seeds (a seed draws both the samples and every random start).
   Smaller sample counts (--subsets) are measured on disjoint subsets of the same per-sample records, which is what
   a run over those samples computes (a sample's result depends only on the seed and its index);
2. **starts only** (--start-seeds): the first seed's samples attacked with other random starts — the variation a
   code change that re-orders random draws, or another CPU's rounding, can cause when the samples stay the same, as
   in `bench check`;
3. **power** (--weakened): the first seed's cells under APGD cut to k iterations (registered in this process
   only), to show which cells the tolerance lets catch a weakened attack.

The analysis reads the store, one encoder checkpoint at a time (default: the checkpoint `clip` loads now; runs of
older checkpoints stay in the store and are analysed with --checkpoint), prints Markdown and writes
<out>/noise_summary.md and <out>/noise_seeds.csv. Timings on a shared machine are under contention: re-run on a
quiet one for budget figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from attacks.protocols import Protocol, Stage
from attacks.registry import ATTACKS
from bench.check import DEFAULT_SIGMAS, NOISE_RATIO, tolerance
from bench.core.eps import parse_eps
from bench.encoders.registry import ENCODERS
from bench.report.bootstrap import read_records
from bench.report.metrics import per_sample_values
from bench.runner import RunRequest, run
from bench.store import Store
from bench.suites import get_suite
from tasks.base import EvalContext
from tasks.registry import TASKS


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def weak_name(k: int) -> str:
    return f"apgd-weak{k}"


def measure(args, eps) -> None:
    for seed in args.seeds:
        t0 = time.time()
        run(RunRequest(encoders=(args.encoder,), attack=args.attack, eps=tuple(eps), n_samples=args.n_samples,
                       seed=seed, out=args.out, progress=False))
        print(f"seed {seed}: {time.time() - t0:.0f} s", flush=True)
    for k in args.weakened:
        if weak_name(k) not in ATTACKS.names():
            ATTACKS.register(weak_name(k), Protocol(weak_name(k), f"APGD-CE cut to {k} iterations (noise script)",
                                                    (Stage("apgd", "ce", k),)), "weakened APGD, noise script only")
        t0 = time.time()
        run(RunRequest(encoders=(args.encoder,), attack=weak_name(k), eps=tuple(eps), n_samples=args.n_samples,
                       seed=args.seeds[0], out=args.out, progress=False))
        print(f"weakened to {k} iterations: {time.time() - t0:.0f} s", flush=True)
    if args.start_seeds:
        start_runs(args, eps)


def start_runs(args, eps) -> None:
    """Robust accuracy of the first seed's samples under other random starts, appended to <out>/start_noise.csv."""
    cache = args.out / "start_noise.csv"
    rows = pd.read_csv(cache, dtype={"eps_str": str}).to_dict("records") if cache.is_file() else []
    suite = get_suite("micro")
    task = TASKS.get("zeroshot")()
    encoder = suite.load_encoder(ENCODERS.get(args.encoder), "cpu", allow_training=True, progress=False)
    sha = encoder.meta.checkpoint_sha256
    done = {(r["checkpoint"], r["dataset"], r["eps_str"], r["start_seed"], r["n"]) for r in rows}
    for dataset in suite.tasks["zeroshot"]:
        data = task.load(suite, dataset, args.n_samples, args.seeds[0])
        for e in eps:
            for s in args.start_seeds:
                if (sha, dataset, e.label, s, args.n_samples) in done:
                    continue
                t0 = time.time()
                ctx = EvalContext(ATTACKS.get(args.attack), e.value, s, torch.device("cpu"))
                recs = []
                for start in range(0, args.n_samples, suite.batch_size):
                    recs += task.evaluate(encoder, data, list(range(start, min(start + suite.batch_size,
                                                                               args.n_samples))), ctx)
                rows.append({"checkpoint": sha, "dataset": dataset, "eps_str": e.label, "start_seed": s,
                             "n": args.n_samples, "value": float(np.mean([r["robust"] for r in recs])),
                             "seconds": round(time.time() - t0, 1)})
                pd.DataFrame(rows).to_csv(cache, index=False)
                print(f"starts {s} {dataset} {e.label}: {rows[-1]['value']:.3f} ({rows[-1]['seconds']:.0f} s)",
                      flush=True)


def stored_rows(args, checkpoint: str) -> pd.DataFrame:
    """Accuracy rows of --encoder under the chosen checkpoint, with each run's checkpoint read from its card."""
    rows = Store(args.out).rows()
    rows = rows[(rows.metric == "accuracy") & (rows.encoder == args.encoder)].copy()
    cards = {r: json.loads((args.out / "runs" / r / "card.json").read_text()) for r in rows.run_id.unique()}
    rows["checkpoint"] = [cards[r].get("config", {}).get("encoder_sha256", "") for r in rows.run_id]
    return rows[rows.checkpoint.str.startswith(checkpoint)]


def seed_table(rows: pd.DataFrame, args) -> pd.DataFrame:
    """One row per (seed, dataset, ε, sample count, subset)."""
    out = []
    for r in rows[(rows.attack.isin([args.attack, "none"])) & rows.seed.isin(args.seeds)
                  & (rows.n_samples == args.n_samples)].itertuples():
        values = per_sample_values("accuracy", read_records(args.out, r.run_id), attacked=r.eps > 0)
        assert abs(values.mean() - r.value) < 1e-9, f"per-sample records of {r.run_id} disagree with its row"
        perm = np.random.default_rng([int(r.seed), 11]).permutation(len(values))
        for m in [args.n_samples, *args.subsets]:
            for k in range(len(values) // m):
                out.append({"seed": r.seed, "dataset": r.dataset, "eps_str": r.eps_str, "n": m, "subset": k,
                            "value": float(values[perm[k * m:(k + 1) * m]].mean()), "seconds": r.seconds})
    return pd.DataFrame(out)


def summarise(rows: pd.DataFrame, seeds: pd.DataFrame, args, checkpoint: str) -> str:
    lines = [f"# Noise of the micro benchmark: {args.encoder} (checkpoint {checkpoint[:12]}), {args.attack}, "
             f"seeds {sorted(seeds.seed.unique().tolist())}", ""]
    tab = seeds.groupby(["dataset", "eps_str", "n"])["value"].agg(mean="mean", sd="std", replicates="count")
    tab = tab.reset_index()
    tab["binomial_sd"] = np.sqrt(tab["mean"] * (1 - tab["mean"]) / tab["n"])
    interior = tab[(tab["mean"] > 0) & (tab["mean"] < 1)]
    ratio = math.sqrt((interior["sd"] ** 2).sum() / (interior["binomial_sd"] ** 2).sum())
    tab["tolerance"] = [tolerance(v, n) for v, n in zip(tab["mean"], tab["n"])]
    lines += ["## Seed-to-seed (samples and random starts change)", "",
              "| dataset | ε | n | replicates | mean % | sd (points) | binomial sd | tolerance |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in tab.itertuples():
        lines.append(f"| {r.dataset} | {r.eps_str} | {r.n} | {r.replicates} | {100 * r.mean:.1f} | {100 * r.sd:.2f} "
                     f"| {100 * r.binomial_sd:.2f} | {100 * r.tolerance:.2f} |")
    lines += ["", f"Pooled ratio of measured to binomial sd over the {len(interior)} cells with 0 < mean < 1: "
              f"**{ratio:.2f}** (`bench check` uses NOISE_RATIO = {NOISE_RATIO} and {DEFAULT_SIGMAS:g} sd).", ""]
    full = seeds[seeds.n == args.n_samples].groupby(["dataset", "eps_str"])["seconds"].agg(["mean", "max"])
    lines += [f"Compute seconds per cell at n = {args.n_samples} (mean / max over seeds, under contention): "
              + ", ".join(f"{d} {e}: {m:.0f} / {x:.0f}" for (d, e), (m, x) in full.iterrows()), ""]
    first = rows[(rows.seed == args.seeds[0]) & (rows.n_samples == args.n_samples)]
    base = first[first.attack == args.attack].set_index(["dataset", "eps_str"])["value"]
    cache = args.out / "start_noise.csv"
    starts = pd.read_csv(cache, dtype={"eps_str": str}) if cache.is_file() else pd.DataFrame()
    starts = starts[starts.checkpoint.str.startswith(checkpoint)] if len(starts) else starts
    if len(starts):
        lines += ["## Starts only (the first seed's samples, other random starts)", "",
                  "| dataset | ε | first seed % | other starts % | max |Δ| (samples) |", "|---|---|---:|---:|---:|"]
        for (d, e), vals in starts.groupby(["dataset", "eps_str"])["value"]:
            b = float(base.get((d, e), math.nan))
            delta = round(max(abs(v - b) for v in vals) * args.n_samples)
            lines.append(f"| {d} | {e} | {100 * b:.1f} | {', '.join(f'{100 * v:.1f}' for v in vals)} | {delta} |")
        lines.append("")
    weak = first[first.attack.str.startswith("apgd-weak")]
    if len(weak):
        lines += ["## Power: the first seed's samples under APGD cut to k iterations", "",
                  "| dataset | ε | k | full APGD % | cut % | Δ (points) | tolerance | caught |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in weak.sort_values(["dataset", "eps_str", "steps"]).itertuples():
            b = float(base[(r.dataset, r.eps_str)])
            tol = tolerance(b, args.n_samples)
            lines.append(f"| {r.dataset} | {r.eps_str} | {r.steps} | {100 * b:.1f} | {100 * r.value:.1f} | "
                         f"{100 * (r.value - b):+.1f} | {100 * tol:.1f} | {'yes' if r.value - b > tol else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="clip")
    p.add_argument("--attack", default="apgd")
    p.add_argument("--eps", action="append", help="repeatable (default: 4/255)")
    p.add_argument("--seeds", type=ints, default=[0, 1, 2, 3])
    p.add_argument("--n-samples", type=int, default=200)
    p.add_argument("--subsets", type=ints, default=[100, 50], help="smaller sample counts, on disjoint subsets")
    p.add_argument("--start-seeds", type=ints, default=[], help="attack seeds for the starts-only measurement")
    p.add_argument("--weakened", type=ints, default=[10, 2], help="APGD iteration counts for the power measurement")
    p.add_argument("--out", type=Path, default=Path("results/noise"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--analyse-only", action="store_true", help="analyse what the store holds; compute nothing")
    p.add_argument("--checkpoint", help="analyse the runs of this checkpoint (sha256 prefix; default: the current)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    eps = [parse_eps(e) for e in (args.eps or ["4/255"])]
    t0 = time.time()
    if not args.analyse_only:
        measure(args, eps)
    checkpoint = args.checkpoint or get_suite("micro").load_encoder(
        ENCODERS.get(args.encoder), "cpu", allow_training=False, progress=False).meta.checkpoint_sha256
    rows = stored_rows(args, checkpoint)
    if rows.empty:
        sys.exit(f"no runs of {args.encoder} with checkpoint {checkpoint[:12]} under {args.out}")
    seeds = seed_table(rows, args)
    text = summarise(rows, seeds, args, rows.checkpoint.iloc[0])
    text += f"\nCommand: {' '.join(sys.argv)}; wall time {time.time() - t0:.0f} s.\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "noise_summary.md").write_text(text)
    seeds.to_csv(args.out / "noise_seeds.csv", index=False)
    print(text)


if __name__ == "__main__":
    main()
