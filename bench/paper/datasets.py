"""The zero-shot datasets of the FARE protocol (13 + ImageNet) and of the TGA-ZSR table (16, four of them not in
FARE's), from the CLIP_benchmark webdatasets on the hub, a local copy of them, an ImageNet-style folder, a
torchvision copy or a local folder of named classes — and a deterministic, seeded 1,000-sample selection.

Where the data come from decides the class names and prompts, exactly as CLIP_benchmark does in the protocol:
a webdataset carries its own ``classnames.txt`` and ``zeroshot_classification_templates.txt``; every other source
takes them from the ``clip-benchmark`` package's data (OpenAI's class names and prompt ensembles), with ImageNet's
80 prompts where a dataset has none of its own.

Images are kept as uint8 (N, 3, H, W). CIFAR and STL stay at their native 32 / 96 px (the encoder resizes inside its
forward, so the attack acts on the native pixels); all others go through the protocol's preprocessing without the
normalisation: resize the short side to 224 px (bicubic) and centre-crop 224 px, as CLIP_benchmark's transform does.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd
from PIL import Image
from torchvision.transforms import CenterCrop, InterpolationMode, Resize

from bench.core.config import safe_component
from bench.core.datafile import DataFile
from bench.core.errors import BenchError
from bench.core.hub import hub_snapshot
from tasks.zeroshot import ClassificationData

IMAGE_SIZE = 224
IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")
HUB_ORG = "clip-benchmark"


@dataclass(frozen=True)
class ZeroShotSpec:
    """One zero-shot dataset of the paper suites (an entry of ``datasets.toml``)."""

    name: str
    wds: str | None  # the CLIP_benchmark webdataset: hf-hub:clip-benchmark/wds_<wds>; None: there is none
    benchmark_key: str  # its key in clip-benchmark's classnames / templates data
    native: bool = False  # attacked at native resolution
    folder: str | None = None  # ImageNet-style <wnid>/<image> folder under --data-root
    torchvision: str | None = None  # torchvision dataset class reading a local copy under --data-root
    n_classes: int | None = None  # checked for folder sources, where a partial copy would shrink the task
    named_folder: str | None = None  # <NNN.class name>/<image> folders under --data-root (Caltech-256's layout)

    @property
    def repo(self) -> str:
        return f"{HUB_ORG}/wds_{self.wds}"


CATALOGUE = Path(__file__).resolve().parent / "datasets.toml"


def read_catalogue(path: Path = CATALOGUE) -> tuple[dict[str, ZeroShotSpec], dict[str, tuple[str, ...]]]:
    """(datasets by name, dataset tables by name) of a catalogue file (``datasets.toml``: its schema is there)."""
    data = DataFile(path, "paper datasets")
    raw = data.load()
    data.check(set(raw) <= {"datasets", "tables"}, "", f"unknown section(s) {sorted(set(raw) - {'datasets', 'tables'})}"
               " (known: datasets, tables)")
    specs = {}
    for name, table in raw.get("datasets", {}).items():
        specs[name] = ZeroShotSpec(data.name(name, f"datasets.{name}"),
                                   **data.table(table, f"datasets.{name}", ZeroShotSpec, skip=("name",)))
    tables = {}
    for name, names in raw.get("tables", {}).items():
        tables[name] = data.typed(names, f"tables.{name}", "tuple[str, ...]")
        unknown = [d for d in tables[name] if d not in specs]
        data.check(not unknown, f"tables.{name}", f"{unknown[0] if unknown else ''!r} is not in [datasets]")
    return specs, tables


DATASETS, TABLES = read_catalogue()
FARE_DATASETS = TABLES["fare"]
THIRTEEN = FARE_DATASETS[:-1]  # the FARE protocol's 13-dataset mean (ImageNet excluded)
TGA_ZSR_DATASETS = TABLES["tga-zsr"]


@lru_cache(maxsize=2)
def benchmark_data(kind: str) -> dict:
    """clip-benchmark's packaged English class names ("classnames") or prompt templates ("templates")."""
    name = {"classnames": "en_classnames.json", "templates": "en_zeroshot_classification_templates.json"}[kind]
    try:
        return json.loads((resources.files("clip_benchmark.datasets") / name).read_text())
    except ModuleNotFoundError as exc:
        raise BenchError("the paper suite takes class names and prompts from the clip-benchmark package: "
                         "pip install clip-benchmark") from exc


