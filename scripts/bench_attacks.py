"""Speed and strength of the attack engine against the libraries people use, in one process on the same samples.

    python scripts/bench_attacks.py [--encoder clip --encoder defended] [--dataset novel-colours] [--n-samples 32]
                                    [--eps 4/255] [--protocol apgd --protocol aa-custom]
                                    [--backend native --backend autoattack --backend torchattacks]
                                    [--threads 2] [--device cpu] [--repeat 1] [--json out.json]

For every encoder × protocol × backend it runs the same protocol on the same images (micro suite, zero-shot) and
prints wall and CPU seconds, samples/s, native's speed-up over each backend (backend time / native time, by wall
clock and by this process's CPU time — the latter is the fairer figure on a shared machine), robust accuracy, the
samples a backend broke that native did not (and the reverse), and the peak memory of the attack (above what was
allocated before it, measured on a probe run with every stage cut to 5 iterations; CUDA: the allocator's peak, CPU:
the profiler's allocation events).

Encoders: registry names (``clip``, ``fare4``, …; robust ones must be cached by ``bench train`` unless
``--allow-training``, which trains them with the suite recipe, ~10 min), ``quick-fare`` (a FARE fine-tune of the
micro CLIP for a few dozen steps, built here and cached in ``--cache-dir``, ~1–2 min once) and ``defended`` (fare4
if cached, else quick-fare). The table says which one ran.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from attacks.backends import BACKENDS, run_classification
from attacks.pgd import pgd
from attacks.protocols import Protocol
from attacks.registry import ATTACKS
from bench.core.checkpoints import load_tensors, save_tensors
from bench.core.eps import parse_eps
from bench.core.errors import NeedsTraining
from bench.encoders.base import ClipEncoder
from bench.encoders.registry import ENCODERS
from bench.micro.encoders import load_micro_clip
from bench.suites import get_suite
from tasks.base import attack_seeds, to_float
from tasks.zeroshot_model import ZeroShotClassifier


def peak_memory(run, device: torch.device) -> int:
    """Peak bytes allocated while ``run()`` executes, above what was allocated before it. CUDA: the caching
    allocator's statistics; CPU: the profiler's allocation events replayed in time order (resident-set sampling
    misses most of it, because the C allocator reuses freed pages)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def memory_probe(protocol: Protocol, iterations: int = 5) -> Protocol:
    """The protocol with every stage cut to a few iterations: the largest batch of each stage is reached in its
    first iterations, and the probe then costs seconds instead of the whole run."""
    stages = tuple(replace(s, iterations=min(s.iterations, iterations)) for s in protocol.stages)
    return replace(protocol, name=f"{protocol.name}-memory-probe", stages=stages)


