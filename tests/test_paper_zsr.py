"""The TGA-ZSR zero-shot table in the paper suites: its 16 datasets (Food-101 and SUN397 as CLIP_benchmark
webdatasets, Caltech-256 and TinyImageNet from local copies in their distributed layouts), the `paper-zsr` suite, and
TinyImageNet as a training set. Tiny fixtures built here; nothing downloads."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from test_paper_fakes import wds_shards

from bench.core.errors import BenchError
from bench.paper import datasets
from bench.paper.datasets import DATASETS, benchmark_data, folder_class_name, load_classification

TINY_WNIDS = ["n01443537", "n01629819", "n01641577"]  # goldfish, European fire salamander, bullfrog


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_image(path, seed: int, size=(48, 40)) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def test_the_tga_zsr_table_and_the_fare_protocol_stay_apart():
    assert len(datasets.TGA_ZSR_DATASETS) == 16 and set(datasets.TGA_ZSR_DATASETS) <= set(DATASETS)
    new = set(datasets.TGA_ZSR_DATASETS) - set(datasets.FARE_DATASETS)
    assert new == {"food101", "sun397", "caltech256", "tinyimagenet"}
    assert len(datasets.THIRTEEN) == 13 and "imagenet" not in datasets.THIRTEEN
    from bench.suites import get_suite

    assert get_suite("paper").tasks["zeroshot"] == datasets.FARE_DATASETS  # FARE's table is unchanged
    zsr = get_suite("paper-zsr")
    assert zsr.tasks["zeroshot"] == datasets.TGA_ZSR_DATASETS and zsr.n_samples == 1000
    # prompts for the two webdatasets come from the clip-benchmark package
    templates = benchmark_data("templates")
    assert templates["food101"] == ["a photo of {c}, a type of food."] and len(templates["sun397"]) == 2


@pytest.mark.parametrize("name,wds", [("food101", "wds_food101"), ("sun397", "wds_sun397")])
def test_food101_and_sun397_from_a_local_webdataset(tmp_path, offline, name, wds):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(9, 3, 256, 300), dtype=np.uint8)
    labels = np.arange(9) % 3
    names = ["apple pie", "baby back ribs", "baklava"] if name == "food101" else ["abbey", "airplane cabin", "alley"]
    wds_shards(tmp_path / "data" / wds, images, labels, names, benchmark_data("templates")[name])
    data = load_classification(name, 5, seed=1, data_root=tmp_path / "data")
    assert data.images.shape == (5, 3, 224, 224) and data.classnames == names
    np.testing.assert_array_equal(data.labels, labels[data.indices])
    assert data.class_prompts[1][0] == benchmark_data("templates")[name][0].format(c=names[1])


def test_caltech256_from_its_distributed_folders(tmp_path, offline, monkeypatch):
    root = tmp_path / "data" / "caltech256" / "256_ObjectCategories"
    folders = ["001.ak47", "145.motorbikes-101", "232.t-shirt", "257.clutter"]
    pixels = {}
    for k, folder in enumerate(folders):
        for i in range(3):
            pixels[(k, i)] = write_image(root / folder / f"{k + 1:03d}_{i + 1:04d}.jpg", seed=10 * k + i)
    with pytest.raises(BenchError, match="4 class folders, expected 257"):
        load_classification("caltech256", 4, seed=0, data_root=tmp_path / "data")
    monkeypatch.setitem(DATASETS, "caltech256", replace(DATASETS["caltech256"], n_classes=4))
    data = load_classification("caltech256", 12, seed=0, data_root=tmp_path / "data")
    assert data.classnames == ["ak47", "motorbikes", "t shirt", "clutter"]
    assert data.images.shape == (12, 3, 224, 224)
    assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert all(i.split("_")[0] in {"001", "145", "232", "257"} for i in data.ids)
    assert len(data.class_prompts[0]) == 80  # no prompts of its own: ImageNet's ensemble
    assert folder_class_name("198.spider") == "spider"


def test_caltech256_without_a_local_copy_is_a_one_line_error(tmp_path, offline):
    with pytest.raises(BenchError) as err:
        load_classification("caltech256", 10, seed=0, data_root=tmp_path)
    assert "\n" not in str(err.value) and "no CLIP_benchmark webdataset" in str(err.value)
    assert "256_ObjectCategories" in str(err.value)
    with pytest.raises(BenchError, match="needs a local copy"):
        load_classification("tinyimagenet", 10, seed=0)


def test_tinyimagenet_val_as_distributed_and_as_class_folders(tmp_path, offline, monkeypatch):
    val = tmp_path / "data" / "tiny-imagenet-200" / "val"
    lines = []
    for i in range(6):
        write_image(val / "images" / f"val_{i}.JPEG", seed=i, size=(64, 64))
        lines.append(f"val_{i}.JPEG\t{TINY_WNIDS[i % 3]}\t0\t0\t63\t63")
    (val / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(BenchError, match="names 3 classes.*expected 200"):
        load_classification("tinyimagenet", 6, seed=0, data_root=tmp_path / "data")
    monkeypatch.setitem(DATASETS, "tinyimagenet", replace(DATASETS["tinyimagenet"], n_classes=3))
    data = load_classification("tinyimagenet", 6, seed=0, data_root=tmp_path / "data")
    assert data.classnames == ["goldfish", "fire salamander", "American bullfrog"]  # OpenAI's ImageNet names
    assert data.images.shape == (6, 3, 224, 224)
    for sid, label in zip(data.ids, data.labels):
        assert TINY_WNIDS[label] == sid.split("_")[0]
    # the layout TGA-ZSR's code reads: the same split sorted into <wnid>/ folders
    (val / "val_annotations.txt").unlink()
    for i in range(6):
        (val / TINY_WNIDS[i % 3]).mkdir(exist_ok=True)
        (val / "images" / f"val_{i}.JPEG").rename(val / TINY_WNIDS[i % 3] / f"val_{i}.JPEG")
    (val / "images").rmdir()
    again = load_classification("tinyimagenet", 6, seed=0, data_root=tmp_path / "data")
    assert again.classnames == data.classnames and sorted(again.labels.tolist()) == [0, 0, 1, 1, 2, 2]


def test_tinyimagenet_training_set(tmp_path, monkeypatch):
    from bench.paper import train_data as train_data_module

    root = tmp_path / "tiny-imagenet-200"
    for k, wnid in enumerate(TINY_WNIDS):
        for i in range(2):
            write_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", seed=k * 10 + i, size=(64, 64))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")  # in the real layout; not an image
    with pytest.raises(BenchError, match="3 class folders; expected the 200"):
        train_data_module.train_data("paper-zsr", 6, str(root), 0, "tinyimagenet")
    monkeypatch.setattr(train_data_module.TinyImageNetTrainData, "N_CLASSES", 3)
    monkeypatch.setenv("BENCH_TINYIMAGENET_ROOT", str(root))
    data = train_data_module.train_data("paper-zsr", 4, None, 0, "tinyimagenet")
    x, y = data.load(np.arange(4))
    assert x.shape == (4, 3, 224, 224) and float(x.min()) >= 0 and float(x.max()) <= 1 and data.n == 4
    assert data.class_prompts[0] == ["This is a photo of a goldfish"] and len(data.class_prompts) == 3
    monkeypatch.delenv("BENCH_TINYIMAGENET_ROOT")
    with pytest.raises(BenchError, match="--tinyimagenet-root"):
        train_data_module.train_data("paper-zsr", 4, None, 0, "tinyimagenet")
