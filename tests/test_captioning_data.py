"""Caption metrics through pycocoevalcap and the real-format loaders (COCO captions JSON, Karpathy split file,
VQAv2 questions/annotations pair) on the real-data slices; wrong or partial files give one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import requires_real_data

from bench.core.errors import BenchError
from bench.paper import vlm as paper_vlm
from tasks.metrics_caption import CaptionScorer, ptb_tokenize
from tasks.vlm import coco

REFS = {
    "a": ["a red circle on the left.", "one red circle.", "a picture of a red circle on a dark background."],
    "b": ["two blue squares at the top.", "blue shapes.", "there are two blue squares in this image."],
    "c": ["three green rings.", "a photo of three green rings spread across the image.", "green things."],
}


def test_per_sample_cider_is_the_corpus_cider_and_batch_free():
    from pycocoevalcap.cider.cider import Cider

    scorer = CaptionScorer(REFS)
    cands = {"a": "a red circle.", "b": "two green rings.", "c": "three green rings on a dark background."}
    together = scorer.cider(cands)
    alone = {k: scorer.cider({k: v})[k] for k, v in cands.items()}
    assert together == pytest.approx(alone)  # a sample's CIDEr never depends on which others are scored with it
    gts = scorer.references
    res = {k: [t] for k, t in zip(cands, ptb_tokenize(list(cands.values())))}
    corpus, _ = Cider().compute_score(gts, res)
    assert np.mean(list(together.values())) == pytest.approx(corpus)
    metrics = scorer.corpus(cands)
    assert metrics["cider"] == pytest.approx(corpus)
    assert set(metrics) == {"bleu4", "meteor", "rouge_l", "cider"} and 0 < metrics["meteor"] < 1
    assert together["a"] > together["b"]  # the right content scores higher


def test_coco_captions_json_real(tmp_path):
    root = requires_real_data("coco")
    source = coco.read_captions(root / "annotations" / "captions_val2017_mini.json", root)
    assert len(source.ids) == len(set(source.ids)) > 10
    assert all(len(r) >= 5 for r in source.references)
    assert all(p.is_file() and p.parent.name == "val2017" for p in source.image_paths)
    images = coco.load_images(source.image_paths[:3])
    assert images.shape == (3, 3, 224, 224) and images.dtype == np.uint8 and images.std() > 10


def test_karpathy_split_file(tmp_path):
    root = requires_real_data("coco")
    files = sorted((root / "val2017").glob("*.jpg"))[:3]
    (tmp_path / "val2014").mkdir()
    for f in files:
        shutil.copy(f, tmp_path / "val2014" / f.name)
    entries = [{"split": split, "filepath": "val2014", "filename": f.name, "cocoid": i,
                "sentences": [{"raw": f"caption {i} {k}"} for k in range(5)]}
               for i, (f, split) in enumerate(zip(files, ["test", "train", "test"]))]
    path = tmp_path / "karpathy_coco.json"
    path.write_text(json.dumps({"images": entries}))
    source = coco.read_captions(path, tmp_path)
    assert source.ids == ["coco-0", "coco-2"] and source.references[1][4] == "caption 2 4"


def test_vqav2_pair_real():
    root = requires_real_data("vqav2")
    images = requires_real_data("coco")
    source = coco.read_vqa(root / "questions_mini.json", root / "annotations_mini.json", images)
    assert len(source.ids) == 39 and all(len(a) == 10 for a in source.answers)
    assert all(p.is_file() for p in source.image_paths) and source.questions[0].endswith("?")


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.parametrize("content,message", [
    ({"annotations": []}, "has no field 'images'"),
    ({"images": []}, "field 'images' is empty"),
    ({"images": [{"id": 1, "file_name": "x.jpg"}]}, "has no field 'annotations'"),
    ({"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": [{"image_id": 1}]}, "annotations[0] has no field "
     "'caption'"),
    ({"images": [{"id": 1}], "annotations": [{"image_id": 1, "caption": "c"}]}, "images[0] has no field 'file_name'"),
    ({"images": [{"id": 2, "file_name": "x.jpg"}], "annotations": [{"image_id": 1, "caption": "c"}]},
     "image 2 (images[0]) has no caption"),
    ({"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": [{"image_id": 1, "caption": "c"}]},
     "the image of images[0] is missing"),
    ({"images": [{"split": "test", "filename": "x.jpg", "cocoid": 1}]}, "images[0] has no field 'sentences'"),
])
def test_bad_caption_files_name_file_and_field(tmp_path, content, message):
    path = _write(tmp_path / "captions.json", content)
    with pytest.raises(BenchError) as err:
        coco.read_captions(path, tmp_path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_bad_vqa_files(tmp_path):
    q = _write(tmp_path / "q.json", {"questions": [{"question_id": 7, "image_id": 1, "question": "what?"}]})
    a = _write(tmp_path / "a.json", {"annotations": [{"question_id": 8, "answers": [{"answer": "x"}]}]})
    with pytest.raises(BenchError, match=r"a.json: no annotation for question_id 7"):
        coco.read_vqa(q, a, tmp_path)
    a = _write(tmp_path / "a.json", {"annotations": [{"question_id": 7, "answers": [{"text": "x"}]}]})
    with pytest.raises(BenchError, match=r"annotations\[0\]\.answers\[0\] has no field 'answer'"):
        coco.read_vqa(q, a, tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(BenchError, match="not valid JSON"):
        coco.read_vqa(tmp_path / "broken.json", a, tmp_path)


def test_missing_paper_data_is_one_clear_line(monkeypatch, tmp_path):
    for var in ("BENCH_COCO_ANNOTATIONS", "BENCH_COCO_IMAGES", "BENCH_VQAV2_QUESTIONS", "BENCH_VQAV2_ANNOTATIONS"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(BenchError, match="COCO captions not found.*BENCH_COCO_ANNOTATIONS"):
        paper_vlm.load_vlm_data("coco-captioning", "coco", 5, 0, data_root=tmp_path)
    with pytest.raises(BenchError, match="VQAv2 not found.*--data-root"):
        paper_vlm.load_vlm_data("vqav2", "vqav2", 5, 0, data_root=None)
    monkeypatch.setenv("BENCH_COCO_ANNOTATIONS", str(tmp_path / "nope.json"))
    with pytest.raises(BenchError, match="COCO captions file not found: .*nope.json"):
        paper_vlm.load_vlm_data("coco-captioning", "coco", 5, 0)


def test_paper_loader_from_environment(monkeypatch):
    root = requires_real_data("coco")
    monkeypatch.setenv("BENCH_COCO_ANNOTATIONS", str(root / "annotations" / "captions_val2017_mini.json"))
    monkeypatch.setenv("BENCH_COCO_IMAGES", str(root))
    loaded = paper_vlm.load_vlm_data("coco-captioning", "coco", 4, seed=123)
    # the protocol's selection: NumPy's legacy generator seeded with 42, whatever the run seed
    n = len(coco.read_captions(root / "annotations" / "captions_val2017_mini.json", root).ids)
    np.random.seed(42)
    assert list(loaded.indices) == sorted(np.random.choice(n, 4, replace=False))
    assert loaded.images.shape == (4, 3, 224, 224) and len(loaded.references) == 4
    with pytest.raises(BenchError, match="between 1 and"):
        paper_vlm.load_vlm_data("coco-captioning", "coco", 10_000, 0)
