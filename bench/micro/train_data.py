"""The micro suite's training data for adversarial fine-tuning: the micro world's train split, addressed by index
(``bench.train.data.batch_indices``) so every process of a DDP run reads exactly the images one run would."""

from __future__ import annotations

import numpy as np
import torch

from bench.micro import language
from bench.micro.data import generate_indices
from bench.micro.world import COLOURS, COUNTS, DEFAULT_IMAGE_SIZE, SHAPES


class MicroTrainData:
    """The micro world's training split, drawn lazily: a scene is generated the first time a step asks for it
    (about 1.5 ms each) and kept, so a run pays only for the scenes it uses and its first step starts at once.
    TeCoA's labels are whole scene classes (shape × colour × count), the micro world's analogue of ImageNet's."""

    keeps_drawn = True

    def __init__(self, n_train: int):
        self.n = n_train
        self._classes = [(s, c, k) for s in SHAPES for c in COLOURS for k in COUNTS]
        self._class_index = {cls: i for i, cls in enumerate(self._classes)}
        self.class_prompts = [[f"a picture of {language.NUMBER_WORDS[k]} {c} "
                               f"{language.PLURALS[s] if k > 1 else s}."] for s, c, k in self._classes]
        self.description = f"micro world train split, {n_train} scenes"
        size = DEFAULT_IMAGE_SIZE
        self._images = np.empty((n_train, 3, size, size), dtype=np.uint8)  # pages are touched only when drawn
        self._labels = np.full(n_train, -1, dtype=np.int64)

    @property
    def drawn(self) -> int:
        """How many scenes have been generated so far."""
        return int((self._labels >= 0).sum())

    def _draw(self, indices: np.ndarray) -> None:
        missing = np.unique(indices[self._labels[indices] < 0])
        if len(missing):
            split = generate_indices("train", missing)
            self._images[missing] = split.images
            self._labels[missing] = [self._class_index[(s.shape, s.colour, s.count)] for s in split.scenes]

    def load(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        indices = np.asarray(indices, dtype=np.int64)
        self._draw(indices)
        x = torch.tensor(self._images[indices], dtype=torch.float32).div_(255.0)
        return x, torch.as_tensor(self._labels[indices])
