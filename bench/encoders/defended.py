"""A test-time defence around an encoder, seen as an encoder: [0,1] images in, embeddings out, the whole defended
pipeline in its forward (so tasks, attacks, the plan's FLOP count and timing all see it), the undefended ``base``
kept for transfer protocols, and the randomness a randomised defence draws (``image_noise``)."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from attacks.eot import current_draw
from bench.core.errors import BenchError
from bench.defences import Defence, InferenceCost
from bench.encoders.base import EncoderMeta


def image_noise(x: torch.Tensor, seed: int, draw: int) -> torch.Tensor:
    """Uniform [-1, 1] noise shaped like ``x``: one generator per image, keyed by the run seed, the draw and the
    image's float32 bytes. The same image under the same draw gets the same noise in any batch and on resume (so a
    verdict can be re-scored), any other image or draw independent noise — the attacker controls the image, never
    the key."""
    rows = x.detach().to("cpu", torch.float32).contiguous()
    out = torch.empty(rows.shape)
    gen = torch.Generator()
    key = f"{int(seed)}:{int(draw)}".encode()
    for i, row in enumerate(rows):
        digest = hashlib.blake2b(row.numpy().tobytes(), digest_size=8, key=key).digest()
        gen.manual_seed(int.from_bytes(digest, "little") % (2**63 - 1))
        out[i] = torch.rand(row.shape, generator=gen) * 2 - 1
    return out.to(device=x.device, dtype=x.dtype)


class DefendedEncoder(nn.Module):
    """``base`` (any encoder: ``ClipEncoder``, an external one) under ``defence``; ``original``: the original CLIP's
    encoder, given only when the defence reads it and ``base`` is a fine-tuned one; ``seed``: the run seed its
    randomness is keyed by."""

    def __init__(self, base: nn.Module, defence: Defence, seed: int = 0, original: nn.Module | None = None):
        super().__init__()
        self.base = base
        self.original = original
        self.defence = defence
        self.seed = int(seed)
        self.constants: dict = {}  # what a defence computes once per encoder (CLIPure's blank-prompt embedding)
        m = base.meta
        self.meta = EncoderMeta(f"{m.name}+{defence.spelling}", m.arch, m.method, m.train_eps,
                                f"{m.source}; test-time defence {defence.label}", m.checkpoint_sha256)
        defence.prepare(self)

    @property
    def tower(self) -> nn.Module:
        return self.base.tower

    @property
    def image_size(self) -> int:
        return self.base.image_size

    @property
    def device(self) -> torch.device:
        return self.base.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.defence.embed(self, x)

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """This forward pass's uniform [-1, 1] noise for ``x`` (call it once per forward: it takes the pass's draw)."""
        return image_noise(x, self.seed, current_draw())

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.base.encode_text(texts)

    def class_embeddings_for(self, data):
        """The base's own class embeddings for ``data`` where it brings them (the Python API's encoders)."""
        given = getattr(self.base, "class_embeddings_for", None)
        return given(data) if given is not None else None

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        raise BenchError(f"{self.meta.name}: a test-time defence acts on the embedding that zero-shot classification "
                         "reads; the vision-language tasks read patch tokens, which it does not define")

    def identity(self) -> dict:
        """The defence's part of a cell's identity: the defence and its settings, and the original CLIP's checkpoint
        where it takes part."""
        out = self.defence.identity()
        if self.original is not None:
            out["original_sha256"] = self.original.meta.checkpoint_sha256
        return out

    def cost(self) -> InferenceCost:
        return self.defence.cost(with_original=self.original is not None)
