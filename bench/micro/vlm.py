"""The micro suite's vision-language data: seeded test scenes of the micro world with their captions, questions and
target strings, read by the committed micro VLM (``tasks.vlm.micro``). The suite hands them to the captioning, VQA
and targeted tasks through ``Suite.load_vlm_data``."""

from __future__ import annotations

from bench.core.suite import check_dataset
from bench.micro.data import generate_indices, select_indices, whole_world_definition
from tasks import targeted
from tasks.captioning import CaptionData
from tasks.vlm.micro import load_micro_vlm
from tasks.vqa import VQAData

DATASETS = {"coco-captioning": ("micro-coco",), "vqav2": ("micro-vqa",), "targeted": ("micro-coco",)}
# small enough that the ensemble's 600 - 900 attack iterations per sample run in minutes on a CPU
# (docs/guide/vision-language.md)
SAMPLES = {"coco-captioning": 64, "vqav2": 64, "targeted": 32}
BATCH = {"coco-captioning": 64, "vqav2": 64, "targeted": 32}


def load_vlm_data(task: str, dataset: str, n_samples: int, seed: int):
    check_dataset("micro", task, dataset, DATASETS)
    if task == "vqav2":
        return load_questions(n_samples, seed, dataset)
    data = load_captions(n_samples, seed, dataset)
    return targeted.with_targets(data, targeted.targets_for("micro")) if task == "targeted" else data


def load_captions(n_samples: int, seed: int, dataset: str = "micro-coco") -> CaptionData:
    """``n_samples`` seeded micro test scenes with their five captions (four complete, one terse)."""
    indices = select_indices(n_samples, seed)
    split = generate_indices("test", indices)
    return CaptionData(dataset, indices, split.ids, split.images, [split.captions(i) for i in range(len(split))],
                       load_micro_vlm, "micro world, test split",
                       whole_world_definition("captions"))


def load_questions(n_samples: int, seed: int, dataset: str = "micro-vqa") -> VQAData:
    """One question per seeded micro test scene (which of its three questions: the scene index mod 3, so every
    kind of question appears)."""
    indices = select_indices(n_samples, seed)
    split = generate_indices("test", indices)
    chosen = [split.questions(i)[int(idx) % 3] for i, idx in enumerate(indices)]
    return VQAData(dataset, indices, [f"{sid}-q{int(idx) % 3}" for sid, idx in zip(split.ids, indices)],
                   split.images, [q.question for q in chosen], [q.answers for q in chosen], load_micro_vlm,
                   "micro world, test split", whole_world_definition("questions"))
