"""Tune the micro recipe where the papers tune theirs: on the fine-tuning set only, never on an evaluation dataset.

    python scripts/tune_micro_recipe.py --encoder simclip4 --candidate steps=700,batch_size=16 \
        --candidate steps=500,batch_size=32 [--n-val 200] [--work DIR]

For each candidate (recipe fields as ``name=value``; the rest from the micro recipe) it trains the encoder with
``bench train`` into a directory of its own and measures, on the fine-tuning set's held-out validation split (scenes
of the fine-tuning distribution that training never draws), clean and APGD-CE-100 robust accuracy over the
fine-tuning classes at the training ε, read through the fine-tuning set's own prompts. It prints the micro CLIP's
row first (the reference: no fine-tuning), then one row per candidate with the training time from the card. The
evaluation datasets are never loaded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from attacks.backends import run_classification
from attacks.registry import PROTOCOLS
from bench.core.stats import wilson_interval
from bench.encoders.resolve import resolve_encoder
from bench.micro.train_data import FineTuningData
from bench.suites import get_suite
from tasks.base import attack_seeds
from tasks.zeroshot_model import ZeroShotClassifier


def parse_candidate(text: str) -> dict[str, str]:
    parts = [part for part in text.split(",") if part]
    malformed = [part for part in parts if "=" not in part]
    if malformed:  # one line, not a traceback
        raise SystemExit(f"error: --candidate {text!r}: {malformed[0]!r} is not FIELD=VALUE")
    return {k.strip(): v.strip() for k, _, v in (part.partition("=") for part in parts)}


def train(encoder: str, fields: dict[str, str], out: Path) -> dict:
    if not (out / "card.json").is_file():
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in fields.items()]
        command = [sys.executable, "-m", "bench", "train", "--encoder", encoder, "--out", str(out), "--no-progress"]
        subprocess.run([*command, *flags], check=True)
    return json.loads((out / "card.json").read_text())


@torch.no_grad()
def validation_accuracy(encoder_name: str, eps: float, n_val: int, batch: int = 100) -> tuple[float, float]:
    """Clean and APGD-CE-100 robust accuracy on the fine-tuning set's validation split (fine-tuning classes) of an
    ``--encoder`` value: ``clip`` (the reference) or ``candidate=<tower dir>``."""
    encoder = get_suite("micro").load_encoder(resolve_encoder(encoder_name), "cpu")
    data = FineTuningData(n_val, split="val")
    head = ZeroShotClassifier(encoder, data.class_prompts, "mean")
    clean = robust = 0
    for start in range(0, n_val, batch):
        idx = list(range(start, min(n_val, start + batch)))
        x, y = data.load(idx)
        with torch.enable_grad():
            out = run_classification("native", head, x, y, eps, PROTOCOLS["apgd"], attack_seeds(0, idx), seed=0)
        clean += int(out.clean_correct.sum())
        robust += int(out.robust.sum())
    return clean / n_val, robust / n_val


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="simclip4", help="a micro robust encoder name (its method and ε)")
    p.add_argument("--candidate", action="append", required=True, help="recipe fields, e.g. steps=700,batch_size=16")
    p.add_argument("--n-val", type=int, default=200, help="validation scenes (default 200)")
    p.add_argument("--work", type=Path, default=Path("recipe-tuning"), help="where candidates are trained")
    args = p.parse_args(argv)
    spec = resolve_encoder(args.encoder)
    eps = float(spec.train_eps)
    candidates = [(text, parse_candidate(text)) for text in args.candidate]  # a malformed one stops before any work
    print(f"{'candidate':<48} {'train s':>8} {'clean':>14} {'robust':>14}")
    row("micro CLIP (not fine-tuned)", None, *validation_accuracy("clip", eps, args.n_val), args.n_val)
    for text, fields in candidates:
        out = args.work / f"{args.encoder}-{'-'.join(f'{k}{v}' for k, v in sorted(fields.items()))}"
        t0 = time.time()
        card = train(args.encoder, fields, out)
        clean, robust = validation_accuracy(f"candidate={out}", eps, args.n_val)
        row(text, card.get("wall_seconds", time.time() - t0), clean, robust, args.n_val)
    return 0


def row(label: str, seconds: float | None, clean: float, robust: float, n: int) -> None:
    cells = [f"{100 * v:5.1f} [{100 * lo:4.1f}, {100 * hi:4.1f}]"
             for v in (clean, robust) for lo, hi in [wilson_interval(round(v * n), n)]]
    took = "–" if seconds is None else f"{seconds:.0f}"
    print(f"{label:<48} {took:>8} {cells[0]:>14} {cells[1]:>14}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
