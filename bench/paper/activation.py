"""Which activation (QuickGELU or GELU) a published checkpoint needs, decided from the weights themselves.

Adversarial fine-tuning (FARE, TeCoA, Sim-CLIP) changes only the image tower, so a checkpoint's text tower holds
the base model's weights: built with the right activation it reproduces the base model's text embeddings to float
precision; built with the wrong one it does not. The image tower cannot decide it (fine-tuning moved it).

Run on a machine with the weights (GPU or CPU, a few seconds once downloaded):

    python -m bench.paper.activation [--suite paper] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import open_clip
import torch

from bench.core.errors import BenchError
from bench.core.hub import hub_file
from bench.encoders.openclip import WEIGHT_FILES, build_clip, hub_model_config, whole_clip_state
from bench.encoders.sources.hub_model import HubModel
from bench.paper.encoders import FAMILIES

PROMPTS = ("a photo of a dog.", "a blurry photo of a truck.", "an origami airplane.", "a sketch of a lighthouse.",
           "a close-up photo of a tabby cat.", "satellite imagery of a river.")


@dataclass(frozen=True)
class ActivationVerdict:
    text_weights_equal: bool  # the candidate's text tower is the reference's (the precondition of the check)
    text_gap: dict[bool, float]  # quick_gelu → max |text embedding − reference text embedding|
    quick_gelu: bool | None  # the activation that reproduces the reference; None if undecided

    def summary(self) -> str:
        gaps = ", ".join(f"{'QuickGELU' if q else 'GELU'} {g:.2e}" for q, g in self.text_gap.items())
        if not self.text_weights_equal:
            return f"undecided: the text tower differs from the reference's (gaps {gaps})"
        if self.quick_gelu is None:
            return f"undecided: neither activation reproduces the reference ({gaps})"
        return f"{'QuickGELU' if self.quick_gelu else 'GELU'} (text-embedding gaps: {gaps})"


def text_keys(state: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k for k in state if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias"))


@torch.no_grad()
def check_activation(model_cfg: dict, state: dict[str, torch.Tensor], reference: open_clip.CLIP, tokenizer,
                     device: str = "cpu", tolerance: float = 1e-3) -> ActivationVerdict:
    """Build the candidate (``model_cfg`` + ``state``) with each activation and compare its text embeddings of a few
    prompts with those of ``reference`` (the base model, built with its known activation)."""
    ref_state = reference.state_dict()
    keys = text_keys(ref_state)
    equal = all(k in state and state[k].shape == ref_state[k].shape
                and torch.equal(state[k].to(ref_state[k].device, ref_state[k].dtype), ref_state[k]) for k in keys)
    tokens = tokenizer(list(PROMPTS)).to(device)
    want = reference.to(device).eval().encode_text(tokens).float()
    scale = want.abs().max().clamp_min(1e-12)
    gaps = {}
    for quick in (True, False):
        model = build_clip(model_cfg, quick)
        model.load_state_dict(state, strict=False)  # only the text tower matters here
        got = model.to(device).eval().encode_text(tokens).float()
        gaps[quick] = float((got - want).abs().max() / scale)
        del model
    fits = [q for q, g in gaps.items() if g <= tolerance]
    verdict = fits[0] if equal and len(fits) == 1 else None
    return ActivationVerdict(equal, gaps, verdict)


def verify_family(family, device: str = "cpu") -> list[tuple[str, str, bool | None]]:
    """Check every whole-CLIP hub checkpoint of ``family`` against its base; (name, summary, verdict) per name."""
    base = family.base.load("cpu")
    tokenizer = base.tokenizer
    out = []
    for name, source in family.sources.items():
        if not isinstance(source, HubModel):
            continue
        model_cfg, _ = hub_model_config(source.repo, name)
        state = whole_clip_state(hub_file(source.repo, WEIGHT_FILES, what=name))
        verdict = check_activation(model_cfg, state, base.model, tokenizer, device)
        out.append((name, verdict.summary(), verdict.quick_gelu))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="paper", choices=sorted(FAMILIES))
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    family = FAMILIES[args.suite]
    try:
        rows = verify_family(family, args.device)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pinned = "QuickGELU" if family.quick_gelu else "GELU"
    bad = 0
    for name, summary, verdict in rows:
        agrees = verdict is not None and verdict == family.quick_gelu
        bad += not agrees
        print(f"{name:>8}: {summary} — pinned {pinned}: {'ok' if agrees else 'CHECK'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
