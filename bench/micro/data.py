"""Batches of micro-world samples: images, labels for the zero-shot datasets, captions and questions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bench.core.errors import BenchError
from bench.micro import language
from bench.micro.datasets import DATASETS, ZEROSHOT_DATASETS  # noqa: F401 (ZEROSHOT_DATASETS: re-exported)
from bench.micro.world import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_WORLD_SEED,
    WHOLE_WORLD,
    WORLD_VERSION,
    Scene,
    Slice,
    make_sample,
)


@dataclass(frozen=True)
class MicroSplit:
    """Samples ``indices`` of one split. Images are uint8 (N, 3, H, W), as real datasets are stored."""

    split: str
    seed: int
    indices: tuple[int, ...]
    images: np.ndarray
    scenes: tuple[Scene, ...]
    stream: int = 0  # the distribution it was drawn from (0: the whole world; see bench/micro/datasets.py)

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def ids(self) -> list[str]:
        return [f"{self.split}-{i:06d}" for i in self.indices]

    def labels(self, dataset: str) -> np.ndarray:
        if dataset not in DATASETS:
            raise KeyError(f"unknown micro dataset {dataset!r}; expected one of {ZEROSHOT_DATASETS}")
        return np.array([DATASETS[dataset].label_of(s) for s in self.scenes], dtype=np.int64)

    def captions(self, i: int, n: int = 5) -> list[str]:
        return [c.text for c in self.captions_with_mentions(i, n)]

    def captions_with_mentions(self, i: int, n: int = 5) -> list[language.Caption]:
        rng = language.text_rng(self.seed, self.split, self.indices[i], 0, self.stream)
        return language.captions_with_mentions(self.scenes[i], rng, n)

    def questions(self, i: int, n: int = 3) -> list[language.Question]:
        rng = language.text_rng(self.seed, self.split, self.indices[i], 1, self.stream)
        return language.questions(self.scenes[i], rng, n)


def generate_indices(split: str, indices, seed: int = DEFAULT_WORLD_SEED, size: int = DEFAULT_IMAGE_SIZE,
                     within: Slice = WHOLE_WORLD, stream: int = 0) -> MicroSplit:
    """The samples at ``indices`` of ``split`` of the distribution ``within`` (drawn from random stream ``stream``);
    identical on every call and every machine."""
    indices = tuple(int(i) for i in indices)
    images = np.empty((len(indices), 3, size, size), dtype=np.uint8)
    scenes = []
    for k, i in enumerate(indices):
        scene, img = make_sample(seed, split, i, size, within, stream)
        images[k] = np.round(img * 255.0).astype(np.uint8).transpose(2, 0, 1)
        scenes.append(scene)
    images.setflags(write=False)
    return MicroSplit(split, seed, indices, images, tuple(scenes), stream)


def generate_dataset(dataset: str, split: str, indices, seed: int = DEFAULT_WORLD_SEED) -> MicroSplit:
    """The samples at ``indices`` of one micro dataset's ``split`` (see bench/micro/datasets.py)."""
    spec = DATASETS[dataset]
    return generate_indices(split, indices, seed, within=spec.within, stream=spec.stream)


def whole_world_definition(texts: str) -> dict:
    """The identity of a vision-language dataset drawn from the whole world's test split (``texts``: captions or
    questions): a new world version never reuses its cells."""
    return {"world_version": WORLD_VERSION, "slice": WHOLE_WORLD.definition(), "split": "test", "texts": texts}


@lru_cache(maxsize=8)
def generate(split: str, n: int, seed: int = DEFAULT_WORLD_SEED, size: int = DEFAULT_IMAGE_SIZE,
             start: int = 0) -> MicroSplit:
    """Samples ``start .. start+n-1`` of ``split`` of the whole world (what the micro CLIP and VLM train on)."""
    return generate_indices(split, range(start, start + n), seed, size)


TEST_POOL = 100_000  # evaluation samples are drawn from the first TEST_POOL scenes of the test split


def select_indices(n_samples: int, seed: int) -> np.ndarray:
    """A seeded selection of ``n_samples`` distinct test scenes, sorted: different seeds see different samples."""
    if not 0 < n_samples <= TEST_POOL:
        raise BenchError(f"--n-samples must be between 1 and {TEST_POOL} on the micro suite, got {n_samples}")
    rng = np.random.default_rng([seed, 7])
    return np.sort(rng.choice(TEST_POOL, size=n_samples, replace=False))
