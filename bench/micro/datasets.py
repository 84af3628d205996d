"""The micro suite's experiment, as data: a fine-tuning set (the micro "ImageNet") and evaluation datasets that
measure what the papers measure, robustness that transfers.

The micro CLIP is pre-trained on the whole world (every shape, colour, count and rendering style: its "web").
Robust fine-tuning then sees only a slice of it, ``FINETUNE``: solid objects of five shapes and eight colours, one
to three of them. Supervised objectives read its labels, the 40 (shape, colour) classes worded with one template of
their own ("a photo of a red circle."); unsupervised ones (FARE, Sim-CLIP) read its images only.

Evaluation is zero-shot on datasets that each hold something out from that slice, as the papers' 13-16 zero-shot
datasets do from ImageNet: shape and colour values that no fine-tuning image shows (their names are new words to
the supervised objectives too), a label vocabulary that fine-tuning never trained on (counts), and
image domains it never saw (outlines, the analogue of ImageNet-Sketch; stripes, of ImageNet-R). ``objects`` is the
in-distribution dataset, the analogue of ImageNet itself: the fine-tuning classes on unseen test scenes of the
fine-tuning distribution, reported apart from the zero-shot average.

Each dataset draws its scenes from a random stream of its own, so no two datasets (and no dataset and the
fine-tuning set) share a scene by construction; the test split never shares a stream with the train split.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from functools import cached_property

from bench.micro import language
from bench.micro.world import COLOURS, COUNTS, GRID, SHAPES, WORLD_VERSION, Scene, Slice

SEEN_SHAPES = ("circle", "square", "triangle", "cross", "ring")
HELD_OUT_SHAPES = tuple(s for s in SHAPES if s not in SEEN_SHAPES)  # star, diamond, hexagon, crescent
# the fine-grained family of greens and blues (15 degrees apart) that fine-tuning never shows
HELD_OUT_COLOURS = ("green", "emerald", "mint", "teal", "cyan", "cerulean", "azure")
SEEN_COLOURS = tuple(c for c in COLOURS if c not in HELD_OUT_COLOURS)
SEEN_COUNTS = (1, 2, 3)

FINETUNE = Slice(shapes=SEEN_SHAPES, colours=SEEN_COLOURS, counts=SEEN_COUNTS, styles=("solid",))
# the fine-tuning set's own wording, in no evaluation ensemble
FINETUNE_TEMPLATE = "a photo of {article} {colour} {shape}."
FINETUNE_STREAM = 1


@dataclass(frozen=True)
class FineTuningSet:
    """The micro "ImageNet": what every micro recipe fine-tunes on. Scenes come from the train split (and the
    validation split for recipe tuning) of its own stream."""

    within: Slice = FINETUNE
    template: str = FINETUNE_TEMPLATE
    stream: int = FINETUNE_STREAM

    @cached_property
    def classes(self) -> tuple[tuple[str, str], ...]:
        return tuple(itertools.product(self.within.shapes, self.within.colours))

    def label(self, scene: Scene) -> int:
        return self.classes.index((scene.shape, scene.colour))

    @property
    def class_prompts(self) -> list[list[str]]:
        return [[self.template.format(article="an" if c[0] in "aeiou" else "a", shape=s, colour=c)]
                for s, c in self.classes]

    def definition(self) -> dict:
        """What the set is, for the training identity: a changed slice, template or world never reuses a
        checkpoint trained on the old one."""
        return {"world_version": WORLD_VERSION, "slice": self.within.definition(), "template": self.template,
                "stream": self.stream, "classes": "shape x colour"}


FINETUNING_SET = FineTuningSet()


@dataclass(frozen=True)
class MicroDataset:
    """A zero-shot (or in-distribution) classification dataset of the micro world."""

    name: str
    role: str  # "zero-shot" or "in-distribution"
    within: Slice  # the scenes it draws
    label: str  # what a class is: shape | colour | count | position | object (shape and colour)
    # what it holds out from fine-tuning, in words (also the dataset table of docs/guide/suites.md; tests/test_docs.py)
    holds_out: str
    stream: int

    @property
    def style(self) -> str:
        (style,) = self.within.styles  # one image domain per dataset: its prompts are worded for it
        return style

    @cached_property
    def classes(self) -> tuple:
        values = {"shape": self.within.shapes, "colour": self.within.colours, "count": self.within.counts,
                  "position": tuple(range(GRID * GRID)),
                  "object": tuple(itertools.product(self.within.shapes, self.within.colours))}
        return tuple(values[self.label])

    @property
    def classnames(self) -> list[str]:
        if self.label == "count":
            return [language.NUMBER_WORDS[k] for k in self.classes]
        if self.label == "position":
            return [language.cell_phrase(c) for c in self.classes]
        if self.label == "object":
            return [f"{c} {s}" for s, c in self.classes]
        return list(self.classes)

    def label_of(self, scene: Scene) -> int:
        value = {"shape": scene.shape, "colour": scene.colour, "count": scene.count,
                 "position": scene.cells[0], "object": (scene.shape, scene.colour)}[self.label]
        return self.classes.index(value)

    def class_prompts(self) -> list[list[str]]:
        """Every complete description of each class, in the wording of the dataset's image domain, with the other
        attributes ranging over the whole world (a zero-shot user knows the classes and the domain, not which
        nuisance values the dataset happens to hold); combined by logsumexp (see ``language.ENSEMBLE``)."""
        templates = language.PROMPT_TEMPLATES[self.style]
        out = []
        for value in self.classes:
            fixed = {"shape": SHAPES, "colour": COLOURS, "count": COUNTS}
            where = ""
            if self.label == "object":
                fixed = {**fixed, "shape": (value[0],), "colour": (value[1],)}
            elif self.label == "position":
                fixed, where = {**fixed, "count": (1,)}, " " + language.cell_phrase(value)
            else:
                fixed = {**fixed, self.label: (value,)}
            phrases = [language.scene_phrase(s, c, k, self.style) + where
                       for s in fixed["shape"] for c in fixed["colour"] for k in fixed["count"]]
            out.append([t.format(p) for p in phrases for t in templates])
        return out

    def definition(self) -> dict:
        """Everything that decides its samples, labels and prompts: part of every cell's identity."""
        prompts = hashlib.sha256(json.dumps(self.class_prompts()).encode()).hexdigest()[:12]
        return {"world_version": WORLD_VERSION, "slice": self.within.definition(), "label": self.label,
                "stream": self.stream, "prompts_sha256": prompts}


