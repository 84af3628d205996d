"""The attack names users type (``--attack``): the evaluation protocol presets."""

from __future__ import annotations

from attacks.protocols import PROTOCOLS, Protocol
from bench.registry import Registry

ATTACKS: Registry[Protocol] = Registry("attack")
for _p in PROTOCOLS.values():
    ATTACKS.register(_p.name, _p, _p.description, aliases={"apgd": ("apgd-ce",), "none": ("clean",)}.get(_p.name, ()))
