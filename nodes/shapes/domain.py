"""The synthetic Shapes domain: scenes, anti-aliased rendering, exact masks, captions, splits.

One object on a solid background. This module is the contract the data generator, the analyser,
the evaluation and the tests share:

- colours: 8 named palette colours, each drawn with ±12 RGB jitter; object ≠ background colour;
- shapes: circle (radius r), square (half side 0.88 r), upward triangle (circumradius 1.15 r),
  upward five-pointed star (outer radius 1.2 r, inner 0.45 of the outer);
- sizes: small r ∈ [0.11, 0.14], large r ∈ [0.21, 0.25] of the canvas side;
- positions: centre on a 3×3 grid at 0.28 / 0.5 / 0.72 of width and height, ±0.04 jitter;
- captions naming any subset of colour, shape, size, position and background, with paraphrases;
- held-out (colour, shape) pairs never used in training, and held-out full attribute combinations
  (so evaluation prompts are, by construction, prompts not used in training).

Pure numpy + PIL; geometry is resolution independent (fractions of the canvas side), so a scene
renders at any size.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 20),
    "yellow": (240, 220, 40),
    "green": (30, 170, 50),
    "blue": (35, 70, 225),
    "purple": (140, 45, 185),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
COLOR_JITTER = 12

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
SQUARE_HALF = 0.88  # half side, in units of r
TRIANGLE_CIRCUM = 1.15  # circumradius, in units of r
STAR_OUTER = 1.2  # outer radius, in units of r
STAR_INNER = 0.45  # inner radius, as a fraction of the outer radius

SIZES: tuple[str, ...] = ("small", "large")
SIZE_RANGES: dict[str, tuple[float, float]] = {"small": (0.11, 0.14), "large": (0.21, 0.25)}

GRID = (0.28, 0.5, 0.72)
POSITION_JITTER = 0.04
# name → (column, row) on the 3×3 grid; row 0 is the top.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0), "top": (1, 0), "top right": (2, 0),
    "left": (0, 1), "center": (1, 1), "right": (2, 1),
    "bottom left": (0, 2), "bottom": (1, 2), "bottom right": (2, 2),
}
POSITION_NAMES: tuple[str, ...] = tuple(POSITIONS)

# (colour, shape) pairs never rendered for training: the model must compose them.
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("red", "star"), ("blue", "triangle"), ("yellow", "circle"), ("purple", "square"),
})
# Fraction of the remaining full attribute combinations (colour, background, shape, size, position)
# kept out of training, so that evaluation prompts are prompts no training caption described.
HELDOUT_COMBO_FRACTION = 0.06

Split = Literal["train", "heldout_combos", "heldout_pairs", "any"]
ATTRIBUTES: tuple[str, ...] = ("color", "shape", "size", "position", "background")


@dataclass(frozen=True)
class Scene:
    """One scene: named attributes plus the concrete (jittered) values that render it."""

    color: str
    shape: str
    size: str
    position: str
    background: str
    fg_rgb: tuple[int, int, int]
    bg_rgb: tuple[int, int, int]
    cx: float  # object centre, fraction of the width
    cy: float  # object centre, fraction of the height (0 = top)
    r: float  # object radius, fraction of the canvas side

    def attributes(self) -> dict[str, str]:
        return {"color": self.color, "shape": self.shape, "size": self.size,
                "position": self.position, "background": self.background}

    def to_dict(self) -> dict:
        return asdict(self)


def combo_key(color: str, background: str, shape: str, size: str, position: str) -> str:
    return f"{color}|{background}|{shape}|{size}|{position}"


def is_heldout_combo(color: str, background: str, shape: str, size: str, position: str) -> bool:
    """Deterministic hash split of the full attribute combinations (independent of any seed)."""
    digest = hashlib.sha256(combo_key(color, background, shape, size, position).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < HELDOUT_COMBO_FRACTION


def split_of(color: str, background: str, shape: str, size: str, position: str) -> str:
    """Which split a combination belongs to: 'heldout_pairs', 'heldout_combos' or 'train'."""
    if (color, shape) in HELDOUT_PAIRS:
        return "heldout_pairs"
    if is_heldout_combo(color, background, shape, size, position):
        return "heldout_combos"
    return "train"


def all_combos(split: Split = "any") -> list[tuple[str, str, str, str, str]]:
    """Every (colour, background, shape, size, position) of a split, in a fixed order."""
    out = []
    for color in COLORS:
        for background in COLORS:
            if background == color:
                continue
            for shape in SHAPES:
                for size in SIZES:
                    for position in POSITION_NAMES:
                        if split == "any" or split_of(color, background, shape, size, position) == split:
                            out.append((color, background, shape, size, position))
    return out


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    j = rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
    return tuple(int(v) for v in np.clip(np.array(rgb) + j, 0, 255))


def make_scene(rng: np.random.Generator, color: str, background: str, shape: str, size: str,
               position: str) -> Scene:
    """Concrete scene for named attributes: jittered colours, centre and radius."""
    if color == background:
        raise ValueError(f"object and background must differ, both are {color!r}")
    col, row = POSITIONS[position]
    lo, hi = SIZE_RANGES[size]
    return Scene(
        color=color, shape=shape, size=size, position=position, background=background,
        fg_rgb=_jitter(rng, PALETTE[color]), bg_rgb=_jitter(rng, PALETTE[background]),
        cx=float(GRID[col] + rng.uniform(-POSITION_JITTER, POSITION_JITTER)),
        cy=float(GRID[row] + rng.uniform(-POSITION_JITTER, POSITION_JITTER)),
        r=float(rng.uniform(lo, hi)),
    )


def sample_scene(rng: np.random.Generator, split: Split = "train") -> Scene:
    """A random scene from a split (rejection sampling over uniform attributes)."""
    while True:
        color, background = rng.choice(len(COLORS), size=2, replace=False)
        attrs = (COLORS[color], COLORS[background], SHAPES[rng.integers(len(SHAPES))],
                 SIZES[rng.integers(len(SIZES))], POSITION_NAMES[rng.integers(len(POSITION_NAMES))])
        if split == "any" or split_of(*attrs) == split:
            return make_scene(rng, *attrs)


def sample_scenes(seed: int, n: int, split: Split = "train") -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, split) for _ in range(n)]


# --- geometry ---------------------------------------------------------------------------------

def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Vertices (x, y) in canvas units for polygonal shapes; None for the circle."""
    if shape == "circle":
        return None
    if shape == "square":
        h = SQUARE_HALF * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        R = TRIANGLE_CIRCUM * r
        # upward: apex at -90° (y grows downwards)
        return [(cx + R * math.cos(a), cy + R * math.sin(a))
                for a in (math.radians(-90), math.radians(30), math.radians(150))]
    if shape == "star":
        R = STAR_OUTER * r
        rin = STAR_INNER * R
        pts = []
        for k in range(10):
            a = math.radians(-90 + 36 * k)
            rad = R if k % 2 == 0 else rin
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