def templates_for(key: str) -> list[str]:
    data = benchmark_data("templates")
    return list(data.get(key) or data["imagenet1k"])


@lru_cache(maxsize=1)
def imagenet_wnids() -> list[str]:
    # deferred: clip_benchmark's dataset builder takes a second to import; only folder sources need it
    from clip_benchmark.datasets.builder import all_imagenet_wordnet_ids

    return list(all_imagenet_wordnet_ids)


def prompts(classnames: list[str], templates: list[str]) -> list[list[str]]:
    return [[t.format(c=name) for t in templates] for name in classnames]


# ---------------------------------------------------------------- sources: a catalogue of (id, label), then pixels


class WebDatasetSource:
    """``<dir>/test/{nshards.txt, 0.tar, …}`` plus ``classnames.txt`` and ``zeroshot_classification_templates.txt``:
    the layout of the CLIP_benchmark hub repositories (and of a local ``hf download`` of one)."""

    def __init__(self, root: Path, spec: ZeroShotSpec, origin: str):
        self.root, self.spec, self.origin = root, spec, origin
        try:
            n = int((root / "test" / "nshards.txt").read_text().strip())
        except (OSError, ValueError) as exc:
            raise BenchError(f"dataset {spec.name}: {root}/test/nshards.txt is missing or unreadable") from exc
        self.shards = [root / "test" / f"{i}.tar" for i in range(n)]
        missing = [s.name for s in self.shards if not s.is_file()]
        if missing:
            raise BenchError(f"dataset {spec.name}: {root}/test lacks shard(s) {', '.join(missing[:3])} of {n}; "
                             "the download is incomplete")
        self.members: list[tuple[int, str]] = []  # per sample: (shard, image member)
        keys, labels = [], []
        for si, shard in enumerate(self.shards):
            for key, image, label in _scan_shard(shard, spec.name):
                keys.append(key)
                labels.append(label)
                self.members.append((si, image))
        if len(set(keys)) != len(keys):  # keys repeat across shards: qualify them by shard
            keys = [f"{si}-{k}" for (si, _), k in zip(self.members, keys)]
        self.ids = unique_ids(keys)
        self.labels = np.asarray(labels, dtype=np.int64)
        names = root / "classnames.txt"
        package = benchmark_data("classnames").get(spec.benchmark_key)
        self.classnames = (_lines(names) if names.is_file() else package) or []
        tfile = root / "zeroshot_classification_templates.txt"
        self.templates = _lines(tfile) if tfile.is_file() else templates_for(spec.benchmark_key)

    def images(self, positions: np.ndarray) -> np.ndarray:
        by_shard: dict[int, list[int]] = {}
        for p in positions.tolist():
            by_shard.setdefault(self.members[p][0], []).append(p)
        out: dict[int, np.ndarray] = {}
        for si, ps in by_shard.items():
            with tarfile.open(self.shards[si]) as tar:
                for p in ps:
                    fh = tar.extractfile(self.members[p][1])
                    out[p] = _pixels(fh.read(), self.spec)
        return _stack([out[p] for p in positions.tolist()], self.spec)


