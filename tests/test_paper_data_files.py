"""The paper suites, their datasets and the published training recipes are data files (``bench/paper/suites.toml``,
``bench/paper/datasets.toml``, ``bench/train/objectives/paper_recipes.toml``): a published checkpoint is one line, and
a malformed file is refused in one line that names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core.errors import BenchError
from bench.paper import datasets, encoders
from bench.train import recipes
from bench.train.objectives import OBJECTIVES


def edited(tmp_path: Path, original: Path, old: str, new: str) -> Path:
    text = original.read_text()
    assert old in text, old
    path = tmp_path / original.name
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_published_checkpoint_is_one_line(tmp_path):
    path = edited(tmp_path, encoders.CATALOGUE, 'fare4 = "hf-hub:chs20/FARE4-ViT-B-32-laion2B-s34B-b79K"\n',
                  'fare4 = "hf-hub:chs20/FARE4-ViT-B-32-laion2B-s34B-b79K"\n'
                  'tecoa2 = "hf-hub:someone/TeCoA2-ViT-B-32/tower.pt"\n')
    families = encoders.read_families(path)
    assert str(families["paper-b32"].sources["tecoa2"]) == "hf-hub:someone/TeCoA2-ViT-B-32/tower.pt"
    assert type(families["paper-b32"].sources["tecoa2"]).__name__ == "HubTower"
    assert families["paper-zsr"].sources == families["paper-b32-openai"].sources  # checkpoints_from
    assert {n: f.recipe_suite for n, f in families.items()} == {"paper": "paper", "paper-b32": None,
                                                                "paper-b16": None, "paper-b32-openai": None,
                                                                "paper-zsr": "paper-zsr"}


SUITE_ERRORS = [
    ('quick_gelu = false\nzeroshot = "fare"\n', 'quick_gelu = "no"\nzeroshot = "fare"\n',
     "paper-b32.quick_gelu: expected true or false, got a string ('no')"),
    ('tag = "laion2b_s34b_b79k"\n', 'tag = "laion2b_s34b_b79k"\nlayers = 12\n', "paper-b32.layers: unknown field"),
    ('checkpoints_from = "paper-b32-openai"', 'checkpoints_from = "paper-b99"',
     "paper-zsr.checkpoints_from: 'paper-b99' is not a suite defined above it"),
    ('fare2 = "hf-hub:chs20/fare2-clip"', 'fare2 = "hf-hub:chs20"',
     "paper.checkpoints.fare2: 'hf-hub:chs20': expected hf-hub:ORG/REPO"),
    ('fare2 = "hf-hub:chs20/fare2-clip"', 'Fare2 = "hf-hub:chs20/fare2-clip"',
     "paper.checkpoints.Fare2: 'Fare2' is not a name"),
]


@pytest.mark.parametrize("old,new,expected", SUITE_ERRORS)
def test_a_malformed_suites_file_is_one_line(tmp_path, old, new, expected):
    path = edited(tmp_path, encoders.CATALOGUE, old, new)
    with pytest.raises(BenchError) as info:
        encoders.read_families(path)
    message = str(info.value)
    assert message.startswith(f"paper suites {path}: ") and expected in message and "\n" not in message
    assert message.count(str(path)) == 1


DATASET_ERRORS = [
    ('"pcam", "imagenet-r"', '"pcam", "imagenet-rr"', "tables.fare: 'imagenet-rr' is not in [datasets]"),
    ('folder = "imagenet/val"', 'folder = "imagenet/val"\nresolution = 224', "datasets.imagenet.resolution: unknown"),
    ('[datasets.cars]\nwds = "cars"\nbenchmark_key = "cars"', '[datasets.cars]\nwds = "cars"',
     "datasets.cars.benchmark_key: missing (required)"),
]


@pytest.mark.parametrize("old,new,expected", DATASET_ERRORS)
def test_a_malformed_datasets_file_is_one_line(tmp_path, old, new, expected):
    path = edited(tmp_path, datasets.CATALOGUE, old, new)
    with pytest.raises(BenchError) as info:
        datasets.read_catalogue(path)
    assert str(info.value).startswith(f"paper datasets {path}: ") and expected in str(info.value)


def test_every_objective_has_a_published_recipe():
    assert set(recipes.published_recipes()) == set(OBJECTIVES.names())
    for method in OBJECTIVES.names():
        cfg = recipes.recipe("paper", method, 4)
        assert cfg.suite == "paper" and cfg.steps >= 1000 and cfg.inner_step_size == 1 / 255


RECIPE_ERRORS = [
    ('source = "chs20/RobustVLM README.md:282"\n', "", "fare.source: missing"),
    ("steps = 20_000\n", "steps = 20_000\nepochs = 10\n", "fare.epochs: unknown field"),
    ("steps = 20_000\n", 'steps = "many"\n', "fare.steps: expected an integer"),
    ("lr = 1e-5\n", "", "fare.lr: missing (required)"),
]


@pytest.mark.parametrize("old,new,expected", RECIPE_ERRORS)
def test_a_malformed_recipes_file_is_one_line(tmp_path, old, new, expected):
    path = edited(tmp_path, recipes.PAPER_RECIPES, old, new)
    with pytest.raises(BenchError) as info:
        recipes.published_recipes(path)
    assert str(info.value).startswith(f"paper recipes {path}: ") and expected in str(info.value)
