"""`bench list`: what each registry holds, one line per thing (robust encoders one line per method)."""

from __future__ import annotations

from attacks.registry import ATTACKS
from bench.core.registry import Entry, Registry
from bench.defences import DEFENCES
from bench.encoders.registry import ENCODERS
from bench.encoders.sources import SOURCES
from bench.suites import SUITES
from bench.train.objectives import OBJECTIVES
from tasks.registry import TASKS


def _lines(entries: list[tuple[str, str]]) -> list[str]:
    width = max((len(name) for name, _ in entries), default=0)
    return [f"  {name:<{width}}  {text}" for name, text in entries]


def _plain(registry: Registry) -> list[tuple[str, str]]:
    return _plain_entries(list(registry))


def _encoders(registry: Registry) -> list[tuple[str, str]]:
    """The robust encoders of one objective share a line: ``fare1, fare2, fare4 (fare = fare4)``."""
    groups: dict[str, list[Entry]] = {}
    for e in registry:
        method = getattr(e.value, "method", None)
        key = method if method in OBJECTIVES and e.name.startswith(method) else e.name
        groups.setdefault(key, []).append(e)
    out = []
    for key, entries in groups.items():
        if key in OBJECTIVES:
            levels = ",".join(e.name[len(key):] for e in entries)
            default = next((e.name for e in entries if key in e.aliases), None)
            alias = f" ({key} = {default})" if default else ""
            out.append((f"{key}{{{levels}}}", OBJECTIVES.get(key).description + alias))
        else:
            out += _plain_entries(entries)
    return out


def _plain_entries(entries: list[Entry]) -> list[tuple[str, str]]:
    return [(e.name, e.description + (f" (alias: {', '.join(e.aliases)})" if e.aliases else "")) for e in entries]


def listing(what: str | None = None) -> str:
    kinds = {
        "encoders": ("encoders (fare{1,2,4} = fare1, fare2, fare4: the digit is the training ε in /255)", ENCODERS,
                     _encoders),
        "attacks": ("attacks", ATTACKS, _plain),
        "tasks": ("tasks", TASKS, _plain),
        "suites": ("suites", SUITES, _plain),
        "objectives": ("training objectives", OBJECTIVES, _plain),
        "sources": ("encoder sources (--encoder NAME=SOURCE)", SOURCES, _plain),
        "defences": ("test-time defences (--encoder NAME+DEFENCE, e.g. clip+ttc)", DEFENCES, _plain),
    }
    out = []
    for kind, (title, registry, describe) in kinds.items():
        if what and what != kind:
            continue
        out.append(f"{title}:")
        out += _lines(describe(registry))
    return "\n".join(out) + "\n"
