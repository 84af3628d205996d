"""The task names users type, and which attack protocols each takes. A plugin adds a task through the entry point
group ``clip_robust_bench.tasks`` (the entry point names a class with the ``tasks.base.Task`` interface)."""

from __future__ import annotations

from attacks.protocols import Protocol
from attacks.registry import ATTACKS
from bench.core.errors import BenchError
from bench.core.registry import Registry
from tasks.captioning import CaptioningTask
from tasks.targeted import TargetedTask
from tasks.vqa import VQATask
from tasks.zeroshot import ZeroShotTask

TASKS: Registry[type] = Registry("task", plugin_group="tasks")
TASKS.register("zeroshot", ZeroShotTask, ZeroShotTask.description, aliases=("zero-shot", "classification"))
TASKS.register("coco-captioning", CaptioningTask, CaptioningTask.description, aliases=("captioning", "coco"))
TASKS.register("vqav2", VQATask, VQATask.description, aliases=("vqa",))
TASKS.register("targeted", TargetedTask, TargetedTask.description, aliases=("targeted-captioning",))


def protocol_for(task, attack: str, backend: str = "native"):
    """The protocol ``--attack`` names for ``task`` (a task class or instance): a task with protocols of its own
    (the vision-language tasks) resolves the name itself; the others take the classification presets only."""
    if hasattr(task, "protocol"):
        return task.protocol(attack, backend)
    protocol = ATTACKS.get(attack)
    if not isinstance(protocol, Protocol):
        takes = ", ".join(e.name for e in ATTACKS if isinstance(e.value, Protocol))
        raise BenchError(f"--attack {protocol.name} is a vision-language protocol; task {task.name} takes: {takes}")
    return protocol
