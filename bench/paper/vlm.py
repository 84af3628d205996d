"""The paper suite's vision-language data: COCO Karpathy test (captioning and the targeted attack) and VQAv2 val,
read by LLaVA-1.5-7B (``tasks.vlm.llava``); handed to the tasks through ``Suite.load_vlm_data``. Their files are
found through explicit environment variables or ``--data-root DIR`` (``$BENCH_DATA_ROOT``) in this layout:

    DIR/coco/annotations/karpathy_coco.json   (or dataset_coco.json; or an official captions_val2014.json)
    DIR/coco/val2014/…                         images (Karpathy's ``filepath``/``filename``, or ``file_name``)
    DIR/vqav2/v2_OpenEnded_mscoco_val2014_questions.json
    DIR/vqav2/v2_mscoco_val2014_annotations.json
    DIR/coco/val2014/COCO_val2014_<id>.jpg     VQAv2 images (or BENCH_VQAV2_IMAGES)

Environment variables (each overrides its part of the layout): ``BENCH_COCO_ANNOTATIONS``, ``BENCH_COCO_IMAGES``,
``BENCH_VQAV2_QUESTIONS``, ``BENCH_VQAV2_ANNOTATIONS``, ``BENCH_VQAV2_IMAGES``.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.suite import check_dataset
from tasks import captioning, targeted, vqa
from tasks.vlm import coco
from tasks.vlm.llava import load_llava_vlm

DATASETS = {"coco-captioning": ("coco",), "vqav2": ("vqav2",), "targeted": ("coco",)}
SAMPLES = {"coco-captioning": 500, "vqav2": 500, "targeted": 150}  # targeted: 25 images per target string
BATCH = {"coco-captioning": 1, "vqav2": 1, "targeted": 1}  # a 7B model's input gradients: one image at a time

COCO_KARPATHY = ("annotations/karpathy_coco.json", "dataset_coco.json", "annotations/dataset_coco.json",
                 "annotations/captions_val2014.json")
VQAV2_QUESTIONS = "v2_OpenEnded_mscoco_val2014_questions.json"
VQAV2_ANNOTATIONS = "v2_mscoco_val2014_annotations.json"


def load_vlm_data(task: str, dataset: str, n_samples: int, seed: int, data_root: Path | None = None):
    """The paper suite's data; the selection is the protocol's (seed 42), ``seed`` only seeds the attacks."""
    check_dataset("paper", task, dataset, DATASETS)
    if task == "vqav2":
        questions, answers, images = vqav2_paths(data_root)
        source = coco.read_vqa(questions, answers, images)
        pick = coco.select(len(source.ids), n_samples)
        return vqa.VQAData(dataset, pick, [source.ids[p] for p in pick],
                           coco.load_images([source.image_paths[p] for p in pick]),
                           [source.questions[p] for p in pick], [source.answers[p] for p in pick], load_llava_vlm,
                           str(questions))
    annotations, images = coco_paths(data_root)
    source = coco.read_captions(annotations, images)
    pick = coco.select(len(source.ids), n_samples)
    data = captioning.CaptionData(dataset, pick, [source.ids[p] for p in pick],
                                  coco.load_images([source.image_paths[p] for p in pick]),
                                  [source.references[p] for p in pick], load_llava_vlm, str(annotations))
    return targeted.with_targets(data, targeted.targets_for("paper")) if task == "targeted" else data


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def coco_paths(data_root: Path | None) -> tuple[Path, Path]:
    """(captions file, image directory) of COCO, from the environment or ``--data-root``."""
    annotations, images = _env_path("BENCH_COCO_ANNOTATIONS"), _env_path("BENCH_COCO_IMAGES")
    if annotations is None and data_root is not None:
        annotations = next((data_root / "coco" / c for c in COCO_KARPATHY if (data_root / "coco" / c).is_file()),
                           None)
    if annotations is None:
        raise BenchError("COCO captions not found: give --data-root DIR holding coco/annotations/karpathy_coco.json "
                         "(or dataset_coco.json, captions_val2014.json) and coco/val2014/, or set "
                         "BENCH_COCO_ANNOTATIONS and BENCH_COCO_IMAGES")
    if images is None:
        images = data_root / "coco" if data_root is not None else annotations.parent.parent
    return annotations, images


def vqav2_paths(data_root: Path | None) -> tuple[Path, Path, Path]:
    """(questions file, annotations file, image directory) of VQAv2 val."""
    root = data_root / "vqav2" if data_root is not None else None
    questions = _env_path("BENCH_VQAV2_QUESTIONS") or (root / VQAV2_QUESTIONS if root else None)
    annotations = _env_path("BENCH_VQAV2_ANNOTATIONS") or (root / VQAV2_ANNOTATIONS if root else None)
    if questions is None or annotations is None:
        raise BenchError(f"VQAv2 not found: give --data-root DIR holding vqav2/{VQAV2_QUESTIONS} and "
                         f"vqav2/{VQAV2_ANNOTATIONS} (images in coco/val2014/), or set BENCH_VQAV2_QUESTIONS, "
                         "BENCH_VQAV2_ANNOTATIONS and BENCH_VQAV2_IMAGES")
    images = _env_path("BENCH_VQAV2_IMAGES") or (data_root / "coco" if data_root is not None else questions.parent)
    return questions, annotations, images