SHAPE_AREA_FACTOR: dict[str, float] = {
    "circle": math.pi,
    "square": (2 * SQUARE_HALF) ** 2,
    "triangle": 3 * math.sqrt(3) / 4 * TRIANGLE_CIRCUM**2,
    # 10 triangles (centre, outer vertex, inner vertex) with a 36° angle between the two radii
    "star": 5 * STAR_OUTER * (STAR_INNER * STAR_OUTER) * math.sin(math.radians(36)),
}


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, side: int,
                fill) -> None:
    poly = shape_polygon(shape, cx, cy, r)
    # PIL pixel (i, j) covers [i, i+1); canvas coordinate u maps to u*side.
    if poly is None:
        draw.ellipse([(cx - r) * side, (cy - r) * side, (cx + r) * side - 1, (cy + r) * side - 1], fill=fill)
    else:
        draw.polygon([(x * side - 0.5, y * side - 0.5) for x, y in poly], fill=fill)


def coverage(scene: Scene, size: int, supersample: int = 4) -> np.ndarray:
    """Fraction of each pixel covered by the object, float32 (size, size) in [0, 1]."""
    big = size * supersample
    img = Image.new("L", (big, big), 0)
    _draw_shape(ImageDraw.Draw(img), scene.shape, scene.cx, scene.cy, scene.r, big, 255)
    # area averaging of the supersampled binary image = anti-aliasing by box filter
    small = img.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def object_mask(scene: Scene, size: int) -> np.ndarray:
    """Exact object mask at `size`: True where the object covers at least half of the pixel."""
    return coverage(scene, size, supersample=8) >= 0.5


