"""A URL (``https://…``, ``file://…``): an image-tower state dict downloaded once into ``$BENCH_CACHE/downloads``
and put onto the base (FARE's OpenAI ViT-B/32 towers are such downloads)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.hub import url_file
from bench.encoders.openclip import with_tower
from bench.encoders.sources import register_source


@register_source
@dataclass(frozen=True)
class UrlTower:
    kind = "url"
    description = "https://…/tower.pt — an image-tower state dict downloaded once into $BENCH_CACHE/downloads"
    order = 30

    location: str

    def __str__(self) -> str:
        return self.location

    @classmethod
    def parse(cls, text: str) -> UrlTower | None:
        return cls(text) if "://" in text else None

    def load(self, spec, base, ctx):
        path = url_file(self.location, what=f"{spec.name} weights")
        return with_tower(base, path, str(self), spec, ctx.device)
