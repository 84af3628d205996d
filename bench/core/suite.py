"""What a suite is: data (tasks, datasets, defaults) and the loaders that bind it to its models and files.

The suites themselves are registered in ``bench.suites``; this module only says what one holds, so that a suite
built elsewhere (the paper families, a plugin) needs nothing but the core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.core.errors import BenchError


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: dict[str, tuple[str, ...]]  # task name -> its datasets, in table order
    default_tasks: tuple[str, ...]
    n_samples: int  # default samples per dataset
    batch_size: int  # default attack batch
    load_classification: Callable = field(repr=False, compare=False)
    load_encoder: Callable = field(repr=False, compare=False)
    train_data: Callable = field(repr=False, compare=False)  # (TrainConfig, imagenet_root) -> training data
    # vision-language tasks: (task, dataset, n_samples, seed) -> data that also names the VLM reading it
    load_vlm_data: Callable | None = field(default=None, repr=False, compare=False)
    task_samples: dict[str, int] = field(default_factory=dict)  # per-task default samples (else n_samples)
    task_batch_size: dict[str, int] = field(default_factory=dict)  # per-task default batch (else batch_size)
    # datasets drawn from the fine-tuning distribution (the analogue of ImageNet for ImageNet-trained defences):
    # reported apart, outside the task's zero-shot average, as the papers report them
    in_distribution: tuple[str, ...] = ()
    # () -> the hash of what the suite's fine-tuning reads (TrainConfig.data_identity, part of every training cache
    # key); None: the recipe alone says it (the paper suites: the ImageNet train split)
    training_identity: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def data_identity(self) -> str:
        """What ``training_identity`` says, or "" where the recipe alone says it."""
        return self.training_identity() if self.training_identity else ""

    def samples_for(self, task: str) -> int:
        return self.task_samples.get(task, self.n_samples)


def check_dataset(suite: str, task: str, dataset: str, known: dict[str, tuple[str, ...]]) -> None:
    """Refuse a dataset the suite does not have for ``task`` (``known``: task -> its datasets), in one line."""
    if dataset not in known.get(task, ()):
        raise BenchError(f"unknown {suite} dataset {dataset!r} for task {task} (known: "
                         f"{', '.join(known.get(task, ())) or 'none'})")
