"""The vision-language attack engine (attacks/vlm.py) on the micro VLM, and which protocols each task takes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attacks.vlm import VLMProtocol, VLMStage, run_vlm_protocol
from bench.core.errors import BenchError
from bench.micro import vlm as micro_vlm
from bench.micro.encoders import load_micro_clip
from tasks import targeted
from tasks.base import attack_seeds
from tasks.registry import TASKS, protocol_for
from tasks.vlm.base import CAPTION_PROMPT
from tasks.vlm.micro import load_micro_vlm

EPS = 8 / 255


@pytest.fixture(scope="module")
def vlm():
    return load_micro_vlm(load_micro_clip())


@pytest.fixture(scope="module")
def data():
    return micro_vlm.load_captions(4, seed=2)


def caption_run(vlm, data, rows, protocol):
    task = TASKS.get("coco-captioning")()
    x = torch.as_tensor(data.images[rows]).float() / 255
    out = run_vlm_protocol(vlm, x, [CAPTION_PROMPT] * len(rows), task.references(data, rows), protocol, EPS,
                           attack_seeds(0, data.indices[rows]), task.scorer(data, rows), 20)
    return x, out


SHORT_ENSEMBLE = VLMProtocol("ensemble", "test", (VLMStage("reference", 0, iterations=4),
                                                  VLMStage("reference", 1, iterations=4),
                                                  VLMStage("best", init="best", fp32=True, iterations=4)),
                             stop_below=0.10)


def test_ensemble_keeps_the_worst_caption_inside_the_ball(vlm, data):
    rows = [0, 1, 2, 3]
    x, out = caption_run(vlm, data, rows, SHORT_ENSEMBLE)
    assert (out.score <= out.clean_score + 1e-12).all()
    assert float((out.x_adv - x).abs().max()) <= EPS + 1e-6 and out.x_adv.min() >= 0 and out.x_adv.max() <= 1
    for k in range(4):
        stopped_clean = out.clean_score[k] < 0.10
        assert (out.stages_run[k] == 0) == stopped_clean
        assert out.iterations[k] <= 12 and (out.broken_by[k] == "") == (out.score[k] == out.clean_score[k])
    # batching never changes a sample's result: each sample's random starts come from its own seed
    _, first = caption_run(vlm, data, rows[:2], SHORT_ENSEMBLE)
    _, second = caption_run(vlm, data, rows[2:], SHORT_ENSEMBLE)
    assert out.output == first.output + second.output
    np.testing.assert_allclose(out.score, np.concatenate([first.score, second.score]))


def test_targeted_success_means_the_string_is_in_the_output(vlm):
    target = "a picture of four pink crosses spread across the image."  # a caption no micro scene gets
    data = targeted.with_targets(micro_vlm.load_captions(2, seed=4), (target,))
    task = TASKS.get("targeted")()
    # measured: at 16/255 both samples say the target after 244-265 iterations; at 4/255, 300 are not enough
    protocol = VLMProtocol("targeted", "test", (VLMStage("reference", 0, targeted=True, iterations=300,
                                                         stop_on_success=True),), stop_below=0.5)
    x = torch.as_tensor(np.array(data.images)).float() / 255
    out = run_vlm_protocol(vlm, x, [CAPTION_PROMPT] * 2, task.references(data, [0, 1]), protocol, 16 / 255,
                           attack_seeds(0, data.indices), task.scorer(data, [0, 1]), 20)
    for k in range(2):
        success = out.score[k] == 0.0
        assert success == (target in out.output[k])
        if out.success_iteration[k] >= 0:  # stopped early: the target was the teacher-forced argmax
            assert out.success_iteration[k] <= 300 and success
    assert (out.score == 0).any(), "the undefended micro CLIP at 16/255 should be steerable within 300 iterations"


@pytest.mark.parametrize("task,attack,message", [
    ("coco-captioning", "aa-custom", "does not apply to task coco-captioning; it takes: none, apgd, ensemble"),
    ("vqav2", "targeted-500", "does not apply to task vqav2"),
    ("targeted", "ensemble", "it takes: none, targeted, targeted-500"),
    ("zeroshot", "ensemble", "is a vision-language protocol; task zeroshot takes"),
])
def test_protocols_belong_to_their_tasks(task, attack, message):
    with pytest.raises(BenchError, match=message):
        protocol_for(TASKS.get(task), attack)


def test_protocol_rows_say_what_ran():
    caption = protocol_for(TASKS.get("coco-captioning"), "ensemble")
    vqa = protocol_for(TASKS.get("vqav2"), "ensemble")
    single = protocol_for(TASKS.get("coco-captioning"), "apgd")
    assert caption.summary().startswith("ensemble: worst of clean") and "CIDEr < 10" in caption.summary()
    assert "'maybe'" in vqa.summary() and "'Word'" in vqa.summary() and len(vqa.stages) == 8
    assert single.summary().startswith("single run") and single.iterations == 100 and single.restarts == 1
    with pytest.raises(BenchError, match="native engine only"):
        protocol_for(TASKS.get("vqav2"), "ensemble", "autoattack")
