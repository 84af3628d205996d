"""The committed micro VLM: its card, what it says about scenes, and the properties the attacks rely on."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from bench.core.checkpoints import sha256_file
from bench.core.errors import BenchError
from bench.micro import vlm as micro_vlm
from bench.micro.encoders import load_micro_clip
from tasks import vqa
from tasks.base import to_float
from tasks.vlm.base import CAPTION_PROMPT, vqa_prompt
from tasks.vlm.micro import CARD_PATH, CHECKPOINT_PATH, load_micro_vlm
from tasks.vlm.vocab import WordTokenizer, build_vocabulary


@pytest.fixture(scope="module")
def vlm():
    return load_micro_vlm(load_micro_clip())


@pytest.fixture(scope="module")
def questions():
    return micro_vlm.load_questions(48, seed=5)




def test_card_records_the_committed_weights_and_meets_the_targets():
    card = json.loads(CARD_PATH.read_text())
    assert card["sha256"] == sha256_file(CHECKPOINT_PATH)
    assert card["clean_test"]["cider"] >= 0.80  # CIDEr 80 on the ×100 scale
    assert card["clean_test"]["vqa_accuracy"] >= 0.70
    assert CHECKPOINT_PATH.stat().st_size < 8 * 2**20


def test_answers_are_right_on_fresh_scenes(vlm, questions):
    assert vqa.clean_scores(vlm, questions) >= 0.6


def test_captions_name_the_colour(vlm):
    data = micro_vlm.load_captions(12, seed=11)
    from bench.micro.data import generate_indices

    scenes = generate_indices("test", data.indices).scenes
    caps = vlm.generate(to_float(data.images, "cpu"), [CAPTION_PROMPT] * 12, 20)
    assert all(c for c in caps)
    assert sum(s.colour in c for s, c in zip(scenes, caps)) >= 9


def test_batching_never_changes_an_output(vlm, questions):
    x = to_float(questions.images[:6], "cpu")
    prompts = [vqa_prompt(q) for q in questions.questions[:3]] + [CAPTION_PROMPT] * 3  # different lengths
    together = vlm.generate(x, prompts, 20)
    alone = [vlm.generate(x[i : i + 1], [p], 20)[0] for i, p in enumerate(prompts)]
    assert together == alone


def test_exact_teacher_forcing_means_greedy_output(vlm, questions):
    x = to_float(questions.images[:4], "cpu")
    prompts = [CAPTION_PROMPT] * 4
    greedy = vlm.generate(x, prompts, 20)
    assert vlm.target_loss(x, prompts, greedy).exact.all()
    other = greedy[1:] + greedy[:1]
    differs = torch.tensor([a != b for a, b in zip(greedy, other)])
    assert not (vlm.target_loss(x, prompts, other).exact & differs).any()


def test_gradients_reach_the_pixels_and_no_parameter(vlm, questions):
    x = to_float(questions.images[:2], "cpu").requires_grad_(True)
    loss = vlm.target_loss(x, [CAPTION_PROMPT] * 2, ["a picture of one red ring.", "yes."]).loss
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in vlm.parameters())


def test_any_encoder_of_the_architecture_plugs_in(questions):
    encoder = load_micro_clip()
    other = copy.deepcopy(encoder)
    with torch.no_grad():
        for p in other.tower.visual.parameters():
            p.add_(0.01 * torch.randn_like(p))
    swapped = load_micro_vlm(other)
    x = to_float(questions.images[:2], "cpu")
    assert swapped.encoder is other and len(swapped.generate(x, [CAPTION_PROMPT] * 2, 5))
    narrow = copy.deepcopy(encoder)
    narrow.tower.visual.transformer.width = 64
    with pytest.raises(BenchError, match="width 64"):
        load_micro_vlm(narrow)


def test_word_tokenizer_round_trip():
    data = micro_vlm.load_captions(5, seed=1)
    texts = [c for refs in data.references for c in refs]
    tok = WordTokenizer(build_vocabulary(texts))
    for t in texts:
        assert tok.unk_id not in tok.encode(t) and tok.decode(tok.encode(t)) == t
    assert tok.encode("<image> zebra")[0] == tok.image_id and tok.encode("zebra") == [tok.unk_id]
