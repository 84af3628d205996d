"""The attack names users type (``--attack``): the evaluation protocol presets (one file each in
``attacks/presets/``), the vision-language presets (``attacks/vlm.py``; each of those tasks resolves a name to its
own variant), and a user's protocol file given by path. A plugin adds a protocol through the entry point group
``clip_robust_bench.attacks`` (the entry point names a ``Protocol``)."""

from __future__ import annotations

from pathlib import Path

from attacks.protocol_files import is_protocol_file, preset_files, read_protocol
from attacks.protocols import Protocol
from attacks.vlm import PRESETS as VLM_PRESETS
from bench.core.errors import BenchError
from bench.core.registry import Registry

ATTACKS: Registry[Protocol] = Registry("attack", plugin_group="attacks")
PROTOCOLS: dict[str, Protocol] = {}  # the classification presets, by name
for _path in preset_files():
    _protocol, _aliases = read_protocol(_path)
    PROTOCOLS[_protocol.name] = ATTACKS.register(_protocol.name, _protocol, _protocol.description, aliases=_aliases)
for _name, (_vlm, _description) in VLM_PRESETS.items():
    ATTACKS.register(_name, _vlm, _description)


def resolve_attack(text: str):
    """The protocol an ``--attack`` value names: a registered name or alias, or a protocol file (a path ending in
    ``.toml`` or holding a separator), whose ``name`` must not be a registered one (its cells would pass for the
    registered protocol's in every report)."""
    if not is_protocol_file(text):
        return ATTACKS.get(text)
    path = Path(text.strip()).expanduser()
    protocol, aliases = read_protocol(path)
    taken = [n for n in (protocol.name, *aliases) if n in ATTACKS]
    if taken:
        raise BenchError(f"attack protocol {path}: name {taken[0]!r} is a registered attack; give yours another name "
                         "(`bench list attacks` shows the registered ones)")
    return protocol