def render(scene: Scene, size: int = 64, supersample: int = 4) -> np.ndarray:
    """Anti-aliased RGB image, uint8 (size, size, 3)."""
    a = coverage(scene, size, supersample)[..., None]
    fg = np.asarray(scene.fg_rgb, dtype=np.float32)
    bg = np.asarray(scene.bg_rgb, dtype=np.float32)
    return np.clip(np.rint(a * fg + (1 - a) * bg), 0, 255).astype(np.uint8)


# --- several objects (segmentation tests) -------------------------------------------------------

def render_layers(scenes: list[Scene], size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The objects of several scenes drawn in order on the first one's background.

    Returns the uint8 image (size, size, 3) and each object's exact *visible* mask (covering at
    least half of the pixel, minus what later objects cover).
    """
    img = np.broadcast_to(np.asarray(scenes[0].bg_rgb, dtype=np.float32), (size, size, 3))
    masks: list[np.ndarray] = []
    for scene in scenes:
        a = coverage(scene, size)[..., None]
        img = a * np.asarray(scene.fg_rgb, dtype=np.float32) + (1 - a) * img
        m = object_mask(scene, size)
        masks = [prev & ~m for prev in masks] + [m]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), masks


def two_object_scenes(seed: int, n: int, split: Split = "train", gap: float = 0.02) -> list[tuple[Scene, Scene]]:
    """n pairs of scenes whose objects share the first one's background, drawn apart.

    The second object sits in another grid cell, its colour differs from the first object's and the
    background's, and the two outlines keep at least `gap` of the side between them (so each object
    has one right mask).
    """
    rng = np.random.default_rng(seed)
    check = 64
    k = 2 * max(1, round(gap * check)) + 1
    pairs: list[tuple[Scene, Scene]] = []
    while len(pairs) < n:
        first = sample_scene(rng, split)
        while True:
            second = sample_scene(rng, split)
            if second.position == first.position or second.color in (first.color, first.background):
                continue
            grown = Image.fromarray((coverage(first, check) > 0).astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(k))
            if not (np.asarray(grown) > 0)[coverage(second, check) > 0].any():
                break
        pairs.append((first, second))
    return pairs


# --- captions ---------------------------------------------------------------------------------

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disk", "round dot", "disc"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "star": ("star", "five-pointed star"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "huge"),
}
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left corner", "in the upper left corner", "at the top left", "top left"),
    "top": ("at the top", "at the top center", "near the top edge", "up top"),
    "top right": ("in the top right corner", "in the upper right corner", "at the top right", "top right"),
    "left": ("on the left", "at the left side", "on the left side", "to the left"),
    "center": ("in the center", "in the middle", "at the center", "centered"),
    "right": ("on the right", "at the right side", "on the right side", "to the right"),
    "bottom left": ("in the bottom left corner", "in the lower left corner", "at the bottom left",
                    "bottom left"),
    "bottom": ("at the bottom", "at the bottom center", "near the bottom edge", "down at the bottom"),
    "bottom right": ("in the bottom right corner", "in the lower right corner", "at the bottom right",
                     "bottom right"),
}
BACKGROUND_PHRASES: tuple[str, ...] = (
    "on a {} background", "against a {} background", "on {}", "with a {} background",
    "over a {} backdrop",
)


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def caption(scene: Scene | dict, rng: np.random.Generator,
            include: tuple[str, ...] | None = None) -> str:
    """An English caption naming the attributes in `include` (default: a random subset), paraphrased.

    The shape is always named by a noun; when it is not in `include` the caption says "shape" or
    "object" instead.
    """
    attrs = scene.attributes() if isinstance(scene, Scene) else dict(scene)
    if include is None:
        include = random_subset(rng)
    inc = set(include)
    noun = _pick(rng, SHAPE_WORDS[attrs["shape"]]) if "shape" in inc else _pick(rng, ("shape", "object"))
    color = attrs["color"] if "color" in inc else None
    size = _pick(rng, SIZE_WORDS[attrs["size"]]) if "size" in inc else None
    pos = _pick(rng, POSITION_PHRASES[attrs["position"]]) if "position" in inc else None
    bg = _pick(rng, BACKGROUND_PHRASES).format(attrs["background"]) if "background" in inc else None

    style = int(rng.integers(4))
    if style == 0 or (style == 1 and color is None and size is None):
        # "a big blue disk in the upper left corner on a white background"
        adj = " ".join(w for w in (size, color) if w)
        head = f"{'an' if (adj or noun)[0] in 'aeiou' else 'a'} {adj + ' ' if adj else ''}{noun}"
        parts = [head] + [p for p in (pos, bg) if p]
        return " ".join(parts)
    if style == 1:
        # "there is a small star that is yellow, at the bottom"
        first = size or noun
        head = f"there is {'an' if first[0] in 'aeiou' else 'a'} {size + ' ' if size else ''}{noun}"
        if color:
            head += f" that is {color}"
        tail = ", ".join(p for p in (pos, bg) if p)
        return head + (", " + tail if tail else "")
    if style == 2:
        # "blue star, large, top left, white background"
        bits = [" ".join(w for w in (color, noun) if w)]
        if size:
            bits.append(size)
        if attrs.get("position") and pos:
            bits.append(attrs["position"])
        if bg:
            bits.append(f"{attrs['background']} background")
        return ", ".join(bits)
    # "a picture of a red triangle, small, on the right, on black"
    adj = color + " " if color else ""
    art = "an" if (adj or noun)[0] in "aeiou" else "a"
    head = f"a picture of {art} {adj}{noun}"
    extra = [p for p in (size, pos, bg) if p]
    return head + (", " + ", ".join(extra) if extra else "")


def random_subset(rng: np.random.Generator, p_full: float = 0.5) -> tuple[str, ...]:
    """A random subset of attributes to name: all of them half of the time, else each with p=0.6."""
    if rng.random() < p_full:
        return ATTRIBUTES
    return tuple(a for a in ATTRIBUTES if rng.random() < 0.6)


def full_caption(scene: Scene | dict, rng: np.random.Generator) -> str:
    """A caption naming all five attributes (what the evaluation prompts are)."""
    return caption(scene, rng, include=ATTRIBUTES)


def canonical_caption(attrs: dict[str, str]) -> str:
    """The plain, template-fixed caption of all five attributes."""
    return (f"a {attrs['size']} {attrs['color']} {attrs['shape']} "
            f"{POSITION_PHRASES[attrs['position']][0]} on a {attrs['background']} background")


# --- a vocabulary for captioning by ranking (the CLIP interrogator) ------------------------------

VOCABULARY_TEMPLATE = "a {size} {color} {shape|object} {position} on a {background} background"


def vocabulary() -> dict[str, list[str]]:
    """Slot → candidate phrases naming every attribute value (positions by their first phrase)."""
    return {"size": list(SIZES), "color": list(COLORS), "shape": list(SHAPES),
            "position": [POSITION_PHRASES[p][0] for p in POSITION_NAMES], "background": list(COLORS)}


def choices_of(attrs: dict[str, str]) -> dict[str, str]:
    """The vocabulary's phrase per slot for a scene's attributes (the inverse of `attributes_of`)."""
    return {**attrs, "position": POSITION_PHRASES[attrs["position"]][0]}


def attributes_of(choices: dict[str, str]) -> dict[str, str]:
    """The attributes a vocabulary choice names (the inverse of `vocabulary`; unknown slots are dropped)."""
    by_phrase = {POSITION_PHRASES[p][0]: p for p in POSITION_NAMES}
    out = {k: v for k, v in choices.items() if k in ATTRIBUTES and k != "position"}
    if "position" in choices:
        out["position"] = by_phrase.get(choices["position"], choices["position"])
    return out
