"""Seed-to-seed noise of the micro benchmark, the figures behind `bench check`'s tolerance.

    python scripts/measure_noise.py [--encoder clip] [--attack apgd] [--eps 2/255 --eps 4/255]
        [--seeds 0,1,2,3] [--n-samples 200] [--subsets 100,50] [--start-seeds 1,2,3] [--weakened 10,2]
        [--out results/noise]

Three measurements, all resumable (finished cells are reused from the store under --out):
1. **seed-to-seed**: `bench run` with each of --seeds (a seed draws both the samples and every random start);
   smaller sample counts (--subsets) are measured on disjoint subsets of the same per-sample records, which is
   exactly what a run over those samples computes (a sample's result depends only on the seed and its index);
2. **starts only**: the samples of the first seed, attacked with the random starts of each of --start-seeds —
   the variation a code change that re-orders random draws (or another CPU's rounding) can cause when, as in
   `bench check`, the samples stay the same;
3. **power**: the same samples under a deliberately weakened APGD (--weakened iteration counts), to show that the
   tolerance catches an attack that lost most of its iterations.

It prints Markdown tables and writes them, with the raw figures, to <out>/noise_summary.md and .csv. Timings on a
shared machine are under contention: re-run on a quiet one for budget figures.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from attacks.protocols import Protocol, Stage
from attacks.registry import ATTACKS
from bench.check import DEFAULT_SIGMAS, NOISE_RATIO, tolerance
from bench.encoders.registry import ENCODERS
from bench.eps import parse_eps
from bench.report.metrics import per_sample_values
from bench.runner import RunRequest, run
from bench.suites import get_suite
from tasks.base import EvalContext
from tasks.registry import TASKS


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def records_of(out: Path, run_id: str) -> pd.DataFrame:
    files = sorted((out / "runs" / run_id / "samples").glob("*.csv"))
    return pd.concat([pd.read_csv(f, dtype={"sample_id": str}) for f in files], ignore_index=True)


def seed_runs(args, eps) -> pd.DataFrame:
    """One row per (seed, dataset, ε, subset size, subset): the accuracy on that subset."""
    out = []
    for seed in args.seeds:
        t0 = time.time()
        rows = run(RunRequest(encoders=(args.encoder,), attack=args.attack, eps=tuple(eps), n_samples=args.n_samples,
                              seed=seed, out=args.out, progress=False))
        print(f"seed {seed}: {time.time() - t0:.0f} s", flush=True)
        acc = rows[rows.metric == "accuracy"]
        for r in acc.itertuples():
            values = per_sample_values("accuracy", records_of(args.out, r.run_id), attacked=r.eps > 0)
            assert abs(values.mean() - r.value) < 1e-9, "per-sample records disagree with the stored row"
            perm = np.random.default_rng([seed, 11]).permutation(len(values))
            for m in [args.n_samples, *args.subsets]:
                for k in range(len(values) // m):
                    out.append({"seed": seed, "dataset": r.dataset, "eps_str": r.eps_str, "n": m, "subset": k,
                                "value": float(values[perm[k * m:(k + 1) * m]].mean()), "seconds": r.seconds})
    return pd.DataFrame(out)


def start_runs(args, eps) -> pd.DataFrame:
    """Robust accuracy of the first seed's samples under other random starts (cached in <out>/start_noise.csv)."""
    cache = args.out / "start_noise.csv"
    done = pd.read_csv(cache, dtype={"eps_str": str}) if cache.is_file() else pd.DataFrame()
    suite = get_suite("micro")
    task = TASKS.get("zeroshot")()
    encoder = suite.load_encoder(ENCODERS.get(args.encoder), "cpu", allow_training=True, progress=False)
    protocol = ATTACKS.get(args.attack)
    rows = done.to_dict("records")
    for dataset in suite.tasks["zeroshot"]:
        data = task.load(suite, dataset, args.n_samples, args.seeds[0])
        for e in eps:
            for s in args.start_seeds:
                if len(done) and ((done.dataset == dataset) & (done.eps_str == e.label) & (done.start_seed == s)
                                  & (done.n == args.n_samples)).any():
                    continue
                t0 = time.time()
                ctx = EvalContext(protocol, e.value, s, torch.device("cpu"))
                recs = []
                for start in range(0, args.n_samples, suite.batch_size):
                    recs += task.evaluate(encoder, data, list(range(start, min(start + suite.batch_size,
                                                                               args.n_samples))), ctx)
                value = float(np.mean([r["robust"] for r in recs]))
                rows.append({"dataset": dataset, "eps_str": e.label, "start_seed": s, "n": args.n_samples,
                             "value": value, "seconds": round(time.time() - t0, 1)})
                pd.DataFrame(rows).to_csv(cache, index=False)
                print(f"starts {s} {dataset} {e.label}: {value:.3f} ({time.time() - t0:.0f} s)", flush=True)
    return pd.DataFrame(rows)


def weakened_runs(args, eps) -> pd.DataFrame:
    """The first seed's cells under APGD cut to k iterations (registered in this process only)."""
    out = []
    for k in args.weakened:
        name = f"apgd-weak{k}"
        if name not in ATTACKS.names():
            ATTACKS.register(name, Protocol(name, f"APGD-CE cut to {k} iterations (noise script only)",
                                            (Stage("apgd", "ce", k),)), "weakened APGD for the power measurement")
        rows = run(RunRequest(encoders=(args.encoder,), attack=name, eps=tuple(eps), n_samples=args.n_samples,
                              seed=args.seeds[0], out=args.out, progress=False))
        acc = rows[(rows.metric == "accuracy") & (rows.eps > 0)]
        out += [{"iterations": k, "dataset": r.dataset, "eps_str": r.eps_str, "value": r.value}
                for r in acc.itertuples()]
    return pd.DataFrame(out)


