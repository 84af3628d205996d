"""Training noise of `bench check`'s trained cells: how far each baseline cell moves between trainings of the same
recipe that differ only in their seed or thread count, and what tolerance (and power) that gives.

    python scripts/measure_training_noise.py --baseline results/baselines/micro.csv --encoder simclip4 \\
        --encoder fare4 --seeds 0,1,2,3 --threads 2,1 [--seeds-at-other-threads 0,1] [--out results/training-noise]
        [--sigmas 3]
        [--training-sd pooled|cell] [--train-override FIELD=VALUE ...]
        [--variant half-steps=steps=350 --variant no-anchor@simclip4=method=simclip-siamese --attack-iterations 10]

1. **Trainings.** For each encoder × seed × thread count: `bench check --baseline B --encoder E --train
   --train-override seed=S` with torch at T threads and a training cache of its own (<out>/cache/<E>-s<S>-t<T>), so
   every training really trains (the thread count is not part of the cache key); its re-run of the baseline's cells
   of E (the same samples, attack and seed as the baseline's) is kept under <out>/runs/<E>-s<S>-t<T>. Finished
   trainings are read back, not redone. --train-override adds recipe changes to every training (a test's tiny
   recipe); the cells to measure are read from the baseline, so the script follows any redesign of the micro world.
2. **Spread.** Per baseline cell (each task's headline metric): trainings, mean, sd, min, max across trainings;
   the sd pooled per encoder over its clean and its attacked cells (``bench.check_tolerance``); the tolerance that
   gives (evaluation part, training part = sigmas × √2 × sd, total); and for each training whether every cell
   stays within that tolerance of the baseline.
3. **Power** (optional). The baseline with those tolerances (<out>/baseline_with_training_noise.csv) is checked
   against trainings with recipe changes (--variant LABEL=FIELD=VALUE[:FIELD=VALUE…]: half the steps, the anchor
   dropped) and against APGD silently cut to K iterations (--attack-iterations K, the protocol's label kept); the
   cells each one is caught on are listed (from the check's JUnit file).

Writes <out>/training_values.csv (one row per training × cell), <out>/training_noise.csv (one row per cell: what
`bench check --write-baseline --training-noise` reads) and <out>/training_noise.md (the summary, also printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from bench.check import (
    ANY_CHECKPOINT_KEY,
    compared_rows,
    key_of,
    latest_per_sample_set,
    read_baseline,
    with_checkpoints,
)
from bench.check_tolerance import (
    NOISE_KEY,
    POOLING,
    TrainingNoise,
    annotate,
    noise_key,
    pooled_sd,
    training_spread,
)
from bench.cli import main as bench
from bench.core.errors import BenchError
from bench.report.metrics import SANITY_PREFIX, style
from bench.store import Store


@dataclass(frozen=True)
class Training:
    encoder: str
    seed: int
    threads: int

    @property
    def tag(self) -> str:
        return f"{self.encoder}-s{self.seed}-t{self.threads}"


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


@contextlib.contextmanager
def environment(cache: Path, threads: int, log: Path):
    """A training cache of its own, torch at ``threads`` threads, and the check's output into ``log``."""
    before_cache, before_threads = os.environ.get("BENCH_CACHE"), torch.get_num_threads()
    os.environ["BENCH_CACHE"] = str(cache)
    torch.set_num_threads(threads)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield
    finally:
        torch.set_num_threads(before_threads)
        if before_cache is None:
            os.environ.pop("BENCH_CACHE", None)
        else:
            os.environ["BENCH_CACHE"] = before_cache


def check(args, baseline: Path, encoder: str, overrides: list[str], label: str, threads: int,
          cache: str | None = None) -> int:
    """`bench check` of ``encoder``'s baseline cells, trained with ``overrides`` (or found in the training cache
    <out>/cache/<cache>, default <label>), into <out>/runs/<label>; its exit status (0 passed, 1 regressed). Done
    before (a ``done.json`` there): read back, not redone."""
    runs = args.out / "runs" / label
    done = runs / "done.json"
    if done.is_file():
        return json.loads(done.read_text())["status"]
    t0 = time.time()
    command = ["check", "--baseline", str(baseline), "--encoder", encoder, "--train", "--out", str(runs),
               "--junit-xml", str(runs / "junit.xml"), "--no-progress",
               *[f"--train-override={o}" for o in [*args.train_override, *overrides]]]
    with environment(args.out / "cache" / (cache or label), threads, runs / "check.log"):
        status = bench(command)
    if status not in (0, 1):
        sys.exit(f"{label}: bench check failed (status {status}); see {runs / 'check.log'}")
    done.write_text(json.dumps({"status": status, "seconds": round(time.time() - t0, 1), "threads": threads}))
    print(f"{label}: {'within' if status == 0 else 'outside'} the baseline's tolerance "
          f"({time.time() - t0:.0f} s)", flush=True)
    return status


