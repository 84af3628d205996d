"""The micro world: procedurally drawn scenes with known contents.

Every scene is a few identical objects (one shape, one colour, 1-4 of them) placed in distinct cells of a 2x2 grid
on a textured, noisy background. A scene is a pure function of ``(seed, split, index)``, so any sample of any split
can be regenerated exactly, on any machine, without storing images.

The world is deliberately not trivial: hues sit 45 degrees apart with jittered saturation and brightness, objects
are small, backgrounds carry blocky noise, a gradient and pixel noise. Those are the "finer distinctions" that let a
4/255 perturbation break an undefended encoder while the true signal (tens of grey levels) is still there for a
robust one to hold on to.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross", "ring")
COLOURS = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink")
HUES_DEG = {"red": 0, "orange": 30, "yellow": 55, "green": 120, "teal": 175, "blue": 220, "purple": 275,
            "pink": 325}
COUNTS = (1, 2, 3, 4)
GRID = 2  # objects sit in distinct cells of a GRID × GRID layout
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_IMAGE_SIZE = 64
DEFAULT_WORLD_SEED = 0


@dataclass(frozen=True)
class Scene:
    """What a scene contains; everything captions, questions and labels are made of."""

    shape: str
    colour: str
    count: int
    cells: tuple[int, ...]  # occupied grid cells, row-major in [0, GRID²)
    light_background: bool

    @property
    def rows(self) -> tuple[int, ...]:
        return tuple(c // GRID for c in self.cells)

    @property
    def cols(self) -> tuple[int, ...]:
        return tuple(c % GRID for c in self.cells)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one sample; splits never share a stream, so they are disjoint by construction."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    return np.random.default_rng([seed, SPLITS[split], index])


def sample_scene(rng: np.random.Generator) -> Scene:
    count = int(rng.choice(COUNTS))
    cells = tuple(sorted(int(c) for c in rng.choice(GRID * GRID, size=count, replace=False)))
    return Scene(
        shape=str(rng.choice(SHAPES)),
        colour=str(rng.choice(COLOURS)),
        count=count,
        cells=cells,
        light_background=bool(rng.random() < 0.5),
    )


def _shape_field(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A field that is < 1 inside the unit-sized shape and grows roughly like distance outside it.

    ``u`` points right, ``v`` points down, both in units of the object radius.
    """
    if shape == "circle":
        return np.sqrt(u * u + v * v)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) * 1.15
    if shape == "triangle":
        # equilateral, apex up: three half-planes, centred on the centroid
        k = math.sqrt(3.0) / 2.0
        d1 = v * 1.0  # bottom edge
        d2 = -0.5 * v + k * u
        d3 = -0.5 * v - k * u
        return np.maximum(np.maximum(d1, d2), d3) * 1.6
    if shape == "cross":
        arm = 0.36
        return np.minimum(np.maximum(np.abs(u), np.abs(v) / arm), np.maximum(np.abs(u) / arm, np.abs(v))) * 1.05
    if shape == "ring":
        # an annulus between radii 0.44 and 1.0: (1 - field) is the distance to its nearer edge
        return 1.0 + np.abs(np.sqrt(u * u + v * v) - 0.72) - 0.28
    raise ValueError(f"unknown shape {shape!r}")


def _background(rng: np.random.Generator, size: int, light: bool) -> np.ndarray:
    level = rng.uniform(0.58, 0.72) if light else rng.uniform(0.28, 0.42)
    tint = rng.normal(0.0, 0.025, size=3)
    base = np.full((size, size, 3), level, dtype=np.float32) + tint.astype(np.float32)
    # blocky noise at a random block size and offset (not aligned with any patch grid)
    block = int(rng.integers(3, 7))
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
    hue = (HUES_DEG[colour] + rng.uniform(-6, 6)) % 360 / 360.0
    sat = rng.uniform(0.55, 0.9)
    val = rng.uniform(0.6, 0.95)
    return np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32)


def render(scene: Scene, rng: np.random.Generator, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Draw ``scene`` as an (size, size, 3) float32 image in [0, 1]."""
    img = _background(rng, size, scene.light_background)
    cell = size / GRID
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    rgb = _object_colour(rng, scene.colour)  # one colour for all objects of a scene
    for c in scene.cells:
        r, q = divmod(c, GRID)
        radius = rng.uniform(0.30, 0.42) * cell
        slack = cell / 2 - radius
        cy = (r + 0.5) * cell + rng.uniform(-slack, slack) * 0.8
        cx = (q + 0.5) * cell + rng.uniform(-slack, slack) * 0.8
        field = _shape_field(scene.shape, (xx - cx) / radius, (yy - cy) / radius)
        # soft edge about one pixel wide: alpha from the field's distance to the boundary, in pixels
        alpha = np.clip((1.0 - field) * radius + 0.5, 0.0, 1.0)[..., None]
        shade = 1.0 + rng.normal(0.0, 0.04, size=(size, size, 1)).astype(np.float32)
        img = img * (1 - alpha) + alpha * (rgb * shade)
    img += rng.normal(0.0, 0.025, size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def make_sample(seed: int, split: str, index: int, size: int = DEFAULT_IMAGE_SIZE) -> tuple[Scene, np.ndarray]:
    rng = scene_rng(seed, split, index)
    scene = sample_scene(rng)
    return scene, render(scene, rng, size)
