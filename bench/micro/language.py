"""Captions (COCO-style, 5 per image), VQAv2-style questions (10 answers each) and zero-shot class prompts.

Texts are drawn from their own random stream, separate from the image stream, so changing a caption template
never changes a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.micro.world import COLOURS, COUNTS, GRID, SHAPES, SPLITS, Scene

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses", "ring": "rings"}
NOUNS = ("shapes", "objects", "things")
VERTICAL = ("at the top", "at the bottom")  # by grid row
HORIZONTAL = ("on the left", "on the right")  # by grid column
SIDES = ("left", "right")


def text_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split], index, 1000 + stream])


def position_phrase(scene: Scene) -> str:
    rows, cols = set(scene.rows), set(scene.cols)
    if scene.count == 1:
        return f"{VERTICAL[scene.rows[0]]} {HORIZONTAL[scene.cols[0]]}"
    if rows == {0}:
        return "along the top"
    if rows == {GRID - 1}:
        return "along the bottom"
    if cols == {0}:
        return "down the left side"
    if cols == {GRID - 1}:
        return "down the right side"
    return "in the corners" if scene.count == GRID * GRID else "spread across the image"


def _noun_phrase(scene: Scene, rng: np.random.Generator) -> str:
    number = NUMBER_WORDS[scene.count] if rng.random() < 0.75 else str(scene.count)
    if scene.count == 1:
        article = "a" if rng.random() < 0.6 else "one"
        return f"{article} {scene.colour} {scene.shape}"
    return f"{number} {scene.colour} {PLURALS[scene.shape]}"


@dataclass(frozen=True)
class Caption:
    text: str
    mentions: frozenset[str]  # which of shape / colour / count the caption states (partial captions state one)


FULL = frozenset({"shape", "colour", "count"})


def count_phrase(count: int) -> str:
    return f"{NUMBER_WORDS[count]} object{'s' if count > 1 else ''}"


def _partial(scene: Scene, attribute: str, rng: np.random.Generator) -> str:
    """A caption that states one attribute only, as terse annotators write ("some star shapes.")."""
    be = "are" if scene.count > 1 else "is"
    options = {
        "shape": [f"{scene.shape} shapes.", f"a picture of {scene.shape} shapes.",
                  f"something shaped like a {scene.shape}."],
        "colour": [f"{scene.colour} shapes.", f"something {scene.colour}.", f"a picture of {scene.colour} things."],
        "count": [f"{count_phrase(scene.count)}.", f"a picture of {count_phrase(scene.count)}.",
                  f"there {be} {count_phrase(scene.count)} here."],
    }[attribute]
    return options[int(rng.integers(len(options)))]


def captions_with_mentions(scene: Scene, rng: np.random.Generator, n: int = 5, n_partial: int = 1
                           ) -> list[Caption]:
    """``n`` different captions of ``scene`` as annotators might write them: ``n - n_partial`` complete ones and
    ``n_partial`` terse ones that state a single attribute."""
    bg = "light" if scene.light_background else "dark"
    noun = NOUNS[int(rng.integers(len(NOUNS)))]
    plural = scene.count > 1
    be = "are" if plural else "is"
    shape_word = PLURALS[scene.shape] if plural else scene.shape
    templates = [
        lambda np_: f"{np_}.",
        lambda np_: f"a picture of {np_} on a {bg} background.",
        lambda np_: f"{np_} {position_phrase(scene)}.",
        lambda np_: f"an image showing {np_}.",
        lambda np_: f"a noisy {bg} background with {np_} on it.",
        lambda np_: f"there {be} {np_} in this image.",
        lambda np_: (f"{NUMBER_WORDS[scene.count]} {scene.colour} {noun} shaped like {shape_word}."
                     if plural else f"one {scene.colour} object shaped like a {scene.shape}."),
        lambda np_: f"a photo of {np_} {position_phrase(scene)}.",
    ]
    order = rng.permutation(len(templates))[: n - n_partial]
    out = [Caption(templates[i](_noun_phrase(scene, rng)), FULL) for i in order]
    for attribute in rng.permutation(sorted(FULL))[:n_partial]:
        out.append(Caption(_partial(scene, str(attribute), rng), frozenset({str(attribute)})))
    return [out[i] for i in rng.permutation(len(out))]


def captions(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` different captions of ``scene`` (see ``captions_with_mentions``)."""
    return [c.text for c in captions_with_mentions(scene, rng, n)]


