"""The micro fine-tuning set as training data: scenes of ``FINETUNING_SET`` addressed by index, so every process of
a DDP run (and a resumed run) reads exactly the images a single uninterrupted run would."""

from __future__ import annotations

import numpy as np
import torch

from bench.micro.data import generate_indices
from bench.micro.datasets import FINETUNING_SET, FineTuningSet
from bench.micro.world import DEFAULT_IMAGE_SIZE


class FineTuningData:
    """One split of the fine-tuning set (``train`` for training, ``val`` for tuning a recipe), drawn lazily: a scene
    is generated the first time a step asks for it (about 2 ms each) and kept, so a run pays only for the scenes
    it uses and its first step starts at once. Labels are the set's (shape, colour) classes and ``class_prompts``
    its own wording; unsupervised objectives read the images only."""

    keeps_drawn = True

    def __init__(self, n: int, split: str = "train", spec: FineTuningSet = FINETUNING_SET):
        self.n, self.split, self.spec = n, split, spec
        self.class_prompts = spec.class_prompts
        self.description = (f"micro fine-tuning set ({len(spec.classes)} shape × colour classes of solid scenes), "
                            f"{split} split, {n} scenes")
        size = DEFAULT_IMAGE_SIZE
        self._images = np.empty((n, 3, size, size), dtype=np.uint8)  # pages are touched only when drawn
        self._labels = np.full(n, -1, dtype=np.int64)

    @property
    def drawn(self) -> int:
        """How many scenes have been generated so far."""
        return int((self._labels >= 0).sum())

    def _draw(self, indices: np.ndarray) -> None:
        missing = np.unique(indices[self._labels[indices] < 0])
        if len(missing):
            drawn = generate_indices(self.split, missing, within=self.spec.within, stream=self.spec.stream)
            self._images[missing] = drawn.images
            self._labels[missing] = [self.spec.label(s) for s in drawn.scenes]

    def load(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        indices = np.asarray(indices, dtype=np.int64)
        self._draw(indices)
        x = torch.tensor(self._images[indices], dtype=torch.float32).div_(255.0)
        return x, torch.as_tensor(self._labels[indices])
