"""The task names users type."""

from __future__ import annotations

from bench.registry import Registry
from tasks.zeroshot import ZeroShotTask

TASKS: Registry[type] = Registry("task")
TASKS.register("zeroshot", ZeroShotTask, ZeroShotTask.description, aliases=("zero-shot", "classification"))