@dataclass(frozen=True)
class Question:
    question: str
    answer: str  # the canonical answer
    answers: tuple[str, ...]  # ten annotator answers, VQAv2-style
    kind: str  # shape | colour | count | yesno | side


def _annotators(canonical: str, variants: list[str], distractors: list[str], rng: np.random.Generator) -> tuple:
    """Ten answers: mostly the canonical one, some surface variants that normalise to it, a few mistakes."""
    out = []
    for _ in range(10):
        u = rng.random()
        if u < 0.82 or not (variants or distractors):
            out.append(canonical)
        elif u < 0.94 and variants:
            out.append(str(rng.choice(variants)))
        else:
            out.append(str(rng.choice(distractors)) if distractors else canonical)
    return tuple(out)


def questions(scene: Scene, rng: np.random.Generator, n: int = 3) -> list[Question]:
    """``n`` questions of different kinds about ``scene``."""
    other_shapes = [s for s in SHAPES if s != scene.shape]
    other_colours = [c for c in COLOURS if c != scene.colour]
    plural = scene.count > 1
    made: list[Question] = []

    shape_q = "what shape are the objects?" if plural else "what shape is the object?"
    made.append(Question(shape_q, scene.shape,
                         _annotators(scene.shape, [f"a {scene.shape}", PLURALS[scene.shape], scene.shape.title()],
                                     other_shapes, rng), "shape"))
    colour_q = f"what colour are the {PLURALS[scene.shape]}?" if plural else f"what colour is the {scene.shape}?"
    made.append(Question(colour_q, scene.colour,
                         _annotators(scene.colour, [scene.colour.title(), f"{scene.colour}."], other_colours, rng),
                         "colour"))
    count = str(scene.count)
    made.append(Question(f"how many {PLURALS[scene.shape]} are there?", count,
                         _annotators(count, [NUMBER_WORDS[scene.count]],
                                     [str(c) for c in COUNTS if c != scene.count], rng), "count"))
    # yes/no about a colour-shape pair, true half of the time
    if rng.random() < 0.5:
        ask_shape, ask_colour, yes = scene.shape, scene.colour, True
    elif rng.random() < 0.5:
        ask_shape, ask_colour, yes = scene.shape, str(rng.choice(other_colours)), False
    else:
        ask_shape, ask_colour, yes = str(rng.choice(other_shapes)), scene.colour, False
    ans = "yes" if yes else "no"
    made.append(Question(f"is there a {ask_colour} {ask_shape} in the image?", ans,
                         _annotators(ans, [ans.title()], ["no" if yes else "yes"], rng), "yesno"))
    if scene.count == 1:
        side = SIDES[scene.cols[0]]
        made.append(Question(f"which side of the image is the {scene.shape} on?", side,
                             _annotators(side, [f"the {side}", f"{side} side"],
                                         [s for s in SIDES if s != side], rng), "side"))
    order = rng.permutation(len(made))[:n]
    return [made[i] for i in sorted(order)]


# Zero-shot classification: class names and prompt ensembles per micro dataset. A class's prompts describe it in
# every context the world has: the shape "ring" is "three red rings.", "a picture of one blue ring.", ... over all
# colours and counts, and the class embedding is their normalised mean (CLIP's prompt-ensemble recipe, with the
# other attributes of the scene as the nuisance the ensemble averages out).
CLASSNAMES = {
    "shape": list(SHAPES),
    "colour": list(COLOURS),
    "count": [NUMBER_WORDS[c] for c in COUNTS],
}
TEMPLATES = ("{}.", "a picture of {}.")
ENSEMBLE = "logsumexp"  # see tasks/zeroshot_model.py: these prompts enumerate contexts, their probabilities add up


def _phrase(shape: str, colour: str, count: int) -> str:
    return f"{NUMBER_WORDS[count]} {colour} {PLURALS[shape] if count > 1 else shape}"


def class_prompts(dataset: str) -> list[list[str]]:
    """Prompts per class: ``[[prompt, ...] for class]``, in the order of ``CLASSNAMES[dataset]``."""
    if dataset == "shape":
        phrases = [[_phrase(s, c, k) for c in COLOURS for k in COUNTS] for s in SHAPES]
    elif dataset == "colour":
        phrases = [[_phrase(s, c, k) for s in SHAPES for k in COUNTS] for c in COLOURS]
    elif dataset == "count":
        phrases = [[_phrase(s, c, k) for s in SHAPES for c in COLOURS] for k in COUNTS]
    else:
        raise KeyError(f"unknown micro dataset {dataset!r}")
    return [[t.format(p) for p in ps for t in TEMPLATES] for ps in phrases]
