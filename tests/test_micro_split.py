"""The micro experiment's split, proven from the generator and the prompt sets: fine-tuning sees neither the
evaluation prompts nor the held-out attribute values, and every zero-shot dataset's images differ from the
fine-tuning distribution in what the dataset says it holds out."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv
from scipy import ndimage

from bench.micro.data import generate_dataset, generate_indices
from bench.micro.datasets import DATASETS, FINETUNING_SET, held_out
from bench.micro.world import HUE_JITTER_DEG, HUES_DEG

N_FINETUNE = 3000  # fine-tuning scenes checked (train and validation splits)
N_DATASET = 300  # scenes per evaluation dataset
ZERO_SHOT = [d for d in DATASETS.values() if d.role == "zero-shot"]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture(scope="module")
def finetune():
    spec = FINETUNING_SET
    return [generate_indices(split, range(N_FINETUNE // 2), within=spec.within, stream=spec.stream)
            for split in ("train", "val")]


@pytest.fixture(scope="module")
def datasets():
    return {d.name: generate_dataset(d.name, "test", range(N_DATASET)) for d in DATASETS.values()}


def test_no_finetuning_prompt_is_in_any_evaluation_ensemble():
    finetuning = {p for cls in FINETUNING_SET.class_prompts for p in cls}
    for spec in DATASETS.values():
        evaluation = {p for cls in spec.class_prompts() for p in cls}
        assert not finetuning & evaluation, spec.name


def test_every_zero_shot_dataset_holds_something_out():
    for spec in ZERO_SHOT:
        out = held_out(spec)
        assert out.values or out.vocabulary or out.styles, spec.name


def test_no_held_out_value_occurs_in_any_finetuning_scene(finetune):
    scenes = [s for split in finetune for s in split.scenes]
    for spec in ZERO_SHOT:
        for attribute, values in held_out(spec).values.items():
            seen = {getattr(s, attribute) for s in scenes}
            assert not seen & set(values), (spec.name, attribute, seen & set(values))
        assert not {s.style for s in scenes} & set(held_out(spec).styles), spec.name


def test_held_out_vocabulary_is_in_no_finetuning_prompt():
    trained = set().union(*(words(p) for cls in FINETUNING_SET.class_prompts for p in cls))
    for spec in ZERO_SHOT:
        for name in held_out(spec).vocabulary:
            assert not words(name) & trained, (spec.name, name)


# --- the images themselves differ in what each dataset holds out -------------------------------------------------

def coloured_hues(images: np.ndarray) -> np.ndarray:
    """Hue (degrees) of every saturated, bright pixel: the objects' pixels (backgrounds are nearly grey)."""
    hsv = rgb_to_hsv(images.transpose(0, 2, 3, 1).reshape(-1, 3) / 255.0)
    keep = (hsv[:, 1] > 0.3) & (hsv[:, 2] > 0.45)
    return hsv[keep, 0] * 360


def in_band(hues: np.ndarray, band: tuple[float, float]) -> float:
    return float(np.mean((hues >= band[0]) & (hues <= band[1])))


def object_mask(image: np.ndarray) -> np.ndarray:
    rgb = image.transpose(1, 2, 0) / 255.0
    return (rgb.max(2) - rgb.min(2)) > 0.18


def test_held_out_hues_appear_only_in_their_datasets(finetune, datasets):
    for spec in ZERO_SHOT:
        colours = held_out(spec).values.get("colour")
        if not colours:
            continue
        band = (min(HUES_DEG[c] for c in colours) - HUE_JITTER_DEG - 10,
                max(HUES_DEG[c] for c in colours) + HUE_JITTER_DEG + 10)
        assert in_band(coloured_hues(finetune[0].images[:300]), band) < 0.01, spec.name
        assert in_band(coloured_hues(datasets[spec.name].images), band) > 0.9, spec.name


def test_held_out_counts_appear_only_in_their_datasets(finetune, datasets):
    def objects(image):  # connected coloured blobs larger than pixel noise
        labels, n = ndimage.label(ndimage.binary_opening(object_mask(image)))
        return sum(int((labels == k).sum()) > 12 for k in range(1, n + 1))

    for spec in ZERO_SHOT:
        counts = held_out(spec).values.get("count")
        if not counts:
            continue
        ft = {objects(img) for img in finetune[0].images[:300]}
        ds = [objects(img) for img in datasets[spec.name].images]
        assert max(ft) < min(counts), spec.name
        assert sum(c in counts for c in ds) > 0.15 * len(ds), spec.name


def test_held_out_domains_look_different(finetune, datasets):
    """Outlines cover far less of an object's area than solid fills; stripes cover about half."""
    solid = np.mean([object_mask(img).mean() for img in finetune[0].images[:300]])
    for spec in ZERO_SHOT:
        for style in held_out(spec).styles:
            cover = np.mean([object_mask(img).mean() for img in datasets[spec.name].images])
            ratio = cover / solid
            assert ratio < {"outline": 0.45, "striped": 0.8}[style], (spec.name, style, ratio)


def silhouettes(split, per_image: int = 1) -> np.ndarray:
    """The object mask of one occupied cell per scene, cut to its bounding box and resized to 12 × 12."""
    from PIL import Image

    out = []
    for image, scene in zip(split.images, split.scenes):
        mask = object_mask(image)
        half = mask.shape[0] // 2
        r, c = divmod(scene.cells[0], 2)
        cell = mask[r * half:(r + 1) * half, c * half:(c + 1) * half]
        ys, xs = np.nonzero(cell)
        if len(ys) < 20:
            continue
        crop = cell[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.uint8) * 255
        out.append(np.asarray(Image.fromarray(crop).resize((12, 12), Image.BILINEAR), dtype=np.float32) / 255)
    return np.stack(out).reshape(len(out), -1)


def test_held_out_shapes_look_unlike_every_finetuning_shape(finetune, datasets):
    """Nearest-neighbour distance between silhouettes: a held-out shape's objects lie farther from the fine-tuning
    silhouettes than fine-tuning objects of the other split do."""
    bank = silhouettes(finetune[0])
    within = silhouettes(finetune[1])

    def nearest(queries):
        return np.array([np.sqrt(((bank - q) ** 2).sum(1)).min() for q in queries])

    for spec in ZERO_SHOT:
        shapes = held_out(spec).values.get("shape")
        if not shapes:
            continue
        novel = silhouettes(datasets[spec.name])
        assert np.median(nearest(novel)) > 1.5 * np.median(nearest(within)), spec.name
