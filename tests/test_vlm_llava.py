"""The LLaVA adapter on a tiny randomly initialised LlavaConfig built here (nothing is downloaded): prompts,
generation, gradients to the pixels, and the offline error when the real model is not cached."""

from __future__ import annotations

import pytest
import torch
from vlm_fixtures import tiny_llava, tiny_tokenizer

from attacks.vlm import VLMProtocol, VLMStage, run_vlm_protocol
from bench.core.errors import BenchError
from bench.micro.encoders import load_micro_clip
from tasks.vlm.base import CAPTION_PROMPT, vqa_prompt
from tasks.vlm.llava import LlavaVLM, load_llava_vlm


@pytest.fixture(scope="module")
def llava():
    tokenizer = tiny_tokenizer()
    return LlavaVLM(load_micro_clip(), tiny_llava(tokenizer), tokenizer)


def test_prompt_is_a_vicuna_conversation_around_the_image(llava):
    tok = llava.tokenizer
    assert tok.decode(llava.pre_ids, skip_special_tokens=True).endswith("user :")
    context = llava.context_ids(CAPTION_PROMPT)
    assert tok.decode(context).endswith("assistant :")
    target = llava.target_ids(CAPTION_PROMPT, "a red dog")
    assert target[-1] == tok.eos_token_id and tok.decode(target[:-1]) == "a red dog"


def test_generate_greedy_within_the_budget(llava):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    prompts = [CAPTION_PROMPT, vqa_prompt("what colour is the dog?"), CAPTION_PROMPT]
    out = llava.generate(x, prompts, 5)
    assert len(out) == 3 and all(isinstance(o, str) and len(o.split()) <= 5 for o in out)
    assert out == [llava.generate(x[i : i + 1], [p], 5)[0] for i, p in enumerate(prompts)]  # batch-free


def test_gradients_reach_the_pixels(llava):
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    res = llava.target_loss(x, [CAPTION_PROMPT, vqa_prompt("what is this?")], ["a red dog", "visit"])
    assert res.loss.shape == (2,) and torch.isfinite(res.loss).all()
    res.loss.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in llava.parameters())


def test_an_attack_stage_runs_through_the_adapter(llava):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    protocol = VLMProtocol("apgd", "test", (VLMStage("reference", 0, iterations=3),), keep_worst=False)
    out = run_vlm_protocol(llava, x, [CAPTION_PROMPT] * 2, [["a red dog"], ["a dog"]], protocol, 4 / 255,
                           torch.arange(2), lambda rows, outs: [float(len(o)) for o in outs], 5)
    assert out.stages_run.tolist() == [1, 1] and float((out.x_adv - x).abs().max()) <= 4 / 255 + 1e-6


def test_width_mismatch_is_refused():
    tokenizer = tiny_tokenizer()
    with pytest.raises(BenchError, match="projector reads 64"):
        LlavaVLM(load_micro_clip(), tiny_llava(tokenizer, vision_width=64), tokenizer)


def test_missing_llava_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(BenchError) as err:
        load_llava_vlm(load_micro_clip())
    message = str(err.value)
    assert "llava-hf/llava-1.5-7b-hf" in message and "hf download" in message and "\n" not in message
