"""The real vision-language data of the paper suite: COCO captions (Karpathy's split file or an official COCO
captions JSON) and VQAv2 (the official questions / annotations JSON pair), with their images.

Every format problem is one line naming the file and the field. Images are read only for the selected samples,
resized (short side, bicubic) and centre-cropped to 224 px, and kept as uint8 (the encoder normalises inside its
forward). The selection follows the evaluation of Schlarmann & Hein / FARE: ``n`` distinct positions drawn by
NumPy's legacy generator seeded with 42 (``np.random.seed(42); np.random.choice(N, n, replace=False)``) out of the
test set in file order, so the same 500 images are attacked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import CenterCrop, InterpolationMode, Resize

from bench.core.errors import BenchError

IMAGE_SIZE = 224
SELECTION_SEED = 42


@dataclass(frozen=True)
class CaptionSource:
    ids: list[str]  # "coco-<image id>"
    image_paths: list[Path]
    references: list[list[str]]


@dataclass(frozen=True)
class QuestionSource:
    ids: list[str]  # "vqav2-<question id>"
    image_paths: list[Path]
    questions: list[str]
    answers: list[tuple[str, ...]]


def read_json(path: Path, what: str):
    if not path.is_file():
        raise BenchError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{what} {path} is not valid JSON: {exc}") from exc


def field(obj, key: str, path: Path, where: str, kind=None):
    """``obj[key]``, or a one-line error naming the file, the place in it and the field."""
    if not isinstance(obj, dict) or key not in obj:
        raise BenchError(f"{path}: {where} has no field {key!r}")
    value = obj[key]
    if kind is not None and not isinstance(value, kind):
        raise BenchError(f"{path}: field {key!r} of {where} should be a {kind.__name__}, "
                         f"not {type(value).__name__}")
    return value


def _find_image(images: Path, candidates: list[str], path: Path, where: str) -> Path:
    candidates = list(dict.fromkeys(candidates))
    for c in candidates:
        if (images / c).is_file():
            return images / c
    raise BenchError(f"{path}: the image of {where} is missing (looked for {' or '.join(candidates)} under {images})")


def read_captions(path: Path, images: Path) -> CaptionSource:
    """The test images of a Karpathy split file (``images[].split == "test"``, ``filepath``/``filename``,
    ``sentences[].raw``, ``cocoid``), or every image of an official COCO captions JSON (``images[].id``,
    ``file_name``; ``annotations[].image_id``, ``caption``), in file order."""
    data = read_json(path, "COCO captions file")
    entries = field(data, "images", path, "the top level", list)
    if not entries:
        raise BenchError(f"{path}: field 'images' is empty")
    if "split" in entries[0]:  # Karpathy's split file
        ids, paths, refs = [], [], []
        for i, e in enumerate(entries):
            if field(e, "split", path, f"images[{i}]") != "test":
                continue
            where = f"images[{i}]"
            name = field(e, "filename", path, where, str)
            refs.append([field(s, "raw", path, f"{where}.sentences[{k}]", str)
                         for k, s in enumerate(field(e, "sentences", path, where, list))])
            ids.append(f"coco-{field(e, 'cocoid', path, where)}")
            paths.append(_find_image(images, [f"{e.get('filepath', '')}/{name}".lstrip("/"), name], path, where))
        if not ids:
            raise BenchError(f"{path}: no image has split 'test'")
        return CaptionSource(ids, paths, refs)
    captions: dict[object, list[str]] = {}
    for k, a in enumerate(field(data, "annotations", path, "the top level", list)):
        captions.setdefault(field(a, "image_id", path, f"annotations[{k}]"), []).append(
            field(a, "caption", path, f"annotations[{k}]", str))
    split = re.search(r"(train|val|test)20\d\d", path.name)  # captions_val2014.json → images in val2014/
    ids, paths, refs = [], [], []
    for i, e in enumerate(entries):
        where = f"images[{i}]"
        image_id = field(e, "id", path, where)
        if image_id not in captions:
            raise BenchError(f"{path}: image {image_id} ({where}) has no caption in 'annotations'")
        name = field(e, "file_name", path, where, str)
        paths.append(_find_image(images, [name] + ([f"{split.group(0)}/{name}"] if split else []), path, where))
        refs.append(captions[image_id])
        ids.append(f"coco-{image_id}")
    return CaptionSource(ids, paths, refs)


def read_vqa(questions_path: Path, annotations_path: Path, images: Path) -> QuestionSource:
    """Every question of an official VQAv2 questions file (``questions[].question_id``, ``image_id``,
    ``question``) with its annotators' answers from the annotations file (``annotations[].question_id``,
    ``answers[].answer``), in the questions' order."""
    qdata = read_json(questions_path, "VQAv2 questions file")
    adata = read_json(annotations_path, "VQAv2 annotations file")
    answers, image_files = {}, {}
    for k, a in enumerate(field(adata, "annotations", annotations_path, "the top level", list)):
        where = f"annotations[{k}]"
        qid = field(a, "question_id", annotations_path, where)
        answers[qid] = tuple(field(x, "answer", annotations_path, f"{where}.answers[{j}]", str)
                             for j, x in enumerate(field(a, "answers", annotations_path, where, list)))
        if not answers[qid]:
            raise BenchError(f"{annotations_path}: {where} has no answers")
        if "image_file" in a:  # some subsets name the image file beside the answers
            image_files[qid] = a["image_file"]
    ids, paths, questions, gts = [], [], [], []
    entries = field(qdata, "questions", questions_path, "the top level", list)
    if not entries:
        raise BenchError(f"{questions_path}: field 'questions' is empty")
    for i, q in enumerate(entries):
        where = f"questions[{i}]"
        qid = field(q, "question_id", questions_path, where)
        if qid not in answers:
            raise BenchError(f"{annotations_path}: no annotation for question_id {qid} ({questions_path}, {where})")
        image_id = int(field(q, "image_id", questions_path, where))
        candidates = [image_files[qid]] if qid in image_files else [
            f"val2014/COCO_val2014_{image_id:012d}.jpg", f"COCO_val2014_{image_id:012d}.jpg", f"{image_id:012d}.jpg"]
        paths.append(_find_image(images, candidates, questions_path, f"{where} (image_id {image_id})"))
        questions.append(field(q, "question", questions_path, where, str))
        gts.append(answers[qid])
        ids.append(f"vqav2-{qid}")
    return QuestionSource(ids, paths, questions, gts)


def select(n_total: int, n_samples: int) -> np.ndarray:
    """The evaluation's selection: NumPy's legacy generator seeded with 42, ``n_samples`` distinct positions."""
    if not 0 < n_samples <= n_total:
        raise BenchError(f"--n-samples must be between 1 and the {n_total} samples of the set, got {n_samples}")
    return np.sort(np.random.RandomState(SELECTION_SEED).choice(n_total, n_samples, replace=False))


def load_images(paths: list[Path]) -> np.ndarray:
    """uint8 (N, 3, 224, 224): RGB, short side resized to 224 px (bicubic), centre crop."""
    resize, crop = Resize(IMAGE_SIZE, interpolation=InterpolationMode.BICUBIC), CenterCrop(IMAGE_SIZE)
    out = np.empty((len(paths), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                out[i] = np.asarray(crop(resize(img.convert("RGB"))), dtype=np.uint8).transpose(2, 0, 1)
        except (OSError, UnidentifiedImageError) as exc:
            raise BenchError(f"cannot read image {p}: {exc}".splitlines()[0]) from exc
    return out
