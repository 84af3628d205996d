"""The micro world: procedurally drawn scenes with known contents.

Every scene is a few identical objects (one shape, one colour, one rendering style, 1-4 of them) placed in distinct
cells of a 2x2 grid on a textured, noisy background. A scene is a pure function of ``(seed, split, stream, index)``,
so any sample of any split can be regenerated exactly, on any machine, without storing images. A ``stream`` is the
random stream of one distribution over scenes (the whole world, the fine-tuning set, one evaluation dataset), so
two datasets never share a scene by accident.

The world is deliberately not trivial: fifteen hues with jittered saturation and brightness, eight of them 30
degrees apart and a fine-grained family of seven greens and blues 15 degrees apart; nine shapes that include near
neighbours (a hexagon and a circle, a square and a diamond); small objects; backgrounds with blocky noise, a
gradient and pixel noise. Those are the "finer distinctions" that let a small perturbation break an undefended
encoder while the true signal (tens of grey levels) is still there for a robust one to hold on to.

Images are 128 px (the micro CLIP reads them as 8 × 8 patches of 16 px). At 64 px the same design left the
undefended micro CLIP far more robust than a real CLIP at ε = 1/255 (docs/guide/suites.md, "Why world version
2", gives the figures); lengths are written for 64 px and scaled with the image, so the two look alike.

Three rendering styles are the world's image domains: ``solid`` (filled, the domain of the fine-tuning set),
``outline`` (a thin contour, the analogue of ImageNet-Sketch) and ``striped`` (the object filled with stripes of its
colour, the analogue of ImageNet-R's renditions).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

WORLD_VERSION = 2  # part of every micro dataset's and training set's identity: a new world never reuses old cells
SHAPES = ("circle", "square", "triangle", "cross", "ring", "star", "diamond", "hexagon", "crescent")
# eight hues 30 degrees apart, and between lime and blue a fine-grained family 15 degrees apart
HUES_DEG = {"red": 0, "orange": 30, "yellow": 60, "lime": 90, "green": 120, "emerald": 135, "mint": 150,
            "teal": 165, "cyan": 180, "cerulean": 195, "azure": 210, "blue": 240, "violet": 270, "magenta": 300,
            "pink": 330}
COLOURS = tuple(HUES_DEG)
HUE_JITTER_DEG = 3.0
COUNTS = (1, 2, 3, 4)
STYLES = ("solid", "outline", "striped")
GRID = 2  # objects sit in distinct cells of a GRID × GRID layout
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_IMAGE_SIZE = 128
LENGTH_UNIT = 64  # lengths in pixels below are for 64 px images and scale with the image
DEFAULT_WORLD_SEED = 0


@dataclass(frozen=True)
class Scene:
    """What a scene contains; everything captions, questions and labels are made of."""

    shape: str
    colour: str
    count: int
    cells: tuple[int, ...]  # occupied grid cells, row-major in [0, GRID²)
    light_background: bool
    style: str = "solid"

    @property
    def rows(self) -> tuple[int, ...]:
        return tuple(c // GRID for c in self.cells)

    @property
    def cols(self) -> tuple[int, ...]:
        return tuple(c % GRID for c in self.cells)


@dataclass(frozen=True)
class Slice:
    """A distribution over scenes: each attribute drawn uniformly from the values listed."""

    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = COLOURS
    counts: tuple[int, ...] = COUNTS
    styles: tuple[str, ...] = STYLES

    def __post_init__(self):
        for values, known, what in ((self.shapes, SHAPES, "shape"), (self.colours, COLOURS, "colour"),
                                    (self.counts, COUNTS, "count"), (self.styles, STYLES, "style")):
            unknown = [v for v in values if v not in known]
            if not values or unknown:
                raise ValueError(f"a slice needs known {what} values, got {values!r}")

    def holds(self, scene: Scene) -> bool:
        return (scene.shape in self.shapes and scene.colour in self.colours and scene.count in self.counts
                and scene.style in self.styles)

    def definition(self) -> dict:
        return {"shapes": list(self.shapes), "colours": list(self.colours), "counts": list(self.counts),
                "styles": list(self.styles)}


WHOLE_WORLD = Slice()  # what the micro CLIP is pre-trained on: its "web"


def scene_rng(seed: int, split: str, index: int, stream: int = 0) -> np.random.Generator:
    """The random stream of one sample; splits and streams never share a stream, so they are disjoint by
    construction."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    key = [seed, SPLITS[split], index] if stream == 0 else [seed, SPLITS[split], index, 7919, stream]
    return np.random.default_rng(key)


