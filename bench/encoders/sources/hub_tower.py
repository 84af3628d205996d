"""``hf-hub:ORG/REPO/FILE``: an image-tower state dict in a hub repository (Sim-CLIP's ``simclipN.pt``), put onto
the base."""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.hub import hub_file
from bench.encoders.openclip import with_tower
from bench.encoders.sources import hub_path, register_source


@register_source
@dataclass(frozen=True)
class HubTower:
    kind = "hub-tower"
    description = "hf-hub:ORG/REPO/FILE — an image-tower state dict in a hub repository, put onto the base"
    order = 20

    location: str  # "org/name/path/in/repo.pt"

    def __str__(self) -> str:
        return f"hf-hub:{self.location}"

    @classmethod
    def parse(cls, text: str) -> HubTower | None:
        parts = hub_path(text)
        return cls("/".join(parts)) if parts and len(parts) >= 3 and all(parts) else None

    def load(self, spec, base, ctx):
        org, name, filename = self.location.split("/", 2)
        path = hub_file(f"{org}/{name}", filename, what=f"{spec.name} weights")
        return with_tower(base, path, str(self), spec, ctx.device)
