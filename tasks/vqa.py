"""Visual question answering (VQAv2-style) through a VLM: the VQA accuracy of the generated answers, clean and
under the untargeted ensemble (the most common answers, then toward "maybe" and "Word") or a single APGD run.

A sample is one question about one image, with its ten annotator answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from attacks.vlm import ensemble, single_apgd
from tasks.base import Metric, nonfinite_metric, to_float
from tasks.metrics_vqa import most_common_answers, postprocess_answer, vqa_accuracy
from tasks.registry import register_task
from tasks.vlm.base import MAX_NEW_TOKENS, vqa_prompt
from tasks.vlm.task import VLMTask, mean_interval

N_ATTACKED_ANSWERS = 5
TARGETED_ANSWERS = ("maybe", "Word")  # the ensemble's targeted runs, as in Schlarmann & Hein's evaluation
ACCURACY_STOP = 1e-9  # a question leaves the ensemble once its accuracy is 0


@dataclass(frozen=True)
class VQAData:
    dataset: str
    indices: np.ndarray  # position of each question in its source (seeds the attack's random starts)
    ids: list[str]
    images: np.ndarray  # uint8 (N, 3, H, W), one per question
    questions: list[str]
    answers: list[tuple[str, ...]]  # ten annotator answers per question
    load_vlm: Callable = field(repr=False, compare=False)
    source: str = ""
    definition: dict | None = None  # what generated it, where a suite generates its data (part of a cell's identity)


@register_task("vqa")
class VQATask(VLMTask):
    name = "vqav2"
    headline_metric = "vqa_accuracy"
    metric_definition = ("vqa_accuracy: official answer normalisation, min(#matches/3, 1) averaged over the "
                         "10-choose-9 annotator subsets; the worst answer over the attack's stages; 95 % seeded "
                         "bootstrap")
    description = "VQAv2-style question answering through a VLM: VQA accuracy, clean and under the ensemble attack"
    output = "answer"
    score_column = "vqa_accuracy"
    max_new_tokens = MAX_NEW_TOKENS["vqa"]
    attacks = {"apgd": single_apgd("vqav2"),
               "ensemble": ensemble("vqav2", N_ATTACKED_ANSWERS, ACCURACY_STOP, "its VQA accuracy is 0",
                                    TARGETED_ANSWERS)}

    def prompts(self, data, rows):
        return [vqa_prompt(data.questions[r]) for r in rows]

    def references(self, data, rows):
        return [most_common_answers(data.answers[r], N_ATTACKED_ANSWERS) for r in rows]

    def scorer(self, data, rows):
        def score(positions: list[int], outputs: list[str]) -> np.ndarray:
            return np.array([vqa_accuracy(o, data.answers[rows[p]]) for p, o in zip(positions, outputs)])

        return score

    def postprocess(self, text: str) -> str:
        return postprocess_answer(text)

    def record(self, data, row, clean_score, score):
        return {"question": data.questions[row], "answers": json.dumps(list(data.answers[row])),
                "clean_vqa_accuracy": clean_score, "vqa_accuracy": score}

    def metrics(self, records: pd.DataFrame, attacked: bool) -> list[Metric]:
        acc = records["vqa_accuracy"].astype(float).to_numpy()
        out = [Metric("vqa_accuracy", float(acc.mean()), *mean_interval(acc))]
        if attacked:
            clean = records["clean_vqa_accuracy"].astype(float).to_numpy()
            out.append(Metric("clean_vqa_accuracy", float(clean.mean()), *mean_interval(clean)))
        out.append(nonfinite_metric(records))
        return out


def clean_scores(vlm, data: VQAData, batch: int = 100) -> float:
    """Mean VQA accuracy of ``vlm``'s clean answers on ``data`` (the micro VLM's card uses it)."""
    scores = []
    for i in range(0, len(data.ids), batch):
        x = to_float(data.images[i : i + batch], "cpu")
        prompts = [vqa_prompt(q) for q in data.questions[i : i + batch]]
        answers = vlm.generate(x, prompts, MAX_NEW_TOKENS["vqa"])
        scores += [vqa_accuracy(postprocess_answer(a), gt) for a, gt in zip(answers, data.answers[i : i + batch])]
    return float(np.mean(scores))
