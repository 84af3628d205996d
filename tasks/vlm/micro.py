"""The micro VLM: the micro CLIP's penultimate patch tokens → a two-layer MLP projector (LLaVA-1.5's) → a small
causal transformer over [64 image tokens, prompt, answer] with a word-level vocabulary.

The decoder computes the image tokens once per image and lets any number of texts attend to them (every text
follows the image, and attention is causal, so the image tokens' states do not depend on the text). Training uses
this to read the ~10 captions and questions of one scene for little more than the price of one; evaluation passes
one text per image.

Committed under ``tasks/vlm/assets/``: ``micro_vlm.json`` (architecture and vocabulary), ``micro_vlm.safetensors``
and ``micro_vlm.card.json`` (recipe, training log, measured clean CIDEr and VQA accuracy, sha256), reproduced by
``python -m bench.micro.train_vlm``. The image encoder is not part of the checkpoint: any encoder with the micro
CLIP's architecture (the robust ones fine-tuned from it) is plugged in as it is.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.checkpoints import load_tensors
from bench.core.errors import BenchError
from tasks.vlm.base import PrefixVLM
from tasks.vlm.vocab import WordTokenizer

ASSETS = Path(__file__).parent / "assets"
CONFIG_PATH = ASSETS / "micro_vlm.json"
CHECKPOINT_PATH = ASSETS / "micro_vlm.safetensors"
CARD_PATH = ASSETS / "micro_vlm.card.json"


@dataclass(frozen=True)
class MicroVLMConfig:
    vocabulary: tuple[str, ...]
    vision_width: int = 128  # the micro CLIP's patch-token width
    image_tokens: int = 64  # 8 × 8 patches of the 64 px micro images
    width: int = 128
    layers: int = 3
    heads: int = 4
    mlp_ratio: float = 4.0
    max_text: int = 48  # prompt + answer tokens

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "vocabulary": list(self.vocabulary)}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> MicroVLMConfig:
        cfg = json.loads(text)
        return cls(**{**cfg, "vocabulary": tuple(cfg["vocabulary"])})


class Block(nn.Module):
    """A pre-norm transformer block over image tokens (causal among themselves) and texts that see every image
    token of their own image and the earlier tokens of their own text."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def _split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _merge(self, h: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = h.shape
        return self.proj(h.transpose(1, 2).reshape(b, n, -1))

    def forward(self, image: torch.Tensor, text: torch.Tensor, group: torch.Tensor, last: bool):
        qi, ki, vi = self._split(image)
        qt, kt, vt = self._split(text)
        p, t = image.shape[1], text.shape[1]
        see = torch.ones(t, p + t, dtype=torch.bool, device=text.device)
        see[:, p:] = torch.tril(see[:, p:])
        attended = F.scaled_dot_product_attention(qt, torch.cat([ki[group], kt], dim=2),
                                                  torch.cat([vi[group], vt], dim=2), attn_mask=see)
        text = text + self._merge(attended)
        text = text + self.mlp(self.ln2(text))
        if not last:  # the image tokens' outputs of the last block feed nothing
            image = image + self._merge(F.scaled_dot_product_attention(qi, ki, vi, is_causal=True))
            image = image + self.mlp(self.ln2(image))
        return image, text


class MicroDecoder(nn.Module):
    """Projector + causal transformer + tied output head."""

    def __init__(self, cfg: MicroVLMConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.projector = nn.Sequential(nn.Linear(cfg.vision_width, w), nn.GELU(), nn.Linear(w, w))
        self.token = nn.Embedding(len(cfg.vocabulary), w)
        self.position = nn.Parameter(torch.zeros(cfg.image_tokens + cfg.max_text, w))
        self.blocks = nn.ModuleList(Block(w, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(w)
        nn.init.normal_(self.token.weight, std=0.02)
        nn.init.normal_(self.position, std=0.01)

    def project(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        return self.projector(patch_tokens) + self.position[: patch_tokens.shape[1]]

    def forward(self, image: torch.Tensor, ids: torch.Tensor, group: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, T, V) at the text positions; text row n belongs to image row ``group[n]`` (default n)."""
        if ids.shape[1] > self.cfg.max_text:
            raise ValueError(f"text of {ids.shape[1]} tokens exceeds the micro VLM's {self.cfg.max_text}")
        group = torch.arange(len(ids), device=ids.device) if group is None else group
        p = image.shape[1]
        text = self.token(ids) + self.position[p : p + ids.shape[1]]
        for i, block in enumerate(self.blocks):
            image, text = block(image, text, group, last=i == len(self.blocks) - 1)
        return self.ln(text) @ self.token.weight.T


class MicroVLM(PrefixVLM):
    """The micro decoder on top of an image encoder (a ``ClipEncoder`` of the micro CLIP's architecture)."""

    def __init__(self, encoder, decoder: MicroDecoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.tokenizer = WordTokenizer(list(decoder.cfg.vocabulary))
        self.eos_id, self.pad_id = self.tokenizer.eos_id, self.tokenizer.pad_id
        self.requires_grad_(False)
        self.eval()

    def image_embeds(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.project(self.encoder.patch_tokens(x))

    def text_logits(self, image_embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(image_embeds, ids)

    def context_ids(self, prompt: str) -> list[int]:
        return self.tokenizer.encode(prompt)

    def target_ids(self, prompt: str, target: str) -> list[int]:
        return self.tokenizer.encode(target) + [self.eos_id]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def load_config(path: Path = CONFIG_PATH) -> MicroVLMConfig:
    if not path.is_file():
        raise BenchError(f"micro VLM config missing: {path}; regenerate it with python -m bench.micro.train_vlm")
    return MicroVLMConfig.from_json(path.read_text())


@lru_cache(maxsize=1)
def load_decoder() -> MicroDecoder:
    """The committed decoder, checked against the sha256 its card records (shared by every encoder)."""
    if not CARD_PATH.is_file():
        raise BenchError(f"micro VLM card missing: {CARD_PATH}; regenerate it with python -m bench.micro.train_vlm")
    card = json.loads(CARD_PATH.read_text())
    decoder = MicroDecoder(load_config())
    decoder.load_state_dict(load_tensors(CHECKPOINT_PATH, expected_sha256=card["sha256"]))
    return decoder.requires_grad_(False).eval()


def load_micro_vlm(encoder, device: str | torch.device = "cpu") -> MicroVLM:
    """The committed micro VLM reading ``encoder``'s patch tokens (any encoder of the micro CLIP's architecture)."""
    decoder = load_decoder()
    width = encoder.tower.visual.transformer.width
    if width != decoder.cfg.vision_width:
        raise BenchError(f"encoder {encoder.meta.name} has patch tokens of width {width}; the micro VLM reads "
                         f"{decoder.cfg.vision_width} (the micro CLIP's architecture)")
    return MicroVLM(encoder, copy.deepcopy(decoder)).to(device)

