"""Image captioning (COCO-style) through a VLM: CIDEr (with BLEU-4, METEOR, ROUGE-L) of the generated captions,
clean and under the untargeted ensemble or a single APGD run (``attacks/vlm.py``).

Records keep each sample's clean and adversarial caption, their CIDEr (idf over the whole sample set, so the
headline CIDEr is their mean) and the references (so the corpus metrics are recomputed from the records alone).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from attacks.vlm import ensemble, single_apgd
from tasks.base import Metric, nonfinite_metric, to_float
from tasks.metrics_caption import CaptionScorer, postprocess_caption
from tasks.registry import register_task
from tasks.vlm.base import CAPTION_PROMPT, MAX_NEW_TOKENS
from tasks.vlm.task import VLMTask, mean_interval

N_ATTACKED_REFERENCES = 5  # the ensemble attacks the first five references of each image
CIDER_STOP = 0.10  # the ensemble leaves an image once its CIDEr < 10 (pycocoevalcap's scale: 0.10)


@dataclass(frozen=True)
class CaptionData:
    dataset: str
    indices: np.ndarray  # position of each sample in its source (seeds the attack's random starts)
    ids: list[str]
    images: np.ndarray  # uint8 (N, 3, H, W)
    references: list[list[str]]
    load_vlm: Callable = field(repr=False, compare=False)  # (encoder, device) -> the suite's VLM
    source: str = ""
    definition: dict | None = None  # what generated it, where a suite generates its data (part of a cell's identity)


@register_task("captioning", "coco")
class CaptioningTask(VLMTask):
    name = "coco-captioning"
    headline_metric = "cider"
    metric_definition = ("cider, bleu4, meteor, rouge_l: pycocoevalcap with its PTB tokenizer against all references; "
                         "the worst caption over the attack's stages; 95 % seeded percentile bootstrap")
    description = "COCO-style captioning through a VLM: CIDEr (pycocoevalcap), clean and under the ensemble attack"
    output = "caption"
    score_column = "cider"
    max_new_tokens = MAX_NEW_TOKENS["caption"]
    attacks = {"apgd": single_apgd("coco-captioning"),
               "ensemble": ensemble("coco-captioning", N_ATTACKED_REFERENCES, CIDER_STOP, "its CIDEr < 10")}

    def __init__(self):
        super().__init__()
        self._scorers: dict[int, CaptionScorer] = {}

    def caption_scorer(self, data: CaptionData) -> CaptionScorer:
        """One scorer per sample set: the idf of every per-sample CIDEr comes from all its references."""
        if id(data) not in self._scorers:
            self._scorers[id(data)] = CaptionScorer(dict(zip(data.ids, data.references)))
        return self._scorers[id(data)]

    def prompts(self, data, rows):
        return [CAPTION_PROMPT] * len(rows)

    def references(self, data, rows):
        return [data.references[r][:N_ATTACKED_REFERENCES] for r in rows]

    def scorer(self, data, rows):
        scorer = self.caption_scorer(data)

        def score(positions: list[int], outputs: list[str]) -> np.ndarray:
            ids = [data.ids[rows[p]] for p in positions]
            cider = scorer.cider(dict(zip(ids, outputs)))
            return np.array([cider[i] for i in ids])

        return score

    def postprocess(self, text: str) -> str:
        return postprocess_caption(text)

    def record(self, data, row, clean_score, score):
        return {"clean_cider": clean_score, "cider": score, "references": json.dumps(data.references[row])}

    def metrics(self, records: pd.DataFrame, attacked: bool) -> list[Metric]:
        refs = {sid: json.loads(r) for sid, r in zip(records["sample_id"], records["references"])}
        scorer = CaptionScorer(refs)
        corpus = scorer.corpus(dict(zip(records["sample_id"], records["adv_caption"].astype(str))))
        cider = records["cider"].astype(float).to_numpy()
        out = [Metric("cider", corpus["cider"], *mean_interval(cider))]
        out += [Metric(k, corpus[k]) for k in ("bleu4", "meteor", "rouge_l")]
        if attacked:
            clean = records["clean_cider"].astype(float).to_numpy()
            out.append(Metric("clean_cider", float(clean.mean()), *mean_interval(clean)))
        out.append(nonfinite_metric(records))
        return out


def clean_scores(vlm, data: CaptionData, batch: int = 100) -> float:
    """Corpus CIDEr of ``vlm``'s clean captions on ``data`` (the micro VLM's card uses it)."""
    captions = []
    for i in range(0, len(data.ids), batch):
        x = to_float(data.images[i : i + batch], "cpu")
        captions += [postprocess_caption(c) for c in vlm.generate(x, [CAPTION_PROMPT] * len(x),
                                                                     MAX_NEW_TOKENS["caption"])]
    scorer = CaptionScorer(dict(zip(data.ids, data.references)))
    return scorer.corpus(dict(zip(data.ids, captions)))["cider"]