def summarise(seeds: pd.DataFrame, starts: pd.DataFrame, weak: pd.DataFrame, args) -> str:
    lines = [f"# Noise of the micro benchmark ({args.encoder}, {args.attack}, seeds {args.seeds})", ""]
    g = seeds.groupby(["dataset", "eps_str", "n"])
    tab = g["value"].agg(mean="mean", sd="std", replicates="count").reset_index()
    tab["binomial_sd"] = np.sqrt(tab["mean"] * (1 - tab["mean"]) / tab["n"])
    interior = tab[(tab["mean"] > 0) & (tab["mean"] < 1)]
    ratio = math.sqrt((interior["sd"] ** 2).sum() / (interior["binomial_sd"] ** 2).sum())
    tab["tolerance"] = [tolerance(v, n) for v, n in zip(tab["mean"], tab["n"])]
    lines += ["## Seed-to-seed (samples and starts change)", "",
              "| dataset | ε | n | replicates | mean % | sd (points) | binomial sd | tolerance |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in tab.itertuples():
        lines.append(f"| {r.dataset} | {r.eps_str} | {r.n} | {r.replicates} | {100 * r.mean:.1f} | {100 * r.sd:.2f} "
                     f"| {100 * r.binomial_sd:.2f} | {100 * r.tolerance:.2f} |")
    lines += ["", f"Pooled ratio measured sd / binomial sd over the {len(interior)} cells with 0 < mean < 1: "
              f"**{ratio:.2f}** (the check uses NOISE_RATIO = {NOISE_RATIO}, {DEFAULT_SIGMAS} sd).", ""]
    per_cell = seeds[seeds.n == args.n_samples].groupby(["dataset", "eps_str"])["seconds"].mean()
    lines += [f"Mean compute seconds per cell at n = {args.n_samples}: "
              + ", ".join(f"{d} {e}: {s:.0f}" for (d, e), s in per_cell.items()), ""]
    if len(starts):
        st = starts.groupby(["dataset", "eps_str"])["value"]
        base = seeds[(seeds.seed == args.seeds[0]) & (seeds.n == args.n_samples)].set_index(["dataset", "eps_str"])
        lines += ["## Starts only (same samples, other random starts)", "",
                  "| dataset | ε | seed-0 starts % | other starts % | max |Δ| (samples) |", "|---|---|---:|---:|---:|"]
        for (d, e), vals in st:
            b = float(base.loc[(d, e), "value"].iloc[0]) if (d, e) in base.index else float("nan")
            delta = int(round(max(abs(v - b) for v in vals) * args.n_samples))
            lines.append(f"| {d} | {e} | {100 * b:.1f} | {', '.join(f'{100 * v:.1f}' for v in vals)} | {delta} |")
        lines.append("")
    if len(weak):
        base = seeds[(seeds.seed == args.seeds[0]) & (seeds.n == args.n_samples)].set_index(["dataset", "eps_str"])
        lines += ["## Power: the same samples under a weakened APGD", "",
                  "| dataset | ε | iterations | full APGD % | weakened % | Δ (points) | tolerance | caught |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in weak.itertuples():
            b = float(base.loc[(r.dataset, r.eps_str), "value"].iloc[0])
            tol = tolerance(b, args.n_samples)
            lines.append(f"| {r.dataset} | {r.eps_str} | {r.iterations} | {100 * b:.1f} | {100 * r.value:.1f} | "
                         f"{100 * (r.value - b):+.1f} | {100 * tol:.1f} | {'yes' if r.value - b > tol else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="clip")
    p.add_argument("--attack", default="apgd")
    p.add_argument("--eps", action="append", help="default: 2/255 and 4/255")
    p.add_argument("--seeds", type=ints, default=[0, 1, 2, 3])
    p.add_argument("--n-samples", type=int, default=200)
    p.add_argument("--subsets", type=ints, default=[100, 50], help="smaller sample counts, on disjoint subsets")
    p.add_argument("--start-seeds", type=ints, default=[1, 2, 3])
    p.add_argument("--weakened", type=ints, default=[10, 2], help="APGD iteration counts for the power measurement")
    p.add_argument("--out", type=Path, default=Path("results/noise"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    eps = [parse_eps(e) for e in (args.eps or ["2/255", "4/255"])]
    t0 = time.time()
    seeds = seed_runs(args, eps)
    starts = start_runs(args, eps) if args.start_seeds else pd.DataFrame()
    weak = weakened_runs(args, eps) if args.weakened else pd.DataFrame()
    text = summarise(seeds, starts, weak, args)
    text += f"\nCommand: {' '.join(__import__('sys').argv)}; wall time {time.time() - t0:.0f} s (reused cells count 0)."
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "noise_summary.md").write_text(text + "\n")
    seeds.to_csv(args.out / "noise_seeds.csv", index=False)
    sha = {json.loads(p.read_text())["config"].get("encoder_sha256") for p in (args.out / "runs").glob("*/card.json")}
    print(text)
    print(f"encoder checkpoints seen: {sorted(map(str, sha))}")
    print(f"wrote {args.out / 'noise_summary.md'}")


if __name__ == "__main__":
    main()
