"""`bench train`: train one robust encoder explicitly, with the suite's recipe and any overrides."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bench.core.eps import parse_eps
from bench.core.errors import BenchError
from bench.encoders.registry import ENCODERS
from bench.options import split_list
from bench.sharding import relaunch_with_torchrun
from bench.suites import get_suite
from bench.train.cache import encoder_dir
from bench.train.loop import train
from bench.train.probe import ProbeConfig, probe_for_suite
from bench.train.recipes import recipe

OVERRIDES = ("steps", "batch_size", "lr", "weight_decay", "warmup_steps", "inner_steps", "inner_momentum",
             "inner_loss", "grad_accum", "n_train", "seed", "checkpoint_every", "optimizer", "sgd_momentum")


def add_arguments(p) -> None:
    p.add_argument("--encoder", required=True, help="robust encoder to train, e.g. simclip4, fare2, tecoa")
    p.add_argument("--suite", default="micro", help="suite whose base model, data and recipe to use (default micro)")
    p.add_argument("--steps", type=int, help="optimiser steps")
    p.add_argument("--batch-size", type=int, help="global batch per step (across processes and accumulation)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, help="weight decay (on weight matrices)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], help="optimiser (the recipe's by default)")
    p.add_argument("--sgd-momentum", type=float, help="SGD momentum (with --optimizer sgd)")
    p.add_argument("--objective-option", action="append", metavar="NAME=VALUE",
                   help="an option of the objective, e.g. pmg-aft: alpha=0.5, beta=1, kl=batchmean (repeatable)")
    p.add_argument("--warmup-steps", type=int, help="linear warmup steps before the cosine decay")
    p.add_argument("--inner-steps", type=int, help="PGD steps of the inner maximisation")
    p.add_argument("--inner-step-size", help="PGD step size, like an ε: 1/255")
    p.add_argument("--inner-momentum", type=float, help="PGD momentum (0 disables)")
    p.add_argument("--inner-loss", choices=["cos", "l2"], help="Sim-CLIP paper variant: inner loss")
    p.add_argument("--grad-accum", type=int, help="micro-batches accumulated per step")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute activations (large towers)")
    p.add_argument("--n-train", type=int, help="training images")
    p.add_argument("--seed", type=int, help="data order and PGD starts")
    p.add_argument("--checkpoint-every", type=int, help="steps between periodic checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the last periodic checkpoint in the output")
    p.add_argument("--out", type=Path, help="output directory (default: the on-demand cache entry for this config)")
    p.add_argument("--fail-on-collapse", action="store_true", help="exit with status 3 if the embedding collapses")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--nproc", type=int, default=1, help="processes on this host (DDP via torchrun; gloo on CPU)")
    p.add_argument("--imagenet-root", help="ImageNet folder for the paper recipe (or BENCH_IMAGENET_ROOT)")
    p.add_argument("--tinyimagenet-root", help="tiny-imagenet-200 folder for the PMG-AFT and TGA-ZSR paper recipes "
                   "(or BENCH_TINYIMAGENET_ROOT)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--probe-every", type=int, metavar="N",
                   help="every N steps (and at 0), zero-shot clean and robust accuracy on a small fixed probe set "
                   "(probe_log.csv; off by default; the weights are the same with or without it)")
    p.add_argument("--probe-samples", type=int, default=32, metavar="N", help="probe images per dataset (default 32)")
    p.add_argument("--probe-iterations", type=int, default=10, metavar="N",
                   help="APGD-CE iterations of the robust probe at the training ε (default 10)")
    p.add_argument("--probe-dataset", action="append", metavar="NAME",
                   help="probe these zero-shot datasets (default: all of the suite's)")


def run(args, argv: list[str]) -> int:
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return relaunch_with_torchrun(args.nproc, argv)
    spec = ENCODERS.get(args.encoder)
    if not spec.robust:
        raise BenchError(f"{spec.name!r} is the undefended encoder; nothing to train (try fare4, tecoa4, simclip4)")
    suite = get_suite(args.suite)
    cfg = recipe(suite.name, spec.method, round(spec.train_eps * 255), suite.data_identity())
    overrides = {k: getattr(args, k) for k in OVERRIDES}
    if args.inner_step_size is not None:
        overrides["inner_step_size"] = parse_eps(args.inner_step_size).value
    if args.grad_checkpointing:
        overrides["grad_checkpointing"] = True
    if args.objective_option:
        overrides["objective_options"] = args.objective_option
    cfg = cfg.with_overrides(**overrides)
    out = args.out or encoder_dir(cfg)
    device = torch.device(args.device)
    base = suite.load_encoder(ENCODERS.get("clip"), str(device))
    data = suite.train_data(cfg, args.tinyimagenet_root if cfg.train_set == "tinyimagenet" else args.imagenet_root)
    outcome = train(cfg, base, data, out, device=device, resume=args.resume, progress=not args.no_progress,
                    fail_on_collapse=args.fail_on_collapse, base_name=base.meta.name,
                    probe=_probe(args, suite, base, cfg.eps, device))
    if outcome.card:
        h = outcome.card["final_health"]
        print(f"{cfg.encoder_name}: {outcome.dir} (sha256 {outcome.card['sha256'][:12]}…) — loss {h['loss']:.4f}, "
              f"cosine to original {h['cos_to_original']:.3f}, spread {h['spread']:.4f}"
              + (f"; COLLAPSED at step {outcome.card['collapsed_at_step']}" if outcome.collapsed else ""))
    return 0


def _probe(args, suite, base, eps: float, device):
    """The training probe `--probe-every` asks for, or None."""
    if args.probe_every is None:
        return None
    for option in ("probe_every", "probe_samples", "probe_iterations"):
        if getattr(args, option) < 1:
            raise BenchError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    known = suite.tasks.get("zeroshot", ())
    datasets = split_list(args.probe_dataset)
    unknown = [d for d in datasets if d not in known]
    if unknown:
        raise BenchError(f"--probe-dataset {unknown[0]!r} is not a zero-shot dataset of the {suite.name} suite "
                         f"(known: {', '.join(known)})")
    config = ProbeConfig(args.probe_every, args.probe_samples, args.probe_iterations, datasets=datasets)
    return probe_for_suite(config, suite, base, eps, device)
