"""What a run costs and how it uses the device: the forward/backward passes a protocol needs, the model's FLOPs and
a short timing on the device (the plan printed before a run), batch sizes that fit in GPU memory, and precision.

Precision: ``fp32`` is strict float32 (TF32 off, also for cuDNN's convolutions); ``tf32`` lets the attack's
matmuls and convolutions use TF32 on Ampere+ GPUs; ``fp16`` / ``bf16`` autocast the attack's forward passes. In
every mode the predictions that decide clean and robust accuracy are scored in strict float32.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from attacks.sanity import SanityConfig
from bench.core.errors import BenchError

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise BenchError(f"unknown --precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if precision != "fp32" and device.type != "cuda":
        raise BenchError(f"--precision {precision} needs a CUDA device; CPU runs are fp32 (bf16 on this CPU is "
                         "dozens of times slower, not faster)")


def attack_precision(precision: str) -> str:
    """The precision the attack engine autocasts to: TF32 is not an autocast dtype but a matmul mode."""
    return "fp32" if precision == "tf32" else precision


def autocast(device: torch.device, precision: str):
    if device.type != "cuda" or precision not in ("fp16", "bf16"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def _set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


@contextlib.contextmanager
def precision_scope(encoder, device: torch.device, precision: str):
    """Run a cell under ``precision``. With ``tf32`` the image tower's forward passes under autograd (the attack)
    switch TF32 on and those without (clean and final scoring) switch it off; the backward pass that follows an
    attack forward keeps TF32. Restores the process-wide flags on exit."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    _set_tf32(False)
    handle = None
    if precision == "tf32":
        handle = encoder.tower.register_forward_pre_hook(lambda _m, _a: _set_tf32(torch.is_grad_enabled()))
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def passes_per_sample(protocol, n_classes: int) -> int:
    """Forward+backward passes one sample costs at most (it stays robust through every stage and restart; a
    classification protocol counts each EOT draw)."""
    if hasattr(protocol, "passes"):
        return protocol.passes(n_classes)
    return sum(stage.passes(n_classes) for stage in protocol.stages)


def _input_batch(encoder, n: int, device: torch.device) -> torch.Tensor:
    size = encoder.image_size
    return torch.rand(n, 3, size, size, device=device, requires_grad=True)