def _scan_shard(path: Path, dataset: str):
    """(key, image member, label) of each sample of one shard, in file order; webdataset's key rule: the member
    path up to the first dot of its base name."""
    samples: dict[str, dict] = {}
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                if not m.isfile():
                    continue
                head, _, base = m.name.rpartition("/")
                stem, _, ext = base.partition(".")
                key = f"{head}/{stem}" if head else stem
                entry = samples.setdefault(key, {})
                if ext.lower() in IMAGE_EXTENSIONS:
                    entry["image"] = m.name
                elif ext == "cls":
                    entry["label"] = int(tar.extractfile(m).read().decode().strip())
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise BenchError(f"dataset {dataset}: cannot read shard {path}: {exc}") from exc
    for key, entry in samples.items():
        if "image" in entry and "label" in entry:
            yield key, entry["image"], entry["label"]


def unique_ids(keys: list[str]) -> list[str]:
    """Sample ids safe as file-name parts (the store names batch files after them), unique, else positional."""
    ids = [safe_component(k) for k in keys]
    return ids if len(set(ids)) == len(ids) else [f"n{i:07d}" for i in range(len(keys))]


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class FolderSource:
    """``<root>/<wnid>/<image>``: ImageNet val (sorted into class folders), ImageNet-R, ImageNet-Sketch. The label
    space is ImageNet's 1,000 classes in their standard (sorted WordNet id) order, or for ImageNet-R its 200."""

    def __init__(self, root: Path, spec: ZeroShotSpec):
        self.root, self.spec, self.origin = root, spec, f"folder {root}"
        dirs = sorted(p.name for p in root.iterdir() if p.is_dir())
        wnids = imagenet_wnids()
        unknown = sorted(set(dirs) - set(wnids))
        if unknown:
            raise BenchError(f"dataset {spec.name}: {root} has folders that are not ImageNet classes "
                             f"(e.g. {unknown[0]}); expected one folder per WordNet id")
        space = dirs if spec.n_classes else wnids
        if spec.n_classes and len(space) != spec.n_classes:
            raise BenchError(f"dataset {spec.name}: {root} has {len(space)} class folders, expected "
                             f"{spec.n_classes}; the copy is incomplete")
        names = benchmark_data("classnames")["imagenet1k"]
        self.classnames = [names[wnids.index(w)] for w in space]
        self.templates = templates_for(spec.benchmark_key)
        label_of = {w: i for i, w in enumerate(space)}
        self.files = sorted(p for d in dirs for p in (root / d).iterdir()
                            if p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)
        if not self.files:
            raise BenchError(f"dataset {spec.name}: no images in {root}/<wnid>/")
        self.labels = np.asarray([label_of[p.parent.name] for p in self.files], dtype=np.int64)
        self.ids = unique_ids([f"{p.parent.name}_{p.stem}" for p in self.files])

    def images(self, positions: np.ndarray) -> np.ndarray:
        return _stack([_pixels(self.files[p].read_bytes(), self.spec) for p in positions.tolist()], self.spec)


class TinyImageNetValSource(FolderSource):
    """tiny-imagenet-200's validation split as distributed: ``val/images/*.JPEG`` with ``val/val_annotations.txt``
    (image, WordNet id, box) instead of class folders; 200 of ImageNet's classes, 50 images each, 64 px."""

    def __init__(self, root: Path, spec: ZeroShotSpec):
        self.root, self.spec, self.origin = root, spec, f"folder {root}"
        label_of_file = {}
        for line in (root / "val_annotations.txt").read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                label_of_file[parts[0]] = parts[1]
        space = sorted(set(label_of_file.values()))
        wnids = imagenet_wnids()
        unknown = sorted(set(space) - set(wnids))
        if unknown or len(space) != spec.n_classes:
            raise BenchError(f"dataset {spec.name}: {root}/val_annotations.txt names {len(space)} classes"
                             + (f" (not ImageNet WordNet ids: {unknown[0]}, …)" if unknown else "")
                             + f", expected {spec.n_classes}")
        names = benchmark_data("classnames")["imagenet1k"]
        self.classnames = [names[wnids.index(w)] for w in space]
        self.templates = templates_for(spec.benchmark_key)
        self.files = sorted(p for p in (root / "images").iterdir() if p.name in label_of_file)
        if not self.files:
            raise BenchError(f"dataset {spec.name}: none of the images of {root}/val_annotations.txt is in "
                             f"{root}/images/")
        label = {w: i for i, w in enumerate(space)}
        self.labels = np.asarray([label[label_of_file[p.name]] for p in self.files], dtype=np.int64)
        self.ids = unique_ids([f"{label_of_file[p.name]}_{p.stem}" for p in self.files])