def measured_cells(baseline: pd.DataFrame, encoder: str) -> pd.DataFrame:
    """The baseline cells of ``encoder`` a check compares numerically (headline metrics, not sanity checks)."""
    rows = compared_rows(baseline[baseline["encoder"] == encoder])
    return rows[~rows["metric"].astype(str).str.startswith(SANITY_PREFIX)]


def training_values(args, baseline: pd.DataFrame, trainings: list[Training]) -> pd.DataFrame:
    """One row per (training, baseline cell): the cell's value after that training."""
    out = []
    for t in trainings:
        runs = args.out / "runs" / t.tag
        rows = latest_per_sample_set(with_checkpoints(Store(runs).rows(), runs))
        now = {key_of(r, ANY_CHECKPOINT_KEY): r for r in rows.itertuples()}
        seconds = json.loads((runs / "done.json").read_text())["seconds"]
        for cell in measured_cells(baseline, t.encoder).itertuples():
            r = now.get(key_of(cell, ANY_CHECKPOINT_KEY))
            if r is None:
                sys.exit(f"{t.tag}: the re-run lacks {cell.dataset} {cell.attack} {cell.eps_str}; see {runs}")
            out.append({**{k: getattr(cell, k) for k in NOISE_KEY}, "training": t.tag, "train_seed": t.seed,
                        "threads": t.threads, "value": float(r.value), "baseline": float(cell.value),
                        "encoder_sha256": r.encoder_sha256, "seconds": seconds})
    return pd.DataFrame(out)


def tolerances(args, baseline: pd.DataFrame, spread: pd.DataFrame) -> pd.DataFrame:
    """The baseline with each cell's tolerance from the measured noise (values unchanged), written for --variant."""
    annotated = annotate(baseline, baseline, TrainingNoise(spread, args.training_sd), args.sigmas)
    annotated.to_csv(args.out / "baseline_with_training_noise.csv", index=False)
    return annotated


def judged(values: pd.DataFrame, annotated: pd.DataFrame) -> pd.DataFrame:
    """``values`` with each cell's ``tolerance`` from the annotated baseline and whether it stays ``within`` it."""
    tol = {noise_key(r): r.tolerance for r in annotated.itertuples() if not math.isnan(r.tolerance)}
    out = values.assign(tolerance=[tol[noise_key(v)] for v in values.itertuples()])
    return out.assign(within=(out["value"] - out["baseline"]).abs() <= out["tolerance"] + 1e-12)