def quick_fare(base: ClipEncoder, eps: float, steps: int, batch: int, cache_dir: Path, device) -> ClipEncoder:
    """FARE (‖φ(x') − φ_orig(x)‖², inner PGD-3) on the micro train split for ``steps`` steps: a lightly defended
    encoder for timing attacks on mostly robust points, cached by its settings."""
    from bench.micro.data import generate

    base_sha = (base.meta.checkpoint_sha256 or "unknown")[:12]
    path = cache_dir / f"quick-fare-eps{round(eps * 255)}-s{steps}-b{batch}-{base_sha}.safetensors"
    student = copy.deepcopy(base)
    student.meta = replace(base.meta, name="quick-fare", method="fare", train_eps=eps,
                           source=f"scripts/bench_attacks.py quick FARE, {steps} steps × {batch}")
    if path.is_file():
        student.tower.visual.load_state_dict(load_tensors(path))
        return student
    print(f"training quick-fare ({steps} steps × {batch}, PGD-3 at {round(eps * 255)}/255); cached in {path}")
    images = torch.tensor(generate("train", steps * batch).images)
    opt = torch.optim.AdamW(student.tower.parameters(), lr=1e-4, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        x = images[step * batch:(step + 1) * batch].to(device).float().div_(255.0)
        with torch.no_grad():
            target = base(x)

        def inner(x_adv, rows, target=target):
            return ((student(x_adv) - target[rows]) ** 2).sum(dim=1), torch.zeros_like(rows, dtype=torch.bool)

        student.requires_grad_(False)
        x_adv = pgd(inner, x, eps, n_iter=3, step_size=eps / 2, seeds=torch.randint(0, 2**31, (len(x),), generator=g),
                    last_iterate=True).x_adv
        student.tower.requires_grad_(True)
        loss = ((student(x_adv) - target) ** 2).sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    student.requires_grad_(False)
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(path, {k: v.detach().cpu().contiguous() for k, v in student.tower.visual.state_dict().items()})
    return student


def load_encoder(name: str, args, device) -> ClipEncoder:
    if name == "quick-fare":
        return quick_fare(load_micro_clip(str(device)), args.eps.value, args.quick_steps, 64, args.cache_dir, device)
    if name == "defended":
        try:
            return load_encoder("fare4", argparse.Namespace(**{**vars(args), "allow_training": False}), device)
        except NeedsTraining:
            return load_encoder("quick-fare", args, device)
    suite = get_suite("micro")
    return suite.load_encoder(ENCODERS.get(name), str(device), allow_training=args.allow_training)


def timed(backend, model, x, y, eps, protocol, seeds, device):
    """(wall seconds, CPU seconds of this process, outcome) of one protocol run."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = run_classification(backend, model, x, y, eps, protocol, seeds, seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def measure(backends, model, x, y, eps, protocol, seeds, device, repeat: int) -> dict:
    """Per backend: median wall and CPU seconds over ``repeat`` rounds (backends interleaved, so that a change in
    machine load hits all of them), the first outcome, and the peak memory of a short probe run."""
    runs = {b: [] for b in backends}
    for _ in range(repeat):
        for b in backends:
            runs[b].append(timed(b, model, x, y, eps, protocol, seeds, device))
    probe = memory_probe(protocol)
    return {b: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
                peak_memory(lambda b=b: run_classification(b, model, x, y, eps, probe, seeds, seed=0), device),
                rs[0][2]) for b, rs in runs.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", action="append", help="default: clip and defended")
    p.add_argument("--dataset", default="novel-colours")
    p.add_argument("--n-samples", type=int, default=32)
    p.add_argument("--eps", type=parse_eps, default=parse_eps("4/255"))
    p.add_argument("--protocol", action="append", help="default: apgd and aa-custom")
    p.add_argument("--backend", action="append", choices=BACKENDS, help="default: all three")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=1, help="time each run this many times, report the median")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick-steps", type=int, default=60, help="training steps of quick-fare")
    p.add_argument("--cache-dir", type=Path, default=Path("results/bench_attacks_cache"))
    p.add_argument("--allow-training", action="store_true", help="train missing registry encoders (slow)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backends = args.backend or list(BACKENDS)
    if "native" not in backends:
        backends.insert(0, "native")
    suite = get_suite("micro")
    data = suite.load_classification(args.dataset, args.n_samples, args.seed)
    x = to_float(data.images.copy(), device)
    y = torch.as_tensor(data.labels, device=device)
    seeds = attack_seeds(args.seed, data.indices)
    print(f"{args.dataset}, {len(x)} samples, ε = {args.eps.label}, {torch.get_num_threads()} threads on {device}, "
          f"torch {torch.__version__}; load average {os.getloadavg()[0]:.1f} (timings under contention are noisy)")
    header = (f"{'encoder':<22} {'protocol':<10} {'backend':<13} {'wall s':>7} {'cpu s':>7} {'samples/s':>9} "
              f"{'native× wall':>12} {'native× cpu':>11} {'robust %':>8} {'clean %':>7} {'only it broke':>13} "
              f"{'only native':>11} {'peak MB':>8}")
    print(header + "\n" + "-" * len(header))
    results = []
    for name in args.encoder or ["clip", "defended"]:
        encoder = load_encoder(name, args, device)
        label = name if name == encoder.meta.name else f"{name}={encoder.meta.name}"
        model = ZeroShotClassifier.for_data(encoder, data).to(device)
        with torch.enable_grad():  # warm-up: first-call costs are nobody's
            xw = x[:4].clone().requires_grad_(True)
            torch.autograd.grad(model(xw).sum(), xw)
        for proto_name in args.protocol or ["apgd", "aa-custom"]:
            protocol = ATTACKS.get(proto_name)
            measured = measure(backends, model, x, y, args.eps.value, protocol, seeds, device, args.repeat)
            native_wall, native_cpu, _, native = measured["native"]
            for backend, (wall, cpu, peak, out) in measured.items():
                row = {"encoder": label, "source": encoder.meta.source, "protocol": proto_name, "backend": backend,
                       "wall_seconds": wall, "cpu_seconds": cpu, "samples_per_s": len(x) / wall,
                       "native_speedup_wall": wall / native_wall, "native_speedup_cpu": cpu / native_cpu,
                       "robust": float(out.robust.float().mean()), "clean": float(out.clean_correct.float().mean()),
                       "only_backend_broke": int((native.robust & ~out.robust).sum()),
                       "only_native_broke": int((out.robust & ~native.robust).sum()), "peak_bytes": peak}
                results.append(row)
                print(f"{label:<22} {proto_name:<10} {backend:<13} {wall:7.1f} {cpu:7.1f} {row['samples_per_s']:9.2f} "
                      f"{row['native_speedup_wall']:12.2f} {row['native_speedup_cpu']:11.2f} "
                      f"{100 * row['robust']:8.1f} {100 * row['clean']:7.1f} {row['only_backend_broke']:13d} "
                      f"{row['only_native_broke']:11d} {peak / 2**20:8.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
