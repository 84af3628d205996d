"""Loading the committed micro CLIP as an ``Encoder``."""

from __future__ import annotations

import json

from bench.core.checkpoints import load_tensors
from bench.core.errors import BenchError
from bench.encoders.base import ClipEncoder, EncoderMeta
from bench.encoders.bases import register_base
from bench.micro.model import CARD_PATH, CHECKPOINT_PATH, build_model, load_config, tokenizer, unpack_state_dict

ARCH = "micro-vit-4x128-p8-64px"


def micro_card() -> dict:
    if not CARD_PATH.is_file():
        raise BenchError(f"micro CLIP card missing: {CARD_PATH}; regenerate it with python -m bench.micro.train_clip")
    return json.loads(CARD_PATH.read_text())


def load_micro_clip(device: str = "cpu") -> ClipEncoder:
    """The committed micro CLIP, checked against the hash its card records."""
    cfg = load_config()
    sha = micro_card()["sha256"]
    state = unpack_state_dict(load_tensors(CHECKPOINT_PATH, expected_sha256=sha), cfg["text_cfg"]["vocab_size"])
    model = build_model(cfg)
    model.load_state_dict(state)
    pre = cfg["preprocess_cfg"]
    meta = EncoderMeta("clip", ARCH, "clip", None, f"committed micro checkpoint {CHECKPOINT_PATH.name}", sha)
    return ClipEncoder(model, tokenizer(cfg), pre["mean"], pre["std"], meta).to(device)


@register_base
class MicroBase:
    """The committed micro CLIP as a base (``--base micro``; the micro suite's own): towers of the micro
    architecture, such as the ``visual.safetensors`` that ``bench train --out`` writes, go onto it."""

    kind = "micro"
    order = 0
    spelling = "micro"
    description = "micro — the committed micro CLIP"
    arch = ARCH
    quick_gelu = False

    @classmethod
    def parse(cls, text: str) -> MicroBase | None:
        return MICRO_BASE if text == "micro" else None

    @property
    def arch_label(self) -> str:
        return ARCH

    def architecture(self) -> dict:
        return {k: v for k, v in load_config().items() if k not in ("preprocess_cfg", "quick_gelu")}

    def load(self, device: str) -> ClipEncoder:
        return load_micro_clip(device)

    def __eq__(self, other) -> bool:
        return isinstance(other, MicroBase)

    def __hash__(self) -> int:
        return hash(MicroBase)

    def __str__(self) -> str:
        return "micro"


MICRO_BASE = MicroBase()
