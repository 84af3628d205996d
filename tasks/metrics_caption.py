"""Caption metrics through pycocoevalcap: its PTB tokenizer (Java), BLEU-4, METEOR, ROUGE-L and CIDEr(-D).

CIDEr weighs n-grams by their inverse document frequency over the references of the whole evaluated set. A
sample's CIDEr therefore depends on that set, never on which samples share a batch: ``CaptionScorer`` fixes the set
once (the sample selection of a cell) and scores any candidates against it, so a per-sample CIDEr (for the attack's
early stop and the worst caption) and the corpus CIDEr (their mean) agree exactly with pycocoevalcap's ``Cider`` on
the whole set. SPICE is left out (it needs a Java toolchain and models this suite does not install).
"""

from __future__ import annotations

import contextlib
import io
import os
import re

from bench.core.errors import BenchError


@contextlib.contextmanager
def _quiet():
    """Silence the Java tokenizer's progress line (stderr, file descriptor level) and BLEU's prints (stdout)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_TOKENIZED: dict[str, str] = {}


def ptb_tokenize(texts: list[str]) -> list[str]:
    """PTB-tokenised, lower-cased texts without punctuation (pycocoevalcap's tokenizer), cached per text."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # deferred: pycocoevalcap, captioning only

    todo = sorted({t for t in texts if t not in _TOKENIZED})
    nonempty = [t for t in todo if t.strip()]
    for t in todo:
        if not t.strip():
            _TOKENIZED[t] = ""
    if nonempty:
        try:
            with _quiet():
                out = PTBTokenizer().tokenize({str(i): [{"caption": t}] for i, t in enumerate(nonempty)})
        except OSError as exc:
            raise BenchError(f"the PTB tokenizer of pycocoevalcap needs Java on the PATH ({exc})") from exc
        if len(out) != len(nonempty):
            raise RuntimeError(f"the PTB tokenizer returned {len(out)} of {len(nonempty)} captions")
        for i, t in enumerate(nonempty):
            _TOKENIZED[t] = out[str(i)][0]
    return [_TOKENIZED[t] for t in texts]


def postprocess_caption(generated: str) -> str:
    """A generated caption as open_flamingo's evaluation keeps it (before "Output", without double quotes)."""
    return re.split("Output", generated, maxsplit=1)[0].replace('"', "").strip()


class CaptionScorer:
    """Scores candidate captions against the references of a fixed set of samples."""

    def __init__(self, references: dict[str, list[str]]):
        from pycocoevalcap.cider.cider_scorer import cook_refs  # deferred: pycocoevalcap, captioning only

        if not references or any(not refs for refs in references.values()):
            raise ValueError("every sample needs at least one reference caption")
        self.ids = list(references)
        flat = ptb_tokenize([r for refs in references.values() for r in refs])
        self.references: dict[str, list[str]] = {}
        k = 0
        for sid, refs in references.items():
            self.references[sid] = flat[k : k + len(refs)]
            k += len(refs)
        self._cooked = [cook_refs(self.references[sid]) for sid in self.ids]

    def cider(self, candidates: dict[str, str]) -> dict[str, float]:
        """Per-sample CIDEr-D of ``candidates`` (a subset of the samples), idf from every sample's references."""
        from pycocoevalcap.cider.cider_scorer import CiderScorer, cook_test  # deferred: pycocoevalcap

        unknown = set(candidates) - set(self.references)
        if unknown:
            raise KeyError(f"no references for {sorted(unknown)[:3]}")
        tokens = dict(zip(candidates, ptb_tokenize(list(candidates.values()))))
        scorer = CiderScorer(n=4, sigma=6.0)
        # the other samples take part with an empty candidate: their references still count in the idf, and a
        # sample's score depends only on its own candidate and references
        scorer.crefs = list(self._cooked)
        scorer.ctest = [cook_test(tokens.get(sid, "")) for sid in self.ids]
        _, scores = scorer.compute_score()
        return {sid: float(scores[i]) for i, sid in enumerate(self.ids) if sid in candidates}

    def corpus(self, candidates: dict[str, str]) -> dict[str, float]:
        """BLEU-4, METEOR, ROUGE-L and CIDEr of one candidate per sample, over the whole set."""
        # deferred: pycocoevalcap, captioning metrics only (its METEOR starts Java)
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge

        if set(candidates) != set(self.ids):
            raise ValueError("corpus metrics need one candidate for every sample of the set")
        tokens = dict(zip(candidates, ptb_tokenize(list(candidates.values()))))
        res = {sid: [tokens[sid]] for sid in self.ids}
        gts = {sid: self.references[sid] for sid in self.ids}
        with _quiet():
            bleu, _ = Bleu(4).compute_score(gts, res)
            meteor, _ = Meteor().compute_score(gts, res)
            rouge, _ = Rouge().compute_score(gts, res)
            cider, _ = Cider().compute_score(gts, res)
        return {"bleu4": float(bleu[3]), "meteor": float(meteor), "rouge_l": float(rouge), "cider": float(cider)}