class NamedFolderSource:
    """``<root>/<NNN.class name>/<image>``: Caltech-256 as distributed (``256_ObjectCategories``), every folder a
    class (257 with ``257.clutter``, as the TGA-ZSR evaluation keeps it), no test split (the whole set). Class names
    come from the folders the way the TGA-ZSR code refines them (``replace/datasets/caltech.py`` l. 200-208): the
    number prefix and a ``-101`` suffix dropped, ``_`` and ``-`` read as spaces, lower case."""

    def __init__(self, root: Path, spec: ZeroShotSpec):
        self.root, self.spec, self.origin = root, spec, f"folder {root}"
        dirs = sorted(p.name for p in root.iterdir() if p.is_dir())
        if spec.n_classes and len(dirs) != spec.n_classes:
            raise BenchError(f"dataset {spec.name}: {root} has {len(dirs)} class folders, expected "
                             f"{spec.n_classes}; the copy is incomplete")
        self.classnames = [folder_class_name(d) for d in dirs]
        self.templates = templates_for(spec.benchmark_key)
        self.files = sorted(p for d in dirs for p in (root / d).iterdir()
                            if p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)
        if not self.files:
            raise BenchError(f"dataset {spec.name}: no images in {root}/<class>/")
        label_of = {d: i for i, d in enumerate(dirs)}
        self.labels = np.asarray([label_of[p.parent.name] for p in self.files], dtype=np.int64)
        self.ids = unique_ids([f"{p.parent.name.split('.')[0]}_{p.stem}" for p in self.files])

    def images(self, positions: np.ndarray) -> np.ndarray:
        return _stack([_pixels(self.files[p].read_bytes(), self.spec) for p in positions.tolist()], self.spec)


def folder_class_name(folder: str) -> str:
    """``"003.backpack"`` → ``"backpack"``, ``"232.t-shirt"`` → ``"t shirt"``, ``"145.motorbikes-101"`` →
    ``"motorbikes"``."""
    _, _, name = folder.partition(".")
    return (name or folder).replace("-101", "").lower().replace("_", " ").replace("-", " ").strip()


class TorchvisionSource:
    """A local torchvision copy (``CIFAR10``, ``CIFAR100``, ``STL10``) under --data-root; test split."""

    def __init__(self, root: Path, spec: ZeroShotSpec, dataset):
        self.spec, self.origin = spec, f"torchvision {spec.torchvision} at {root}"
        data = np.asarray(dataset.data)
        self.array = data if data.shape[1] == 3 else data.transpose(0, 3, 1, 2)  # CIFAR stores HWC, STL CHW
        self.labels = np.asarray(dataset.targets if hasattr(dataset, "targets") else dataset.labels, dtype=np.int64)
        self.classnames = benchmark_data("classnames").get(spec.benchmark_key) or list(dataset.classes)
        self.templates = templates_for(spec.benchmark_key)
        self.ids = [f"test{i:05d}" for i in range(len(self.labels))]

    def images(self, positions: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.array[positions])


def open_torchvision(root: Path, spec: ZeroShotSpec):
    cls = getattr(tvd, spec.torchvision)
    kwargs = {"split": "test"} if spec.torchvision == "STL10" else {"train": False}
    try:
        return cls(str(root), download=False, **kwargs)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        return None


