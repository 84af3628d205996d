"""Pinned identities: what stored results and cached checkpoints are keyed by must not move when definitions move
between code and data files. The values were computed on main before the protocols, the paper suites and the paper
recipes became data (``attacks/presets/*.toml``, ``bench/paper/*.toml``); a change here would orphan every stored
cell or retrain every cached encoder, so it must be deliberate (and then the pins are updated in the same change)."""

from __future__ import annotations

import dataclasses

import pytest

from attacks import ENGINE_VERSION
from attacks.registry import ATTACKS
from bench.core.config import CellConfig, config_hash
from bench.micro.encoders import micro_card
from bench.suites import SUITES, get_suite
from tasks.zeroshot import ZeroShotTask

# config_hash(protocol.definition()) of every built-in classification protocol
PROTOCOL_DEFINITIONS = {"none": "57146b7306", "pgd-10": "6dcf3540ae", "pgd-100": "1557fc3cdf",
                        "pgd-100-tga": "fb0c11f9f7", "apgd": "48b216c7c5", "apgd-dlr": "07ed030dc7",
                        "aa-custom": "60f254fdad"}
ALIASES = {"none": ("clean",), "apgd": ("apgd-ce",)}
# the run id of the micro CLIP's novel-colours cell at 4/255, 100 samples, seed 0 (world v2: the dataset's
# definition is part of the identity; world v1's colour cells had other names and ids)
RUN_IDS = {"apgd": "clip-zeroshot-novel-colours-apgd-4_255-61804e4d73",
           "aa-custom": "clip-zeroshot-novel-colours-aa-custom-4_255-3bb7645694",
           "pgd-100-tga": "clip-zeroshot-novel-colours-pgd-100-tga-4_255-5ab08882c3"}
# training-cache keys: (method) -> (micro 4/255, paper 4/255, paper-zsr 1/255, paper 2/255)
RECIPE_KEYS = {"agft": ("7ee851e6d6d2", "38cd6cc39ceb", "274157f4b33f", "8607d873f4d4"),
               "fare": ("24af9440e36d", "6b570ec1e586", "f9576ea065c8", "77519980768c"),
               "pmg-aft": ("339383914411", "91a49967298f", "a856d1b2266c", "5a86a05e17c3"),
               "simclip": ("7188f916d633", "812009a268c0", "522938240efc", "339f42597adf"),
               "simclip-siamese": ("0c81a4f4bc56", "20f193ff73e6", "9d9797afa559", "c6d018baa26f"),
               "tecoa": ("02607e2265bd", "aac22d2b7e4e", "ef9c208602d4", "74e8e82544b4"),
               "tga-zsr": ("2e1c8fb2de8f", "3b94a6ac8afe", "a1eeffba5916", "ff9f1bf7d9fe")}
# config_hash of each paper suite as ``paper_suite_summary`` describes it, and of the zero-shot dataset catalogue
PAPER_SUITES = {"paper": "aaee36bd00", "paper-b32": "eacdd247e5", "paper-b32-openai": "96bec6d295",
                "paper-zsr": "f86942b976"}
PAPER_DATASETS = "60e8bef356"


@pytest.mark.parametrize("name", sorted(PROTOCOL_DEFINITIONS))
def test_builtin_protocol_definitions_are_pinned(name):
    entry = ATTACKS.entry(name)
    assert config_hash(entry.value.definition()) == PROTOCOL_DEFINITIONS[name]
    assert entry.aliases == ALIASES.get(name, ())


@pytest.mark.parametrize("attack", sorted(RUN_IDS))
def test_run_ids_of_builtin_protocols_are_pinned(attack):
    protocol = ATTACKS.get(attack)
    cfg = CellConfig("micro", "clip", micro_card()["sha256"], "zeroshot", "novel-colours", protocol.name, 4 / 255,
                     "4/255",
                     100, 0, protocol=protocol.definition(), metric_definition=ZeroShotTask.metric_definition,
                     engine_version=ENGINE_VERSION)
    assert cfg.run_id == RUN_IDS[attack]


@pytest.mark.parametrize("method", sorted(RECIPE_KEYS))
def test_training_cache_keys_are_pinned(method):
    from bench.train.recipes import recipe

    keys = (recipe("micro", method, 4).hash, recipe("paper", method, 4).hash, recipe("paper-zsr", method, 1).hash,
            recipe("paper", method, 2).hash)
    assert keys == RECIPE_KEYS[method]


def paper_suite_summary(name: str) -> dict:
    """Everything a paper suite is made of: its base, its published checkpoints and what it runs."""
    from bench.paper.encoders import FAMILIES

    family, suite = FAMILIES[name], get_suite(name)
    return {"arch": family.arch, "tag": family.tag, "quick_gelu": family.quick_gelu,
            "recipe_suite": family.recipe_suite,
            "checkpoints": {k: str(v) for k, v in family.sources.items()},
            "kinds": {k: type(v).__name__ for k, v in family.sources.items()},
            "tasks": {k: list(v) for k, v in suite.tasks.items()}, "n_samples": suite.n_samples,
            "batch": suite.batch_size, "task_samples": suite.task_samples, "task_batch": suite.task_batch_size,
            "default_tasks": list(suite.default_tasks), "description": SUITES.entry(name).description}


@pytest.mark.parametrize("name", sorted(PAPER_SUITES))
def test_paper_suites_are_pinned(name):
    assert config_hash(paper_suite_summary(name)) == PAPER_SUITES[name], paper_suite_summary(name)


def test_paper_dataset_catalogue_is_pinned():
    from bench.paper.datasets import DATASETS

    assert config_hash({k: dataclasses.asdict(v) for k, v in DATASETS.items()}) == PAPER_DATASETS