def flops_per_image(encoder, device: torch.device) -> tuple[float, float]:
    """(forward, forward + input-gradient backward) FLOPs of the image tower for one image, counted by torch."""
    x = _input_batch(encoder, 1, device)
    with FlopCounterMode(display=False) as fwd:
        y = encoder(x)
    with FlopCounterMode(display=False) as bwd:
        torch.autograd.grad(y.sum(), x)
    forward = float(fwd.get_total_flops())
    return forward, forward + float(bwd.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_pass(encoder, device: torch.device, batch: int, precision: str = "fp32", repeats: int = 2) -> float:
    """Measured seconds of one forward + input-gradient backward per image, at ``batch`` images (after a warm-up)."""
    x = _input_batch(encoder, batch, device)
    with precision_scope(encoder, device, precision), autocast(device, precision):
        torch.autograd.grad(encoder(x).float().sum(), x)  # warm-up: kernels, allocator, caches
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            torch.autograd.grad(encoder(x).float().sum(), x)
        _sync(device)
    return (time.perf_counter() - t0) / (repeats * batch)


def fit_batch(encoder, device: torch.device, requested: int, headroom: float = 0.7) -> int:
    """On a GPU, the largest batch ≤ ``requested`` whose forward + backward fits in ``headroom`` of the free memory
    (measured on a small batch); elsewhere ``requested``."""
    if device.type != "cuda":
        return requested
    probe = 2
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    x = _input_batch(encoder, probe, device)
    torch.autograd.grad(encoder(x).sum(), x)
    per_image = max(1, (torch.cuda.max_memory_allocated(device) - before) // probe)
    del x
    torch.cuda.empty_cache()
    free, _total = torch.cuda.mem_get_info(device)
    fits = max(1, int(headroom * free // per_image))
    if fits < requested:
        print(f"batch size {requested} does not fit in {free / 2**30:.1f} GiB free on {device} "
              f"(≈ {per_image / 2**20:.0f} MiB per image); using {fits}", file=sys.stderr)
    return min(requested, fits)


@dataclass(frozen=True)
class CellCost:
    samples: int  # samples still to compute
    passes: int  # upper bound of forward+backward passes per sample (0: clean)
    extra_passes: float = 0.0  # per cell, in pass-equivalents: the checks against gradient masking

    def flops(self, fwd: float, fwd_bwd: float) -> float:
        """FLOPs still to spend (upper bound): the attack's passes, the clean and final scoring forwards and the
        checks, from one image's forward and forward+backward FLOPs."""
        return self.samples * (self.passes * fwd_bwd + 2 * fwd) + self.extra_passes * fwd_bwd


def cell_cost(task, data, protocol, todo: int) -> CellCost:
    """The cost model of one cell with ``todo`` samples still to compute: what ``bench run --plan`` prints and what
    ``bench sweep`` packs by."""
    n_classes = len(getattr(data, "class_prompts", ())) or 2
    checks = sanity_passes(protocol, SanityConfig()) if hasattr(task, "sanity_checks") else 0.0
    return CellCost(todo, passes_per_sample(protocol, n_classes), checks)


def sanity_passes(protocol, config) -> float:
    """What the gradient-masking checks of one attacked cell cost at most, in forward+backward pass-equivalents of
    this process: ``config.samples`` points attacked again by the first stage cut to each fraction, and by Square's
    forward-only queries (a third of a pass each); on one thread (``attacks.sanity``), so scaled by the threads."""
    if not protocol.stages:
        return 0.0
    first = protocol.stages[0].iterations
    per_point = sum(max(1, round(f * first)) for f in config.fractions) + config.square_queries / 3
    return config.samples * per_point * torch.get_num_threads()


def describe_plan(encoder_name: str, device: torch.device, costs: list[CellCost], flops: tuple[float, float],
                  seconds: float, batch: int, world: int = 1, defence: str = "") -> str:
    """One paragraph: what the remaining cells of one encoder cost, as an upper bound and an estimate in time;
    ``defence``: what one inference of its test-time defence costs (the FLOPs and timing are of the whole defended
    pipeline: they include it)."""
    attacked = sum(c.samples * c.passes for c in costs)
    forwards = sum(c.samples * 2 for c in costs)  # clean and final scoring forward per sample
    checks = sum(c.extra_passes for c in costs)
    fwd, fwd_bwd = flops
    total_flops = attacked * fwd_bwd + forwards * fwd
    eta = (attacked + forwards / 3) * seconds / max(1, world) + checks * seconds
    samples = sum(c.samples for c in costs)
    under = (f" (under its test-time defence, {defence}; every pass below is one of the whole defended pipeline)"
             if defence else "")
    return (f"plan for {encoder_name} on {device}{f' × {world} processes' if world > 1 else ''}{under}: "
            f"{len(costs)} cell(s), {samples:,} samples to compute, ≤ {attacked:,} forward+backward passes "
            f"(upper bound: every sample stays robust to the end of every stage) and {forwards:,} scoring forwards, "
            f"plus the gradient-masking checks (≤ {checks:,.0f} pass-equivalents on one thread); "
            f"{fwd / 1e9:.3g} GFLOP forward, {fwd_bwd / 1e9:.3g} GFLOP forward+backward per image "
            f"(≤ {total_flops / 1e15:.3g} PFLOP); measured {seconds * 1e3:.3g} ms per image pass at batch {batch} "
            f"→ ≤ {duration_text(eta)}")


def duration_text(seconds: float) -> str:
    """A duration as people read it: seconds, minutes or hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
