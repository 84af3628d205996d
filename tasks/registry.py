"""The task names users type, and which attack protocols each takes.

A task is one module of this package whose class carries ``@register_task(...)``: the registry imports every module
here the first time it is read, so a new task is one new file. A plugin adds a task through the entry point group
``clip_robust_bench.tasks`` (the entry point names a class with the ``tasks.base.Task`` interface)."""

from __future__ import annotations

from attacks.protocols import Protocol
from attacks.registry import ATTACKS, resolve_attack
from bench.core.errors import BenchError
from bench.core.registry import Registry

TASKS: Registry[type] = Registry("task", discover=("tasks",), plugin_group="tasks")


def register_task(*aliases: str):
    """Class decorator: register a task class under its ``name`` (with ``aliases``) and its ``description``."""

    def register(cls: type) -> type:
        TASKS.register(cls.name, cls, cls.description, aliases=aliases)
        return cls

    return register


def protocol_for(task, attack: str, backend: str = "native"):
    """The protocol ``--attack`` names for ``task`` (a task class or instance): a task with protocols of its own
    (the vision-language tasks) resolves the name itself; the others take the classification presets only."""
    if hasattr(task, "protocol"):
        return task.protocol(attack, backend)
    protocol = resolve_attack(attack)
    if not isinstance(protocol, Protocol):
        takes = ", ".join(e.name for e in ATTACKS if isinstance(e.value, Protocol))
        raise BenchError(f"--attack {protocol.name} is a vision-language protocol; task {task.name} takes: {takes}")
    return protocol
