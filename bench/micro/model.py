"""The micro CLIP: an open_clip ``CLIP`` built from a JSON config, with the real CLIP tokenizer.

Its text tower keeps the full 49,408-token vocabulary of the CLIP tokenizer, but only the few hundred tokens the
micro world uses are ever trained: all other rows of the token embedding are zero from the start and stay zero (they
get no gradient and AdamW leaves zero rows at zero). The committed checkpoint therefore stores only the used rows,
which keeps it at a few MB, and loading restores the full matrix exactly.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import open_clip
import torch

ASSETS = Path(__file__).parent / "assets"
CONFIG_PATH = ASSETS / "micro_clip.json"
CHECKPOINT_PATH = ASSETS / "micro_clip.safetensors"
CARD_PATH = ASSETS / "micro_clip.card.json"
EMBED_KEY = "token_embedding.weight"
ROWS_KEY = "token_embedding.rows"
VALUES_KEY = "token_embedding.values"


@lru_cache(maxsize=1)
def load_config(path: str = str(CONFIG_PATH)) -> dict:
    return json.loads(Path(path).read_text())


def build_model(config: dict | None = None) -> open_clip.CLIP:
    """A randomly initialised micro CLIP (call under ``torch.manual_seed`` for a reproducible init)."""
    cfg = dict(config or load_config())
    cfg.pop("preprocess_cfg", None)
    return open_clip.CLIP(**cfg)


def tokenizer(config: dict | None = None) -> open_clip.SimpleTokenizer:
    cfg = config or load_config()
    return open_clip.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])


def pack_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace the token embedding by its non-zero rows (ids + values)."""
    packed = dict(state)
    embedding = packed.pop(EMBED_KEY)
    rows = torch.nonzero(embedding.abs().sum(dim=1) > 0).flatten()
    packed[ROWS_KEY] = rows.to(torch.int64)
    packed[VALUES_KEY] = embedding[rows]
    return packed


def unpack_state_dict(packed: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    if ROWS_KEY not in packed:
        return dict(packed)
    state = dict(packed)
    rows, values = state.pop(ROWS_KEY), state.pop(VALUES_KEY)
    embedding = torch.zeros(vocab_size, values.shape[1], dtype=values.dtype)
    embedding[rows] = values
    state[EMBED_KEY] = embedding
    return state
