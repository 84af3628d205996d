"""The encoder interface every task and attack sees: [0,1] images in, embeddings out.

Normalisation (and resizing to the tower's input size) happens inside the forward, as in RobustBench, so that
attacks act on pixels and the ε-ball is measured in pixel units. Parameters never require gradients: attacks need
gradients with respect to the input only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import open_clip
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EncoderMeta:
    """What an encoder is, written into every result row and run card."""

    name: str  # registry name, e.g. "simclip4"
    arch: str  # e.g. "micro-vit-4x128" or "ViT-L-14"
    method: str  # clip, or a registered training objective (fare, tecoa, simclip, simclip-siamese, …)
    train_eps: float | None  # ε (in [0,1] units) the encoder was adversarially trained at; None for CLIP
    source: str  # where the weights came from (file path, hub id, or "trained on demand: <hash>")
    checkpoint_sha256: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class ImageTower(nn.Module):
    """The image tower seen from pixels: resize to the tower's input size, normalise, embed.

    This is the module adversarial training updates (and DDP wraps); ``ClipEncoder`` exposes it for evaluation.
    """

    def __init__(self, visual: nn.Module, mean, std):
        super().__init__()
        self.visual = visual
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            # e.g. CIFAR attacked at 32 px native resolution, resized inside the model
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, with_tokens: bool = False):
        """Unnormalised image embeddings of [0,1] images (B, 3, H, W).

        ``with_tokens=True`` also returns every final token after ``ln_post`` *and* the projection, (B, 1 + N, D),
        class token first (its row is the embedding): what TGA-ZSR's attention maps read. open_clip's
        ``output_tokens`` gives the patch tokens without ``proj``, so the projection is applied here. One call
        returns both, so that a DDP-wrapped tower sees one forward per step."""
        if not with_tokens:
            return self.visual(self.prepare(x))
        visual = self.visual
        if getattr(visual, "pool_type", None) != "tok" or visual.attn_pool is not None or visual.final_ln_after_pool:
            # the class token is the embedding only for CLIP's own pooling (ln_post on every token, then token 0)
            raise ValueError("with_tokens needs an open_clip ViT pooling by its class token after ln_post")
        # open_clip VisionTransformer.forward, step by step, keeping the tokens (same modules, same order); its private
        # _embeds and _pool are why pyproject.toml pins open_clip's minor version (tests/test_open_clip_internals.py)
        pooled, patches = visual._pool(visual.transformer(visual._embeds(self.prepare(x))))
        if visual.proj is not None:
            pooled, patches = pooled @ visual.proj, patches @ visual.proj
        return pooled, torch.cat([pooled.unsqueeze(1), patches], dim=1)

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-block patch tokens (B, N_patches, width), the features LLaVA-style models consume."""
        h = self.visual._embeds(self.prepare(x))
        for block in self.visual.transformer.resblocks[:-1]:
            h = block(h)
        return h[:, 1:, :]


class ClipEncoder(nn.Module):
    """An open_clip CLIP model seen as an image encoder (plus its frozen text tower for zero-shot prompts)."""

    def __init__(self, model: open_clip.CLIP, tokenizer, mean, std, meta: EncoderMeta):
        super().__init__()
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tower = ImageTower(model.visual, mean, std)
        self.tokenizer = tokenizer
        self.meta = meta

    @property
    def image_size(self) -> int:
        return self.tower.image_size

    @property
    def device(self) -> torch.device:
        return self.tower.mean.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings of [0,1] images (B, 3, H, W)."""
        return self.tower(x)

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower.patch_tokens(x)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings; the text tower is always frozen."""
        tokens = self.tokenizer(texts).to(self.device)
        return F.normalize(self.model.encode_text(tokens), dim=-1)