def spread_table(spread: pd.DataFrame, annotated: pd.DataFrame, values: pd.DataFrame) -> list[str]:
    tol = {noise_key(r): r for r in annotated.itertuples() if not math.isnan(r.tolerance)}
    within = values.groupby(NOISE_KEY, sort=False)["within"].agg(["sum", "size"])
    lines = ["| encoder | dataset | ε | baseline % | trainings | mean % | sd | min–max % | eval ± | training ± | "
             "total ± | trainings within |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in spread.itertuples():
        t, scale = tol[noise_key(r)], style(r.metric).scale
        ok, n = within.loc[tuple(getattr(r, k) for k in NOISE_KEY)]
        train = "–" if math.isnan(t.tolerance_train) else f"{t.tolerance_train * scale:.1f}"
        lines.append(f"| {r.encoder} | {r.dataset} | {r.eps_str} | {t.value * scale:.1f} | {r.trainings} | "
                     f"{r.mean * scale:.1f} | {r.sd * scale:.2f} | {r.min * scale:.1f}–{r.max * scale:.1f} | "
                     f"{t.tolerance_eval * scale:.1f} | {train} | {t.tolerance * scale:.1f} | {ok}/{n} |")
    return lines


def summary(args, spread: pd.DataFrame, annotated: pd.DataFrame, values: pd.DataFrame) -> str:
    lines = [f"# Training noise ({', '.join(args.encoder)}; seeds {args.seeds}, threads {args.threads})", "",
             f"Tolerance = hypot({args.sigmas:g} × NOISE_RATIO × binomial sd, {args.sigmas:g} × √2 × training sd), "
             f"training sd {args.training_sd}.", "", *spread_table(spread, annotated, values), "",
             "Pooled training sd (points): " + ", ".join(
                 f"{r.encoder} {r.kind} {r.sd * 100:.2f} ({r.cells} cells, ≥ {r.trainings} trainings)"
                 for r in pooled_sd(spread).itertuples()), ""]
    per_training = values.groupby("training", sort=False).agg(within=("within", "all"), seconds=("seconds", "first"))
    lines += ["| training | every cell within tolerance | check seconds (train + evaluate) |", "|---|---|---:|"]
    lines += [f"| {t} | {'yes' if r.within else 'no'} | {r.seconds:.0f} |" for t, r in per_training.iterrows()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def apgd_cut_to(iterations: int):
    """Every APGD run of the protocol engine cut to ``iterations``, its protocol's description untouched (a silent
    iteration cut: what the check must catch by the numbers)."""
    import attacks.protocols as protocols

    real = protocols.apgd
    protocols.apgd = lambda *a, **k: real(*a, **{**k, "n_iter": min(k["n_iter"], iterations)})
    try:
        yield
    finally:
        protocols.apgd = real


def power(args, scratch: Path) -> list[str]:
    """Which cells each variant (recipe change, attack cut) is caught on, against the measured tolerances."""
    lines = ["| variant | encoder | caught | cells caught (baseline → now, tolerance) |", "|---|---|---|---|"]
    # (label, recipe changes, attack context, whether the encoder's first seed's training is reused as it is)
    variants = [(label, spec.split(":"), contextlib.nullcontext, False) for label, _, spec in
                (v.partition("=") for v in args.variant)]
    variants += [(f"apgd-{k}", [], lambda k=k: apgd_cut_to(k), True) for k in args.attack_iterations]
    for label, overrides, context, reuse in variants:
        label, _, only = label.partition("@")  # LABEL@ENCODER: a change that means something for one encoder only
        for encoder in [only] if only else args.encoder:
            trained = Training(encoder, args.seeds[0], args.threads[0]).tag if reuse else None
            changes = [f"seed={args.seeds[0]}"] if reuse else overrides
            with context():
                status = check(args, scratch, encoder, changes, f"{encoder}-{label}", args.threads[0], trained)
            failed = [case for case in ET.parse(args.out / "runs" / f"{encoder}-{label}" / "junit.xml").iter(
                "testcase") if case.find("failure") is not None]
            cells = "; ".join(f"{c.get('name')}: {c.find('failure').get('message').split(':')[0]}" for c in failed)
            lines.append(f"| {label} | {encoder} | {'yes' if status else 'no'} | {cells or '–'} |")
    return lines


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", type=Path, required=True)
    p.add_argument("--encoder", action="append", required=True, help="a trained encoder of the baseline (repeat)")
    p.add_argument("--seeds", type=ints, default=[0, 1, 2, 3], help="training seeds (default 0,1,2,3)")
    p.add_argument("--threads", type=ints, default=[2, 1], help="torch thread counts (default 2,1): the first with "
                   "every seed, the others with --seeds-at-other-threads")
    p.add_argument("--seeds-at-other-threads", type=ints, default=None, metavar="SEEDS",
                   help="the seeds trained at the thread counts after the first (default: every seed)")
    p.add_argument("--out", type=Path, default=Path("results/training-noise"))
    p.add_argument("--sigmas", type=float, default=3.0)
    p.add_argument("--training-sd", choices=POOLING, default="pooled")
    p.add_argument("--train-override", action="append", default=[], metavar="FIELD=VALUE",
                   help="a recipe change for every training (e.g. a test's tiny recipe)")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL[@ENCODER]=FIELD=VALUE[:FIELD=VALUE…]",
                   help="power: a training with these recipe changes (of every encoder, or of ENCODER only), "
                   "checked against the measured tolerance")
    p.add_argument("--attack-iterations", action="append", type=int, default=[], metavar="K",
                   help="power: APGD silently cut to K iterations, checked against the measured tolerance")
    return p.parse_args(argv)


def planned_trainings(args) -> list[Training]:
    """Every seed at the first thread count; the --seeds-at-other-threads (default: every seed) at the others."""
    other = args.seeds if args.seeds_at_other_threads is None else args.seeds_at_other_threads
    return [Training(e, s, t) for e in args.encoder for i, t in enumerate(args.threads)
            for s in (args.seeds if i == 0 else other)]


def run(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    t0 = time.time()
    try:
        baseline = read_baseline(args.baseline)
    except BenchError as error:  # a missing or malformed baseline: one line, as `bench check` gives it
        sys.exit(f"error: {error}")
    missing = [e for e in args.encoder if e not in set(baseline["encoder"])]
    if missing:
        sys.exit(f"not in {args.baseline}: {', '.join(missing)}")
    trainings = planned_trainings(args)
    for t in trainings:
        check(args, args.baseline, t.encoder, [f"seed={t.seed}"], t.tag, t.threads)
    values = training_values(args, baseline, trainings)
    spread = training_spread(values)
    annotated = tolerances(args, baseline, spread)
    values = judged(values, annotated)
    text = summary(args, spread, annotated, values)
    if args.variant or args.attack_iterations:
        text += "\n## Power: what the measured tolerance catches\n\n" + "\n".join(
            power(args, args.out / "baseline_with_training_noise.csv")) + "\n"
    text += f"\nCommand: {' '.join(sys.argv)}; wall time {time.time() - t0:.0f} s.\n"
    values.to_csv(args.out / "training_values.csv", index=False)
    spread.to_csv(args.out / "training_noise.csv", index=False)
    (args.out / "training_noise.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    run()
