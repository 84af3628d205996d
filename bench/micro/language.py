"""Captions (COCO-style, 5 per image), VQAv2-style questions (10 answers each) and zero-shot class prompts.

Texts are drawn from their own random stream, separate from the image stream, so changing a caption template
never changes a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.micro.world import COLOURS, COUNTS, GRID, SHAPES, SPLITS, Scene

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses", "ring": "rings",
           "star": "stars", "diamond": "diamonds", "hexagon": "hexagons", "crescent": "crescents"}
NOUNS = ("shapes", "objects", "things")
VERTICAL = ("at the top", "at the bottom")  # by grid row
HORIZONTAL = ("on the left", "on the right")  # by grid column
SIDES = ("left", "right")


def text_rng(seed: int, split: str, index: int, kind: int, stream: int = 0) -> np.random.Generator:
    """The random stream of one sample's texts (``kind`` 0: captions, 1: questions) of scene stream ``stream``."""
    key = [seed, SPLITS[split], index, 1000 + kind] + ([7919, stream] if stream else [])
    return np.random.default_rng(key)


def position_phrase(scene: Scene) -> str:
    rows, cols = set(scene.rows), set(scene.cols)
    if scene.count == 1:
        return cell_phrase(scene.cells[0])
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
    colour = f"striped {scene.colour}" if scene.style == "striped" else scene.colour
    if scene.count == 1:
        article = "a" if rng.random() < 0.6 else "one"
        return f"{article} {colour} {scene.shape}"
    return f"{number} {colour} {PLURALS[scene.shape]}"


@dataclass(frozen=True)
class Caption:
    text: str
    # what the caption states: shape / colour / count (complete captions state all three, terse ones one), and
    # position or style where its wording does; the micro CLIP treats a caption as describing every scene that
    # agrees with what it states
    mentions: frozenset[str]


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


def _templates(scene: Scene, rng: np.random.Generator) -> list[tuple[object, frozenset[str]]]:
    """(template over a noun phrase, what beyond shape, colour and count it states) for ``scene``'s style: photo-like
    wordings for solid and striped objects (a striped one's noun phrase says "striped"), sketch wordings for
    outlines."""
    bg = "light" if scene.light_background else "dark"
    where = position_phrase(scene)
    plural = scene.count > 1
    be = "are" if plural else "is"
    none, pos = frozenset(), frozenset({"position"})
    if scene.style == "outline":
        return [
            (lambda np_: f"a sketch of {np_}.", none),
            (lambda np_: f"an outline drawing of {np_} on a {bg} background.", none),
            (lambda np_: f"a line drawing of {np_} {where}.", pos),
            (lambda np_: f"a sketch showing {np_}.", none),
            (lambda np_: f"{np_} drawn in outline.", none),
            (lambda np_: f"a drawing of {np_} {where}.", pos),
        ]
    noun = NOUNS[int(rng.integers(len(NOUNS)))]
    shape_word = PLURALS[scene.shape] if plural else scene.shape
    return [
        (lambda np_: f"{np_}.", none),
        (lambda np_: f"a picture of {np_} on a {bg} background.", none),
        (lambda np_: f"{np_} {where}.", pos),
        (lambda np_: f"an image showing {np_}.", none),
        (lambda np_: f"a noisy {bg} background with {np_} on it.", none),
        (lambda np_: f"there {be} {np_} in this image.", none),
        (lambda np_: (f"{NUMBER_WORDS[scene.count]} {scene.colour} {noun} shaped like {shape_word}." if plural
                      else f"one {scene.colour} object shaped like a {scene.shape}."), frozenset({"no-style"})),
        (lambda np_: f"a photo of {np_} {where}.", pos),
    ]


def captions_with_mentions(scene: Scene, rng: np.random.Generator, n: int = 5, n_partial: int = 1
                           ) -> list[Caption]:
    """``n`` different captions of ``scene`` as annotators might write them: ``n - n_partial`` complete ones and
    ``n_partial`` terse ones that state a single attribute."""
    templates = _templates(scene, rng)
    order = rng.permutation(len(templates))[: n - n_partial]
    out = []
    for i in order:
        template, extra = templates[i]
        # a sketch wording or a striped noun phrase states the style; a plain photo wording of a solid scene does not
        states_style = scene.style == "outline" or (scene.style == "striped" and "no-style" not in extra)
        mentions = FULL | (extra - {"no-style"}) | ({"style"} if states_style else set())
        out.append(Caption(template(_noun_phrase(scene, rng)), frozenset(mentions)))
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


# Zero-shot prompts are built from the same phrases as the captions (bench/micro/datasets.py enumerates them):
# a complete description of a scene, optionally where it is, in the wording of its image domain.
PROMPT_TEMPLATES = {
    "solid": ("{}.", "a picture of {}."),
    "striped": ("{}.", "a picture of {}."),  # the noun phrase says "striped"
    "outline": ("a sketch of {}.", "an outline drawing of {}."),
}


def scene_phrase(shape: str, colour: str, count: int, style: str = "solid") -> str:
    """"three red rings", "one striped blue star": the noun phrase of a complete description."""
    colour = f"striped {colour}" if style == "striped" else colour
    return f"{NUMBER_WORDS[count]} {colour} {PLURALS[shape] if count > 1 else shape}"


def cell_phrase(cell: int) -> str:
    """Where a single object is: "at the top on the left" (the captions' words for one object)."""
    row, col = divmod(cell, GRID)
    return f"{VERTICAL[row]} {HORIZONTAL[col]}"


# a class's prompts enumerate its complete descriptions in every context (see tasks/zeroshot_model.py): their
# probabilities add up, so the class logit is their logsumexp
ENSEMBLE = "logsumexp"
