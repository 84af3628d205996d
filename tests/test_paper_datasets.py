"""Paper-suite zero-shot data: CLIP_benchmark webdatasets (local copy and hub cache), ImageNet-style folders and
torchvision copies, on the real CIFAR-10 and ImageNet slices and on tiny datasets built here; deterministic
selection; one-line errors for what is missing."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from conftest import requires_real_data
from hypothesis import given
from hypothesis import strategies as st
from test_paper_fakes import wds_shards, write_hub_file

from bench.core.errors import BenchError
from bench.paper import datasets
from bench.paper.datasets import DATASETS, benchmark_data, load_classification, select

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf"


@pytest.fixture(scope="module")
def cifar_slice():
    data = np.load(requires_real_data("cifar10") / "cifar10_test_first1017.npz")
    return data["x"][:60], data["y"][:60].astype(np.int64)


def test_cifar10_webdataset_copy_gives_native_pixels(tmp_path, offline, cifar_slice):
    x, y = cifar_slice
    templates = benchmark_data("templates")["cifar10"]
    wds_shards(tmp_path / "data" / "wds_vtab-cifar10", x, y, CIFAR10, templates)
    data = load_classification("cifar10", 25, seed=3, data_root=tmp_path / "data")
    assert data.images.shape == (25, 3, 32, 32) and data.images.dtype == np.uint8  # native resolution
    np.testing.assert_array_equal(data.images, x[data.indices])
    np.testing.assert_array_equal(data.labels, y[data.indices])
    assert data.ids == [f"s{i:07d}" for i in data.indices] and len(set(data.ids)) == 25
    assert data.classnames == CIFAR10 and len(data.class_prompts[0]) == len(templates) == 18
    assert data.class_prompts[3][0] == templates[0].format(c="cat")
    again = load_classification("cifar10", 25, seed=3, data_root=tmp_path / "data")
    assert again.ids == data.ids
    assert load_classification("cifar10", 25, seed=4, data_root=tmp_path / "data").ids != data.ids


def test_webdataset_from_the_hub_cache_and_resized_crops(tmp_path, offline):
    rng = np.random.default_rng(0)
    sizes = [(3, 300, 240), (3, 180, 400), (3, 224, 224)] * 4
    images = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in sizes]
    labels = np.arange(len(images)) % 3
    repo = tmp_path / "built"
    for i, img in enumerate(images):  # shards of ragged images: build each as its own one-image shard
        wds_shards(repo / f"part{i}", img[None], labels[i:i + 1], ["a", "b", "c"], ["a photo of a {c}."])
    for i in range(len(images)):
        src = repo / f"part{i}" / "test" / "0.tar"
        write_hub_file(offline, "clip-benchmark/wds_cars", f"test/{i}.tar", src.read_bytes(), "dataset")
    write_hub_file(offline, "clip-benchmark/wds_cars", "test/nshards.txt", str(len(images)).encode(), "dataset")
    write_hub_file(offline, "clip-benchmark/wds_cars", "classnames.txt", b"a\nb\nc\n", "dataset")
    data = load_classification("cars", 6, seed=0)
    assert data.images.shape == (6, 3, 224, 224)  # short side to 224, centre crop
    # keys repeat across these one-image shards, so ids are qualified by shard
    assert all("-s0000000" in i for i in data.ids) and len(set(data.ids)) == 6
    np.testing.assert_array_equal(data.labels, labels[data.indices])
    assert data.class_prompts[0][0] == benchmark_data("templates")["cars"][0].format(c="a")  # package prompts
    square = [k for k, p in enumerate(data.indices) if sizes[p] == (3, 224, 224)]
    for k in square:  # a 224-px image passes through unchanged
        np.testing.assert_array_equal(data.images[k], images[data.indices[k]])


def test_imagenet_folder_from_the_real_sample(tmp_path, offline):
    sample = requires_real_data("imagenet_sample")
    root = tmp_path / "data" / "imagenet" / "val"
    for f in sorted(sample.glob("*.JPEG")):
        (root / f.name.split("_")[0]).mkdir(parents=True, exist_ok=True)
        (root / f.name.split("_")[0] / f.name).symlink_to(f)
    data = load_classification("imagenet", 12, seed=0, data_root=tmp_path / "data")
    assert data.images.shape == (12, 3, 224, 224) and len(data.classnames) == 1000
    wnids = datasets.imagenet_wnids()
    names = benchmark_data("classnames")["imagenet1k"]
    for sid, label in zip(data.ids, data.labels):
        assert wnids[label] == sid.split("_")[0]
    assert names[wnids.index("n01582220")] == "magpie"
    assert len(data.class_prompts[0]) == 80  # OpenAI's ImageNet ensemble


def test_incomplete_folders_and_missing_data_are_one_line_errors(tmp_path, offline):
    (tmp_path / "data" / "imagenet-r" / "n01443537").mkdir(parents=True)
    with pytest.raises(BenchError, match="1 class folders, expected 200"):
        load_classification("imagenet-r", 1, 0, data_root=tmp_path / "data")
    with pytest.raises(BenchError) as err:
        load_classification("pcam", 1000, 0, data_root=tmp_path / "data")
    msg = str(err.value)
    assert "\n" not in msg and "wds_vtab-pcam" in msg and "hf download clip-benchmark/wds_vtab-pcam" in msg
    assert "--repo-type dataset" in msg and "HF_HUB_OFFLINE" in msg
    with pytest.raises(BenchError, match="unknown paper zero-shot dataset"):
        load_classification("cifar11", 1, 0)


def test_torchvision_copy(tmp_path, offline, cifar_slice, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    x, y = cifar_slice
    base = tmp_path / "data" / "cifar-10-batches-py"
    base.mkdir(parents=True)
    with open(base / "test_batch", "wb") as fh:
        pickle.dump({"data": x.reshape(len(x), -1), "labels": y.tolist()}, fh)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CIFAR10}, fh)
    # torchvision checks its files against the official md5 sums; this slice is a subset of the official file
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    data = load_classification("cifar10", 10, seed=1, data_root=tmp_path / "data")
    np.testing.assert_array_equal(data.images, x[data.indices])
    assert data.classnames == CIFAR10 and data.ids[0].startswith("test")


def test_thirteen_plus_imagenet():
    assert len(datasets.FARE_DATASETS) == 14 and len(datasets.THIRTEEN) == 13 and len(DATASETS) == 18
    assert {d for d, s in DATASETS.items() if s.native} == {"cifar10", "cifar100", "stl10"}
    assert DATASETS["caltech101"].repo == "clip-benchmark/wds_vtab-caltech101"
    assert shutil.which  # the module imports without the hub


@given(st.integers(1, 500), st.integers(0, 10_000), st.data())
def test_selection_is_a_pure_sorted_subset(total, seed, draw):
    n = draw.draw(st.integers(1, total))
    a = select(total, n, seed)
    assert np.array_equal(a, select(total, n, seed)) and len(set(a.tolist())) == n
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < total
