"""Training throughput of one adversarial fine-tuning step, and how much of this machine it uses.

    python scripts/bench_train.py [--method fare] [--inner-steps 10] [--batch 32] [--steps 3]

For the micro CLIP's tower and a randomly initialised ViT-B/32 at 224 px (no download), runs full training steps
(inner PGD + outer loss + backward + AdamW) on random images, counts their FLOPs with torch's FlopCounterMode,
and prints images/s and the achieved FLOP rate as a fraction of this machine's fp32 matmul throughput, measured in
the same process.
"""

from __future__ import annotations

import argparse
import copy
import time

import open_clip
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.encoders.base import ClipEncoder, EncoderMeta
from bench.micro.encoders import load_micro_clip
from bench.train.config import TrainConfig
from bench.train.loop import adversarial_step
from bench.train.objectives import make_objective


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def vit_b32() -> ClipEncoder:
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    meta = EncoderMeta("vit-b-32-random", "ViT-B-32", "clip", None, "random init")
    return ClipEncoder(model, open_clip.get_tokenizer("ViT-B-32"), open_clip.OPENAI_DATASET_MEAN,
                       open_clip.OPENAI_DATASET_STD, meta)


class _NoModuleTracking:
    """Stands in for FlopCounterMode's module tracker, whose backward hooks break ``torch.autograd.grad`` with
    respect to the input (the inner PGD's call): every FLOP is then counted under "Global" only."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def flat_flop_counter() -> FlopCounterMode:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracking()  # an attribute of torch's implementation (2.1 to 2.14 at least)
    return counter


def measure(encoder: ClipEncoder, method: str, inner_steps: int, batch: int, steps: int, size: int) -> dict:
    cfg = TrainConfig(method=method, eps_levels=4, suite="micro", steps=steps, batch_size=batch, lr=1e-5,
                      weight_decay=1e-4, warmup_steps=1, inner_steps=inner_steps)
    objective = make_objective(method)
    student = copy.deepcopy(encoder.tower).requires_grad_(True)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr)
    x = torch.rand(batch, 3, size, size)
    labels = torch.zeros(batch, dtype=torch.long)
    classes = torch.nn.functional.normalize(torch.randn(4, encoder.model.visual.output_dim), dim=-1)
    seeds = torch.arange(batch)

    def one_step():
        adversarial_step(cfg, objective, student, student, encoder.tower, x, labels, classes, seeds)
        opt.step()
        opt.zero_grad(set_to_none=True)

    one_step()  # warm-up
    with flat_flop_counter() as counter:
        one_step()
    flops = counter.get_total_flops()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    seconds = (time.perf_counter() - t0) / steps
    return {"images_per_s": batch / seconds, "gflop_per_step": flops / 1e9, "gflops": flops / seconds / 1e9}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="fare", help="a registered training objective (bench list encoders)")
    p.add_argument("--inner-steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_gflops()
    print(f"fp32 matmul peak on this machine: {peak:.1f} GFLOP/s ({args.threads} threads)")
    print(f"{'model':<28}{'images/s':>10}{'GFLOP/step':>12}{'GFLOP/s':>10}{'of peak':>9}")
    for name, enc, size in (("micro CLIP tower (64 px)", load_micro_clip(), 64),
                            ("ViT-B/32 random (224 px)", vit_b32(), 224)):
        batch = args.batch if size == 64 else max(2, args.batch // 8)
        r = measure(enc, args.method, args.inner_steps, batch, args.steps, size)
        print(f"{name:<28}{r['images_per_s']:>10.2f}{r['gflop_per_step']:>12.1f}{r['gflops']:>10.1f}"
              f"{r['gflops'] / peak:>9.1%}")
    print(f"(method {args.method}, PGD-{args.inner_steps} inner, one step = inner attack + outer loss + backward + "
          "AdamW)")


if __name__ == "__main__":
    main()
