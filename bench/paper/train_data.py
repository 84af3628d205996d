"""The paper suites' training data for adversarial fine-tuning: ImageNet train (the default) or TinyImageNet train
(PMG-AFT's and TGA-ZSR's), addressed by index (``bench.train.data.batch_indices``) so every process of a DDP run
reads exactly the images one run would."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from torchvision import datasets, transforms

from bench.core.errors import BenchError
from bench.paper.datasets import benchmark_data, imagenet_wnids


class ImageFolderTrainData:
    """ImageNet-style ``<root>/train/<wnid>/*.JPEG`` (the paper recipe), resized and centre-cropped to 224 px,
    no augmentation; a deterministic subset of ``n_train`` images when smaller than the folder."""

    def __init__(self, root: str | os.PathLike, n_train: int, image_size: int = 224, seed: int = 0):
        train = Path(root) / "train"
        if not train.is_dir():
            raise BenchError(f"ImageNet training folder not found: {train} (give --imagenet-root or set "
                             "BENCH_IMAGENET_ROOT to a folder holding train/<wnid>/*.JPEG)")
        tf = transforms.Compose([transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
                                 transforms.CenterCrop(image_size), transforms.ToTensor()])
        self.folder = datasets.ImageFolder(str(train), transform=tf)
        if len(self.folder.classes) != len(IMAGENET_CLASSNAMES):
            raise BenchError(f"{train} has {len(self.folder.classes)} class folders, expected the 1000 ImageNet "
                             "classes")
        total = len(self.folder)
        self._subset = (np.arange(total) if n_train >= total
                        else np.sort(np.random.default_rng([seed, 13]).choice(total, n_train, replace=False)))
        self.n = len(self._subset)
        self.class_prompts = [[f"This is a photo of a {name}"] for name in IMAGENET_CLASSNAMES]
        self.description = f"ImageNet train at {root}, {self.n} images"
        self._pool = ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1))

    def load(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        items = list(self._pool.map(self.folder.__getitem__, self._subset[indices].tolist()))
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


class TinyImageNetTrainData:
    """``<root>/train/<wnid>/images/*.JPEG`` of tiny-imagenet-200 (PMG-AFT's and TGA-ZSR's training set: 200 ImageNet
    classes, 500 images each at 64 px), resized to 256 and centre-cropped to 224 as both released codes do
    (``transforms.Resize(256), CenterCrop(224)``); class names are OpenAI's ImageNet names of the 200 WordNet ids,
    with the released codes' single prompt "This is a photo of a {}"."""

    N_CLASSES = 200

    def __init__(self, root: str | os.PathLike, n_train: int, seed: int = 0):
        train = Path(root) / "train"
        if not train.is_dir():
            raise BenchError(f"TinyImageNet training folder not found: {train} (give --tinyimagenet-root or set "
                             "BENCH_TINYIMAGENET_ROOT to the tiny-imagenet-200 folder)")
        tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
        self.folder = datasets.ImageFolder(str(train), transform=tf)
        wnids, names = imagenet_wnids(), benchmark_data("classnames")["imagenet1k"]
        unknown = [c for c in self.folder.classes if c not in wnids]
        if len(self.folder.classes) != self.N_CLASSES or unknown:
            raise BenchError(f"{train} has {len(self.folder.classes)} class folders"
                             + (f" (not ImageNet WordNet ids: {unknown[0]}, …)" if unknown else "")
                             + f"; expected the {self.N_CLASSES} TinyImageNet classes")
        total = len(self.folder)
        self._subset = (np.arange(total) if n_train >= total
                        else np.sort(np.random.default_rng([seed, 13]).choice(total, n_train, replace=False)))
        self.n = len(self._subset)
        self.class_prompts = [[f"This is a photo of a {names[wnids.index(w)]}"] for w in self.folder.classes]
        self.description = f"TinyImageNet train at {root}, {self.n} images"
        self._pool = ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1))

    def load(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        items = list(self._pool.map(self.folder.__getitem__, self._subset[indices].tolist()))
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def train_data(suite: str, n_train: int, root: str | None, seed: int, train_set: str = "default"):
    """The training images of a paper recipe: ImageNet train (the default) or TinyImageNet train
    (``train_set="tinyimagenet"``); ``root`` is the folder, else the matching environment variable."""
    if train_set == "tinyimagenet":
        root = root or os.environ.get("BENCH_TINYIMAGENET_ROOT")
        if not root:
            raise BenchError("this recipe trains on TinyImageNet: give --tinyimagenet-root DIR or set "
                             "BENCH_TINYIMAGENET_ROOT")
        return TinyImageNetTrainData(root, n_train, seed=seed)
    root = root or os.environ.get("BENCH_IMAGENET_ROOT")
    if not root:
        raise BenchError("the paper recipe trains on ImageNet: give --imagenet-root DIR or set BENCH_IMAGENET_ROOT")
    return ImageFolderTrainData(root, n_train, seed=seed)
