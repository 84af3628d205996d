"""The micro world: deterministic, disjoint splits, valid captions/questions, and the committed checkpoint."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from bench.micro import language
from bench.micro.data import ZEROSHOT_DATASETS, generate, generate_dataset, generate_indices
from bench.micro.datasets import DATASETS
from bench.micro.model import CHECKPOINT_PATH, build_model, load_config, pack_state_dict, unpack_state_dict
from bench.micro.world import COLOURS, COUNTS, DEFAULT_IMAGE_SIZE, GRID, SHAPES, STYLES


def test_generation_is_deterministic():
    a = generate_indices("test", [3, 17, 99])
    b = generate_indices("test", [3, 17, 99])
    assert np.array_equal(a.images, b.images) and a.scenes == b.scenes
    assert a.captions(1) == b.captions(1)
    assert [q.answers for q in a.questions(2)] == [q.answers for q in b.questions(2)]


def test_splits_are_disjoint():
    train = generate("train", 400)
    test = generate("test", 400)
    hashes = {hashlib.sha1(img.tobytes()).hexdigest() for img in train.images}
    assert not any(hashlib.sha1(img.tobytes()).hexdigest() in hashes for img in test.images)


def test_scene_contents_and_labels():
    d = generate("test", 300)
    for s in d.scenes:
        assert s.shape in SHAPES and s.colour in COLOURS and s.count in COUNTS and s.style in STYLES
        assert len(set(s.cells)) == s.count and all(0 <= c < GRID * GRID for c in s.cells)
    assert d.images.dtype == np.uint8 and d.images.shape[1:] == (3, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
    assert {s.style for s in d.scenes} == set(STYLES), "the micro CLIP's world holds every style"
    for ds in ZEROSHOT_DATASETS:
        spec, data = DATASETS[ds], generate_dataset(ds, "test", range(800))
        labels = data.labels(ds)
        assert all(spec.within.holds(s) for s in data.scenes), ds
        assert labels.min() >= 0 and labels.max() < len(spec.classnames)
        assert len(set(labels.tolist())) == len(spec.classnames), f"{ds}: every class occurs in 800 scenes"


def test_datasets_never_share_a_scene():
    images = {ds: {img.tobytes() for img in generate_dataset(ds, "test", range(200)).images}
              for ds in ZEROSHOT_DATASETS}
    for a in ZEROSHOT_DATASETS:
        for b in ZEROSHOT_DATASETS:
            assert a == b or not images[a] & images[b], (a, b)


def test_captions_and_questions_describe_the_scene():
    d = generate("test", 50)
    for i, s in enumerate(d.scenes):
        caps = d.captions_with_mentions(i)
        assert len(caps) == 5 and len({c.text for c in caps}) == 5
        assert sum(c.mentions >= language.FULL for c in caps) == 4
        for c in caps:
            if "colour" in c.mentions:
                assert s.colour in c.text
            if "shape" in c.mentions:
                assert s.shape in c.text  # "ring" is in "rings", "cross" in "crosses"
            if "count" in c.mentions:
                assert language.NUMBER_WORDS[s.count] in c.text or str(s.count) in c.text or (
                    s.count == 1 and (" a " in f" {c.text}" or "one" in c.text))
        for q in d.questions(i):
            assert len(q.answers) == 10
            assert sum(a == q.answer for a in q.answers) >= 3 or q.kind in ("shape", "colour", "count", "yesno",
                                                                            "side")
            if q.kind == "count":
                assert q.answer == str(s.count)
            if q.kind == "shape":
                assert q.answer == s.shape


def test_class_prompts_cover_every_class():
    for ds in ZEROSHOT_DATASETS:
        prompts = DATASETS[ds].class_prompts()
        assert len(prompts) == len(DATASETS[ds].classnames)
        assert all(len(p) == len(prompts[0]) > 1 for p in prompts), "an ensemble of equal size per class"
        assert len({p for cls in prompts for p in cls}) == sum(len(p) for p in prompts), "prompts are distinct"


def test_packed_state_dict_roundtrip():
    torch.manual_seed(0)
    model = build_model()
    with torch.no_grad():
        model.token_embedding.weight[100:] = 0
    state = model.state_dict()
    restored = unpack_state_dict(pack_state_dict(state), load_config()["text_cfg"]["vocab_size"])
    assert set(restored) == set(state)
    assert all(torch.equal(restored[k], state[k]) for k in state)


def test_committed_checkpoint_matches_its_card():
    from bench.core.checkpoints import sha256_file
    from bench.micro.encoders import load_micro_clip, micro_card

    card = micro_card()
    assert sha256_file(CHECKPOINT_PATH) == card["sha256"]
    assert CHECKPOINT_PATH.stat().st_size < 8 * 2**20, "the committed micro CLIP must stay a few MB"
    enc = load_micro_clip()
    assert all(not p.requires_grad for p in enc.parameters())
    x = torch.rand(2, 3, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
    assert enc(x).shape == (2, card["config"]["embed_dim"])
    assert enc.patch_tokens(x).shape == (2, 64, card["config"]["vision_cfg"]["width"])


def test_committed_checkpoint_clean_accuracy_card():
    """The card records clean zero-shot accuracy on every micro dataset, far above chance on each (world v2 holds
    out fine hues and rendering domains on purpose, so not all are easy: its card has 64.8 % on stripes, 100 % on
    novel-colours)."""
    from bench.micro.encoders import micro_card

    acc = micro_card()["zeroshot_test_accuracy"]
    assert set(acc) == set(ZEROSHOT_DATASETS)
    chance = {ds: 1 / len(DATASETS[ds].classnames) for ds in acc}
    assert all(acc[ds] >= max(0.6, 2.5 * chance[ds]) for ds in acc), acc


@pytest.mark.slow
def test_committed_checkpoint_accuracy_reproduces():
    """Re-measure clean accuracy of the committed model on 300 test scenes: the card's figures are real (within the
    sampling error of 300 scenes against the card's larger sample: 4 binomial sd at p = 0.5 is 11.5 points)."""
    from bench.micro.encoders import load_micro_clip, micro_card
    from bench.micro.suite import load_classification
    from tasks.zeroshot_model import ZeroShotClassifier

    enc = load_micro_clip()
    card = micro_card()["zeroshot_test_accuracy"]
    for ds in ZEROSHOT_DATASETS:
        data = load_classification(ds, 300, seed=0)
        clf = ZeroShotClassifier.for_data(enc, data)
        with torch.no_grad():
            pred = clf(torch.tensor(data.images).float() / 255).argmax(1).numpy()
        assert abs((pred == data.labels).mean() - card[ds]) <= 4 * (0.25 / 300) ** 0.5, ds