def _zero_shot(name: str, label: str, holds_out: str, stream: int, **slice_fields) -> MicroDataset:
    fields = {"shapes": SEEN_SHAPES, "colours": SEEN_COLOURS, "counts": SEEN_COUNTS, "styles": ("solid",),
              **slice_fields}
    return MicroDataset(name, "zero-shot", Slice(**fields), label, holds_out, stream)


DATASETS: dict[str, MicroDataset] = {d.name: d for d in (
    MicroDataset("objects", "in-distribution", FINETUNE, "object",
                 "nothing: the fine-tuning classes on unseen test scenes of the fine-tuning distribution", 10),
    _zero_shot("novel-shapes", "shape", "shapes (and their names) that no fine-tuning image or label shows: "
               "star, diamond, hexagon, crescent", 11, shapes=HELD_OUT_SHAPES),
    _zero_shot("novel-colours", "colour", "a fine-grained family of hues (and their names) that no fine-tuning image "
               "or label shows: seven greens and blues 15 degrees apart", 12, colours=HELD_OUT_COLOURS),
    _zero_shot("count", "count", "a label vocabulary fine-tuning never trained on (its labels name shape and "
               "colour, never a count), and four objects, which no fine-tuning image shows", 13, counts=COUNTS),
    _zero_shot("sketch", "shape", "an image domain fine-tuning never saw: objects drawn as outlines (the analogue "
               "of ImageNet-Sketch)", 15, styles=("outline",)),
    _zero_shot("stripes", "shape", "an image domain fine-tuning never saw: objects filled with stripes (the "
               "analogue of ImageNet-R's renditions)", 16, styles=("striped",)),
)}
ZEROSHOT_DATASETS = tuple(DATASETS)  # table order: the in-distribution dataset first, then the zero-shot ones


@dataclass(frozen=True)
class HeldOut:
    """What a dataset holds out from the fine-tuning set, derived from the two definitions (never written by hand):
    attribute values its scenes take that no fine-tuning scene does, class names fine-tuning labels never use, and
    rendering styles fine-tuning never draws."""

    values: dict[str, tuple]
    vocabulary: tuple[str, ...]
    styles: tuple[str, ...]


FINETUNE_LABELS = ("shape", "colour")  # what a fine-tuning class names


def held_out(spec: MicroDataset, finetune: FineTuningSet = FINETUNING_SET) -> HeldOut:
    ours, theirs = spec.within, finetune.within
    values = {attribute: tuple(v for v in getattr(ours, plural) if v not in getattr(theirs, plural))
              for attribute, plural in (("shape", "shapes"), ("colour", "colours"), ("count", "counts"))}
    values = {k: v for k, v in values.items() if v}
    if spec.label in FINETUNE_LABELS:  # the label names are fine-tuning's own words, except the held-out values'
        vocabulary = tuple(name for name, value in zip(spec.classnames, spec.classes)
                           if value in values.get(spec.label, ()))
    elif spec.label == "object":
        vocabulary = ()
    else:  # a label fine-tuning never trained on: every class name is new
        vocabulary = tuple(spec.classnames)
    return HeldOut(values, vocabulary, tuple(s for s in ours.styles if s not in theirs.styles))
