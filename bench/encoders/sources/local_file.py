"""A local file: an image-tower state dict (safetensors, or a tensors-only torch file in any published layout),
put onto the base — e.g. the ``visual.safetensors`` that ``bench train --out DIR`` writes. Asked last: any spelling
no other kind claims is taken for a path, and a missing file is refused when the spelling is read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError
from bench.encoders.openclip import with_tower
from bench.encoders.sources import SPELLINGS, register_source


@register_source
@dataclass(frozen=True)
class LocalTower:
    kind = "file"
    description = "PATH — an image-tower state dict on disk (e.g. the visual.safetensors `bench train --out` writes)"
    order = 100

    location: str  # absolute path

    def __str__(self) -> str:
        return self.location

    @classmethod
    def parse(cls, text: str) -> LocalTower:
        path = Path(text).expanduser()
        if path.is_dir() and (path / "visual.safetensors").is_file():  # a `bench train --out` directory
            path = path / "visual.safetensors"
        if not path.is_file():
            raise BenchError(f"no such file: {text} (an encoder source is {SPELLINGS})")
        return cls(str(path.resolve()))

    def load(self, spec, base, ctx):
        return with_tower(base, Path(self.location), str(self), spec, ctx.device)

