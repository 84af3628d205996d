"""The micro VLM's word-level tokenizer: every word and punctuation mark of the micro world is one token.

The vocabulary is data (stored in the model's JSON config), built once from the texts the micro world generates, so
the tokenizer is a pure function of that list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PAD, EOS, UNK, IMAGE = "<pad>", "<eos>", "<unk>", "<image>"
SPECIALS = (PAD, EOS, UNK, IMAGE)
_TOKEN = re.compile(r"<image>|[a-z0-9]+|[^\sa-z0-9]")
_SPACE_BEFORE_PUNCT = re.compile(r" ([.,?!:;])")


def words(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks, in order."""
    return _TOKEN.findall(text.lower())


def build_vocabulary(texts: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """Special tokens, then every word of ``texts`` and ``extra`` in sorted order (deterministic)."""
    found = {w for t in texts for w in words(t)} | {w for t in extra for w in words(t)}
    return list(SPECIALS) + sorted(found - set(SPECIALS))


class WordTokenizer:
    def __init__(self, vocabulary: list[str]):
        if list(vocabulary[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"a vocabulary starts with the special tokens {SPECIALS}")
        self.vocabulary = list(vocabulary)
        self.ids = {w: i for i, w in enumerate(self.vocabulary)}
        self.pad_id, self.eos_id, self.unk_id, self.image_id = (self.ids[s] for s in SPECIALS)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(w, self.unk_id) for w in words(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Words joined by spaces, punctuation attached to the word before it; special tokens dropped."""
        kept = [self.vocabulary[i] for i in ids if self.vocabulary[i] not in SPECIALS]
        return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(kept))
