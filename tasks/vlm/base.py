"""What every vision-language model offers the tasks and the attacks: a teacher-forced loss of a target text and
greedy generation, both from [0,1] pixels.

A model is an image encoder whose patch tokens a projector maps into a causal language model's input, followed by
the prompt's text tokens (LLaVA's recipe). Subclasses say how the image embeddings are made and spliced in
(``image_embeds``, ``text_logits``) and how text is tokenised; this class does the rest:

- sequences are right-padded, so with causal attention a padding token never influences a real one and greedy
  decoding recomputes the whole sequence each step (no key/value cache: one code path for every model, and the
  result of a sample does not depend on which others share its batch);
- ``target_loss`` also says whether every target token is the argmax under teacher forcing, which is exactly when
  greedy decoding would start with the target — a targeted attack can stop there without decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CAPTION_PROMPT = "Provide a short caption for this image."
VQA_INSTRUCTION = "Answer the question using a single word or phrase."
MAX_NEW_TOKENS = {"caption": 20, "vqa": 5}  # LLaVA-1.5's evaluation settings
IGNORE = -100


def vqa_prompt(question: str) -> str:
    return f"{question}\n{VQA_INSTRUCTION}"


@dataclass
class TargetLoss:
    loss: torch.Tensor  # (B,) mean cross-entropy over the target's tokens (end-of-sequence included)
    exact: torch.Tensor  # (B,) bool: every target token is the teacher-forced argmax


class PrefixVLM(nn.Module):
    """Base class: subclasses set ``eos_id`` and ``pad_id`` and implement the five methods below."""

    eos_id: int
    pad_id: int

    def image_embeds(self, x: torch.Tensor) -> torch.Tensor:
        """(B, P, width) language-model inputs for [0,1] images (encoder patch tokens → projector)."""
        raise NotImplementedError

    def text_logits(self, image_embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(N, T, V) next-token logits at each of the text positions ``ids`` (N, T) that follow the image."""
        raise NotImplementedError

    def context_ids(self, prompt: str) -> list[int]:
        """Token ids of the text after the image, up to where the answer starts."""
        raise NotImplementedError

    def target_ids(self, prompt: str, target: str) -> list[int]:
        """Token ids of ``target`` as the answer to ``prompt``, end-of-sequence included."""
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _padded(self, rows: list[list[int]], width: int) -> torch.Tensor:
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        return ids.to(self.device)

    def target_loss(self, x: torch.Tensor, prompts: list[str], targets: list[str]) -> TargetLoss:
        """Teacher-forced loss of ``targets`` as the answers to ``prompts`` about images ``x`` (differentiable)."""
        contexts = [self.context_ids(p) for p in prompts]
        answers = [self.target_ids(p, t) for p, t in zip(prompts, targets)]
        rows = [c + a for c, a in zip(contexts, answers)]
        width = max(len(r) for r in rows)
        ids = self._padded(rows, width)
        labels = torch.full((len(rows), width - 1), IGNORE, dtype=torch.long)
        for i, (c, a) in enumerate(zip(contexts, answers)):
            labels[i, len(c) - 1 : len(c) - 1 + len(a)] = torch.as_tensor(a)  # position j predicts token j + 1
        labels = labels.to(ids.device)
        logits = self.text_logits(self.image_embeds(x), ids[:, :-1]).float()
        mask = labels != IGNORE
        ce = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none", ignore_index=IGNORE)
        loss = (ce * mask).sum(dim=1) / mask.sum(dim=1)
        exact = ((logits.argmax(dim=-1) == labels) | ~mask).all(dim=1)
        return TargetLoss(loss, exact)

    @torch.no_grad()
    def generate(self, x: torch.Tensor, prompts: list[str], max_new_tokens: int) -> list[str]:
        """Greedy decoding of at most ``max_new_tokens`` tokens per image; the texts without end-of-sequence."""
        image = self.image_embeds(x)
        contexts = [self.context_ids(p) for p in prompts]
        n = len(contexts)
        lengths = torch.as_tensor([len(c) for c in contexts], device=self.device)
        ids = self._padded(contexts, int(lengths.max()) + max_new_tokens)
        active = torch.ones(n, dtype=torch.bool, device=self.device)
        new: list[list[int]] = [[] for _ in range(n)]
        for _ in range(max_new_tokens):
            rows = torch.nonzero(active).flatten()
            if rows.numel() == 0:
                break
            width = int(lengths[rows].max())
            logits = self.text_logits(image[rows], ids[rows, :width])
            token = logits[torch.arange(len(rows), device=self.device), lengths[rows] - 1].argmax(dim=-1)
            ids[rows, lengths[rows]] = token
            lengths[rows] += 1
            for r, t in zip(rows.tolist(), token.tolist()):
                if t == self.eos_id:
                    active[r] = False
                else:
                    new[r].append(t)
        return [self.decode(t).strip() for t in new]
