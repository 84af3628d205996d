"""The attack names users type (``--attack``): the evaluation protocol presets, for classification and for the
vision-language tasks (``attacks/vlm.py``; each of those tasks resolves a name to its own variant). A plugin adds a
protocol through the entry point group ``clip_robust_bench.attacks`` (the entry point names a ``Protocol``)."""

from __future__ import annotations

from attacks.protocols import PROTOCOLS, Protocol
from attacks.vlm import PRESETS as VLM_PRESETS
from bench.core.registry import Registry

ATTACKS: Registry[Protocol] = Registry("attack", plugin_group="attacks")
for _p in PROTOCOLS.values():
    ATTACKS.register(_p.name, _p, _p.description, aliases={"apgd": ("apgd-ce",), "none": ("clean",)}.get(_p.name, ()))
for _name, (_vlm, _description) in VLM_PRESETS.items():
    ATTACKS.register(_name, _vlm, _description)
