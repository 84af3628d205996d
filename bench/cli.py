"""The ``bench`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from attacks.protocol_files import is_protocol_file
from bench import check_command, runner
from bench.core.eps import parse_eps
from bench.core.errors import BenchError
from bench.listing import listing
from bench.options import split_list
from bench.report import command as report_command
from bench.report import table, to_markdown
from bench.report.render import legend
from bench.sharding import relaunch_with_torchrun
from bench.sweep import command as sweep_command
from bench.train import command as train_command


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="micro", help="suite to run (default: micro; see `bench list suites`)")
    p.add_argument("--encoder", action="append", metavar="NAME",
                   help="encoder(s), repeatable or comma-separated (default: clip; see `bench list encoders`): a "
                   "registered NAME, hf-hub:ORG/REPO (any whole open_clip CLIP, named ORG/REPO in tables) or "
                   "NAME=SOURCE (SOURCE: an image-tower file, a URL, hf-hub:ORG/REPO[/FILE] or train); any of them "
                   "under a test-time defence with +DEFENCE[:OPTION=VALUE…] (clip+ttc; see `bench list defences`)")
    p.add_argument("--base", metavar="ARCH/TAG",
                   help="what NAME=SOURCE towers go onto: micro, ARCH/TAG (ViT-B-32/openai) or ARCH/hf-hub:ORG/REPO "
                   "(default: the suite's base)")
    p.add_argument("--attack", default="apgd", metavar="NAME",
                   help="attack protocol (default: apgd; `none` = clean only; see `bench list attacks`), or a "
                   "protocol file of your own (./my-protocol.toml; the schema of attacks/presets/*.toml)")
    p.add_argument("--eps", action="append", metavar="EPS",
                   help="ℓ∞ budget as a fraction of the pixel range, repeatable: 4/255 or 0.0157 (not 4)")
    p.add_argument("--task", action="append", metavar="NAME", help="task(s) (default: the suite's)")
    p.add_argument("--dataset", action="append", metavar="NAME", help="restrict to these datasets")
    p.add_argument("--n-samples", type=int, metavar="N", help="samples per dataset (default: the suite's)")
    p.add_argument("--seed", type=int, default=0, help="selects the samples and every random start (default: 0)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results directory (default: results/)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default: cpu)")
    p.add_argument("--batch-size", type=int, metavar="N", help="images per attack batch (default: the suite's)")
    p.add_argument("--force", action="store_true", help="recompute cells already in the store")
    p.add_argument("--no-train", action="store_true",
                   help="fail instead of training a robust encoder whose checkpoint is missing")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "fp16", "bf16"],
                   help="attack arithmetic on a GPU (default fp32; scoring is always fp32)")
    p.add_argument("--attack-backend", default="native", choices=["native", "autoattack", "torchattacks"],
                   help="run the protocol with the native engine (default) or, to cross-check it, through "
                   "pyautoattack or torchattacks (fp32, slower)")
    p.add_argument("--data-root", type=Path, metavar="DIR",
                   help="paper suites: local datasets (wds_<name>/ copies of the CLIP_benchmark webdatasets, "
                   "imagenet/val/<wnid>/, torchvision CIFAR/STL); default $BENCH_DATA_ROOT, then the hub cache")
    p.add_argument("--encoder-weights", action="append", metavar="NAME=WHERE",
                   help="paper suites: load NAME from a file, URL, hf-hub:org/repo[/file] or `train` (paper recipe)")
    p.add_argument("--plan", action="store_true",
                   help="print the cost estimate (passes, FLOPs, timing on this device) and stop")
    p.add_argument("--nproc", type=int, default=1,
                   help="processes on this host, each with a share of the samples (torchrun; one per GPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Adversarial robustness benchmark for CLIP image "
                                     "encoders (zero-shot classification on the micro suite).")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="evaluate encoders under attack and store the results")
    _add_run_args(p)

    p = sub.add_parser("sweep", help="spread a grid of cells over many jobs (Slurm or this machine) through "
                       "submitit; done cells are skipped, killed or preempted jobs resume")
    _add_run_args(p)
    sweep_command.add_sweep_arguments(p)

    p = sub.add_parser("status", help="a sweep's cells (done, running, failed, missing) and its progress and ETA")
    sweep_command.add_status_arguments(p)

    p = sub.add_parser("report", help="tables (Markdown, CSV, LaTeX), plots and an HTML page from the stored "
                       "results; --run RUN_ID shows one result's provenance")
    report_command.add_arguments(p)

    p = sub.add_parser("check", help="regression check: re-run (or read) the cells of a baseline file and fail when "
                       "a number moved beyond the measured noise")
    check_command.add_arguments(p)

    p = sub.add_parser("train", help="adversarially fine-tune a robust encoder (FARE, TeCoA, Sim-CLIP) explicitly; "
                       "`bench run` also trains missing ones on demand")
    train_command.add_arguments(p)

    p = sub.add_parser("list", help="list encoders, attacks, tasks, suites, training objectives, encoder sources and "
                       "test-time defences")
    p.add_argument("what", nargs="?", choices=["encoders", "attacks", "tasks", "suites", "objectives", "sources",
                                               "defences"], help="one kind only")
    return parser


def run_request(args):
    """The ``RunRequest`` the selection flags of ``bench run`` (and ``bench sweep``) describe."""
    return runner.RunRequest(
        suite=args.suite, encoders=split_list(args.encoder) or ("clip",), attack=attack_argument(args.attack),
        eps=tuple(parse_eps(e) for e in split_list(args.eps)), tasks=split_list(args.task),
        datasets=split_list(args.dataset), n_samples=args.n_samples, seed=args.seed, out=args.out,
        device=args.device, batch_size=args.batch_size, force=args.force, allow_training=not args.no_train,
        progress=not args.no_progress, precision=args.precision, backend=args.attack_backend,
        data_root=args.data_root,
        encoder_weights=tuple(args.encoder_weights or ()), plan_only=args.plan, base=args.base,
    )


def attack_argument(text: str) -> str:
    """``--attack`` as the request carries it: a protocol file by its absolute path (a sweep's jobs may start
    elsewhere), a name as typed."""
    return str(Path(text.strip()).expanduser().resolve()) if is_protocol_file(text) else text


def cmd_run(args) -> int:
    rows = runner.run(run_request(args))
    if args.plan or int(os.environ.get("RANK", "0")) != 0:
        return 0
    tab = table(rows, ci="wilson")  # n is small on a CPU: the interval is part of the number
    print(to_markdown(tab), end="")
    print("".join(f"- {note}\n" for note in legend(tab)), end="")
    print(f"results in {args.out}/runs; `bench report --out {args.out}` for tables and plots")
    return 0


def cmd_report(args) -> int:
    return report_command.run(args)


def cmd_check(args) -> int:
    return check_command.run(args)


def cmd_sweep(args) -> int:
    return sweep_command.run_sweep(args, run_request(args))


def cmd_status(args) -> int:
    return sweep_command.run_status(args)


def cmd_list(args) -> int:
    print(listing(args.what), end="")
    return 0


def cmd_run_sharded(args, argv: list[str]) -> int:
    """``bench run --nproc N``: the same command under torchrun, each process with a share of the samples."""
    if args.nproc < 1:
        raise BenchError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return relaunch_with_torchrun(args.nproc, argv)
    return cmd_run(args)


def cmd_train(args, argv: list[str]) -> int:
    return train_command.run(args, argv)


COMMANDS = {"run": cmd_run, "report": cmd_report, "check": cmd_check, "list": cmd_list, "sweep": cmd_sweep,
            "status": cmd_status}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args, argv)
        if args.command == "run":
            return cmd_run_sharded(args, argv)
        return COMMANDS[args.command](args)
    except BenchError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished batches are saved; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