def _pixels(blob: bytes, spec: ZeroShotSpec) -> np.ndarray:
    img = Image.open(io.BytesIO(blob)).convert("RGB")
    if not spec.native:
        img = CenterCrop(IMAGE_SIZE)(Resize(IMAGE_SIZE, interpolation=InterpolationMode.BICUBIC)(img))
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _stack(images: list[np.ndarray], spec: ZeroShotSpec) -> np.ndarray:
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise BenchError(f"dataset {spec.name}: native-resolution images differ in size ({sorted(shapes)[:2]})")
    return np.stack(images) if images else np.zeros((0, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)


# ---------------------------------------------------------------- resolution and selection


def find_source(spec: ZeroShotSpec, data_root: Path | None):
    """The first place that has the dataset: --data-root (webdataset copy, folder, torchvision), then the hub."""
    looked = []
    if data_root is not None:
        if spec.wds:
            wds = data_root / f"wds_{spec.wds}"
            if (wds / "test" / "nshards.txt").is_file():
                return WebDatasetSource(wds, spec, f"webdataset {wds}")
            looked.append(str(wds / "test" / "nshards.txt"))
        if spec.folder:
            folder = data_root / spec.folder
            if (folder / "val_annotations.txt").is_file():
                return TinyImageNetValSource(folder, spec)
            if folder.is_dir():
                return FolderSource(folder, spec)
            looked.append(f"{folder}/<wnid>/")
        if spec.named_folder:
            folder = data_root / spec.named_folder
            if folder.is_dir():
                return NamedFolderSource(folder, spec)
            looked.append(f"{folder}/<NNN.class>/")
        if spec.torchvision:
            dataset = open_torchvision(data_root, spec)
            if dataset is not None:
                return TorchvisionSource(data_root, spec, dataset)
            looked.append(f"a torchvision {spec.torchvision} copy in {data_root}")
    if spec.wds is None:
        where = " or ".join(looked) if looked else f"--data-root DIR holding {spec.folder or spec.named_folder}"
        raise BenchError(f"dataset {spec.name} has no CLIP_benchmark webdataset and needs a local copy: not found "
                         f"({where})")
    try:
        root = hub_snapshot(spec.repo, ["test/*", "*.txt"], what=f"dataset {spec.name}")
    except BenchError as exc:
        where = f"not under --data-root ({' or '.join(looked)}), and " if looked else ""
        raise BenchError(f"{where}{exc}; or give --data-root DIR holding wds_{spec.wds}/") from exc
    if not (root / "test" / "nshards.txt").is_file():
        raise BenchError(f"dataset {spec.name}: the cached hf-hub:{spec.repo} has no test split; fetch it with "
                         f"`hf download {spec.repo} --repo-type dataset`")
    return WebDatasetSource(root, spec, f"hf-hub:{spec.repo}")


def select(n_total: int, n_samples: int, seed: int) -> np.ndarray:
    """``n_samples`` distinct positions out of ``n_total``, sorted; a pure function of (n_total, n_samples, seed)."""
    if not 0 < n_samples <= n_total:
        raise BenchError(f"--n-samples must be between 1 and the {n_total} test samples, got {n_samples}")
    rng = np.random.default_rng([seed, 7])
    return np.sort(rng.choice(n_total, size=n_samples, replace=False))


def load_classification(dataset: str, n_samples: int, seed: int, data_root: Path | None = None):
    if dataset not in DATASETS:
        raise BenchError(f"unknown paper zero-shot dataset {dataset!r} (known: {', '.join(DATASETS)})")
    spec = DATASETS[dataset]
    source = find_source(spec, data_root)
    positions = select(len(source.labels), n_samples, seed)
    labels = source.labels[positions]
    if len(source.classnames) <= int(source.labels.max(initial=-1)):
        raise BenchError(f"dataset {dataset} ({source.origin}): labels go up to {int(source.labels.max())} but there "
                         f"are only {len(source.classnames)} class names")
    return ClassificationData(dataset, positions, [source.ids[p] for p in positions], source.images(positions),
                              labels, list(source.classnames), prompts(source.classnames, source.templates))