def sample_scene(rng: np.random.Generator, within: Slice = WHOLE_WORLD) -> Scene:
    count = int(rng.choice(within.counts))
    cells = tuple(sorted(int(c) for c in rng.choice(GRID * GRID, size=count, replace=False)))
    return Scene(
        shape=str(rng.choice(within.shapes)),
        colour=str(rng.choice(within.colours)),
        count=count,
        cells=cells,
        light_background=bool(rng.random() < 0.5),
        style=str(rng.choice(within.styles)),
    )


def _polar(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.sqrt(u * u + v * v), np.arctan2(-v, u)  # angle measured upward (v points down)


def _shape_field(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A field that is < 1 inside the unit-sized shape and, near its boundary, grows like the distance to it (in
    units of the object radius), so that ``(1 - field) * radius`` is the signed distance in pixels that the soft
    edge and the outline style are drawn from.

    ``u`` points right, ``v`` points down, both in units of the object radius.
    """
    if shape == "circle":
        return np.sqrt(u * u + v * v)
    if shape == "square":
        return 1.0 + np.maximum(np.abs(u), np.abs(v)) - 0.87
    if shape == "triangle":
        # equilateral, apex up, centred on its centroid: three half-planes with unit normals, inradius 0.625
        k = math.sqrt(3.0) / 2.0
        edges = np.maximum(np.maximum(v, -0.5 * v + k * u), -0.5 * v - k * u)
        return 1.0 + edges - 0.625
    if shape == "cross":
        # two bars, 0.95 long and 0.34 wide (half-extents); a union is the nearer of the two
        horizontal = np.maximum(np.abs(u) - 0.95, np.abs(v) - 0.34)
        vertical = np.maximum(np.abs(u) - 0.34, np.abs(v) - 0.95)
        return 1.0 + np.minimum(horizontal, vertical)
    if shape == "ring":
        # an annulus between radii 0.44 and 1.0: (1 - field) is the distance to its nearer edge
        return 1.0 + np.abs(np.sqrt(u * u + v * v) - 0.72) - 0.28
    if shape == "star":
        # five points, one up: the boundary radius falls linearly from 1 at a tip to 0.45 between two tips
        r, theta = _polar(u, v)
        sector = 2 * math.pi / 5
        t = np.mod(theta - math.pi / 2, sector) / sector  # 0 and 1 at tips, 0.5 between them
        edge = 0.45 + 0.55 * np.abs(2 * t - 1)
        return 1.0 + (r - edge) * 0.8  # the edge runs at a slant to the radius: distance ≈ 0.8 × radial gap
    if shape == "diamond":
        # a square standing on a corner: the square's near neighbour, 45 degrees apart
        return 1.0 + (np.abs(u) + np.abs(v) - 1.18) / math.sqrt(2.0)
    if shape == "hexagon":
        # flat top and bottom: three pairs of half-planes at the apothem 0.82; the circle's near neighbour
        sides = [np.abs(u * math.cos(a) + v * math.sin(a)) for a in (math.pi / 6, math.pi / 2, 5 * math.pi / 6)]
        return 1.0 + np.maximum(np.maximum(sides[0], sides[1]), sides[2]) - 0.82
    if shape == "crescent":
        # the unit disc less a disc of radius 0.8 shifted right and up
        outer = np.sqrt(u * u + v * v)
        bite = np.sqrt((u - 0.45) ** 2 + (v + 0.15) ** 2)
        return np.maximum(outer, 1.8 - bite)
    raise ValueError(f"unknown shape {shape!r}")


def _background(rng: np.random.Generator, size: int, light: bool) -> np.ndarray:
    level = rng.uniform(0.58, 0.72) if light else rng.uniform(0.28, 0.42)
    tint = rng.normal(0.0, 0.025, size=3)
    base = np.full((size, size, 3), level, dtype=np.float32) + tint.astype(np.float32)
    # blocky noise at a random block size and offset (not aligned with any patch grid)
    block = int(rng.integers(3, 7)) * size // LENGTH_UNIT
    n = size // block + 2
    blocks = rng.normal(0.0, 0.06, size=(n, n, 1)).astype(np.float32)
    blocks = np.repeat(np.repeat(blocks, block, axis=0), block, axis=1)
    oy, ox = rng.integers(0, block, size=2)
    base += blocks[oy : oy + size, ox : ox + size]
    # a smooth gradient across the image
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    grad = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
    base += (0.06 * grad)[..., None]
    return base


def _object_colour(rng: np.random.Generator, colour: str) -> np.ndarray:
    hue = (HUES_DEG[colour] + rng.uniform(-HUE_JITTER_DEG, HUE_JITTER_DEG)) % 360 / 360.0
    sat = rng.uniform(0.4, 0.75)
    val = rng.uniform(0.55, 0.9)
    return np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32)


OUTLINE_PX = 1.6  # contour width of the outline style (at 64 px)
STRIPE_PERIOD_PX = 4.0  # stripe period of the striped style (at 64 px)


def _coverage(style: str, inside_px: np.ndarray, stripes: np.ndarray) -> np.ndarray:
    """How much of each pixel the object covers, from the signed distance to its boundary in pixels (positive
    inside): a soft edge about one pixel wide, a thin contour, or the filled shape cut into stripes."""
    fill = np.clip(inside_px + 0.5, 0.0, 1.0)
    if style == "solid":
        return fill
    if style == "outline":
        return np.clip(np.minimum(inside_px + 0.5, OUTLINE_PX + 0.5 - inside_px), 0.0, 1.0)
    if style == "striped":
        return fill * stripes
    raise ValueError(f"unknown style {style!r}")


def render(scene: Scene, rng: np.random.Generator, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Draw ``scene`` as an (size, size, 3) float32 image in [0, 1]."""
    img = _background(rng, size, scene.light_background)
    unit = size / LENGTH_UNIT
    cell = size / GRID
    rgb = _object_colour(rng, scene.colour)  # one colour for all objects of a scene
    angle = rng.uniform(0, math.pi)  # stripe direction, one per scene
    for c in scene.cells:
        r, q = divmod(c, GRID)
        radius = rng.uniform(0.30, 0.42) * cell
        slack = cell / 2 - radius
        cy = (r + 0.5) * cell + rng.uniform(-slack, slack) * 0.8
        cx = (q + 0.5) * cell + rng.uniform(-slack, slack) * 0.8
        # an object stays inside its cell: draw it there only (every pixel outside is exactly the background)
        rows, cols = slice(int(r * cell), int((r + 1) * cell)), slice(int(q * cell), int((q + 1) * cell))
        yy, xx = np.mgrid[rows, cols].astype(np.float32) + 0.5
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) / (STRIPE_PERIOD_PX * unit)
        stripes = np.clip(8.0 * np.abs(np.mod(phase, 1.0) - 0.5) - 1.5, 0.0, 1.0)
        field = _shape_field(scene.shape, (xx - cx) / radius, (yy - cy) / radius)
        alpha = _coverage(scene.style, (1.0 - field) * radius / unit, stripes)[..., None]
        shade = 1.0 + rng.normal(0.0, 0.04, size=alpha.shape).astype(np.float32)
        img[rows, cols] = img[rows, cols] * (1 - alpha) + alpha * (rgb * shade)
    img += rng.normal(0.0, 0.025, size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def make_sample(seed: int, split: str, index: int, size: int = DEFAULT_IMAGE_SIZE, within: Slice = WHOLE_WORLD,
                stream: int = 0) -> tuple[Scene, np.ndarray]:
    rng = scene_rng(seed, split, index, stream)
    scene = sample_scene(rng, within)
    return scene, render(scene, rng, size)
