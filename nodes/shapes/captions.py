"""A second training caption writer for Shapes scenes: wide vocabulary and free word order.

`nodes.shapes.domain.caption` (the first writer) uses few words per attribute and always names the
object first. This writer draws from many synonyms per attribute value (sizes, colour names, shape
nouns, positions, background phrasings), puts the parts in any order (background first, position
first, attribute lists), adds request and description framings, and names any subset of the
attributes — a partial caption ("a tiny disc", "something violet") says only what it names.

It writes training captions only (the text tower's phrasing stage, the prior, DreamBooth's subject
rows, whose `noun` is the identifier's); the evaluation's validation generator is a separate file
that training never reads.
"""

from __future__ import annotations

import numpy as np

from . import domain

SIZES: dict[str, tuple[str, ...]] = {
    "large": ("large", "big", "huge", "giant", "massive", "enormous", "oversized", "jumbo", "hefty",
              "sizable", "great big", "very large", "bulky", "chunky", "wide"),
    "small": ("small", "little", "tiny", "mini", "miniature", "petite", "wee", "teeny", "compact",
              "very small", "itty-bitty", "minuscule", "diminutive", "smallish", "dinky"),
}
COLORS: dict[str, tuple[str, ...]] = {
    "red": ("red", "red", "red", "crimson", "scarlet", "bright red", "cherry red"),
    "orange": ("orange", "orange", "orange", "tangerine", "bright orange", "amber"),
    "yellow": ("yellow", "yellow", "yellow", "lemon yellow", "golden", "bright yellow"),
    "green": ("green", "green", "green", "emerald", "grass green", "leaf green"),
    "blue": ("blue", "blue", "blue", "royal blue", "cobalt", "bright blue"),
    "purple": ("purple", "purple", "purple", "violet", "plum", "lilac"),
    "white": ("white", "white", "white", "snow white", "pure white", "ivory"),
    "black": ("black", "black", "black", "jet black", "pitch black", "dark"),
}
SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disk", "disc", "dot", "round dot", "ball", "round shape", "orb", "filled circle",
               "round blob", "spot"),
    "square": ("square", "box", "block", "tile", "square shape", "filled square", "quadrilateral"),
    "triangle": ("triangle", "triangular shape", "wedge", "three-sided shape", "filled triangle", "pyramid shape"),
    "star": ("star", "five-pointed star", "star shape", "pentagram", "five point star", "starburst", "filled star"),
}
# the nine grid cells: (vertical, horizontal) names
POSITIONS: dict[str, tuple[str, ...]] = {
    "top left": ("top-left", "upper-left", "upper left", "top left", "northwest", "top left-hand"),
    "top": ("top", "top middle", "upper middle", "top-center", "upper edge", "north"),
    "top right": ("top-right", "upper-right", "upper right", "top right", "northeast", "top right-hand"),
    "left": ("left", "left-hand", "middle left", "left edge", "west", "left middle"),
    "center": ("center", "centre", "middle", "very middle", "dead center", "central"),
    "right": ("right", "right-hand", "middle right", "right edge", "east", "right middle"),
    "bottom left": ("bottom-left", "lower-left", "lower left", "bottom left", "southwest", "bottom left-hand"),
    "bottom": ("bottom", "bottom middle", "lower middle", "bottom-center", "lower edge", "south"),
    "bottom right": ("bottom-right", "lower-right", "lower right", "bottom right", "southeast",
                     "bottom right-hand"),
}
# how a place word becomes a phrase
PLACE_FRAMES = ("in the {} area", "toward the {}", "at the {} of the frame", "in the {} part", "placed {}",
                "positioned at the {}", "over at the {}", "located at the {}", "{} of the image", "near the {}")
CENTER_FRAMES = ("right in the {}", "in the {}", "at the {} of the picture", "placed in the {}", "smack in the {}")
BACKGROUND_AFTER = ("on a {} backdrop", "over a field of {}", "set against {}", "with {} behind it",
                    "on a plain {} canvas", "against solid {}", "on a {} ground", "the background being {}",
                    "with everything else {}", "on a {} surface", "{} all around it", "surrounded by {}")
BACKGROUND_FIRST = ("a {} backdrop with", "a plain {} canvas showing", "on {}:", "{} background, and on it",
                    "a solid {} scene with", "against {},", "over {} there is", "a {} field holding",
                    "{} everywhere except", "{} behind")
FRAMES = ("{}", "{}", "{}", "an image of {}", "a drawing of {}", "draw {}", "render {}", "show me {}",
          "a graphic of {}", "an illustration with {}", "generate {}", "i would like {}", "a simple picture: {}",
          "{}, flat style", "a clipart {}", "please make {}", "sketch of {}", "a frame showing {}")
NO_SHAPE = ("thing", "item", "figure", "something", "form", "symbol", "object")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return "an" if phrase[:1] in "aeiou" else "a"


def _position(rng: np.random.Generator, position: str) -> str:
    word = _pick(rng, POSITIONS[position])
    frames = CENTER_FRAMES if position == "center" else PLACE_FRAMES
    return _pick(rng, frames).format(word)


def _noun_phrase(rng: np.random.Generator, attrs: dict[str, str], inc: set[str], noun: str | None = None) -> str:
    if noun is None:
        noun = _pick(rng, SHAPES[attrs["shape"]]) if "shape" in inc else _pick(rng, NO_SHAPE)
    size = _pick(rng, SIZES[attrs["size"]]) if "size" in inc else None
    color = _pick(rng, COLORS[attrs["color"]]) if "color" in inc else None
    style = int(rng.integers(5))
    if style == 1 and color:  # "a disk coloured crimson", "a tiny star in violet"
        tail = _pick(rng, ("colored {}", "coloured {}", "in {}", "painted {}", "filled with {}")).format(color)
        head = f"{size} {noun}" if size else noun
        return f"{_article(head)} {head} {tail}"
    if style == 2 and color and size:  # "a violet star, tiny", "one star: crimson and small"
        return _pick(rng, ("{a} {c} {n}, {z}", "one {n}: {c} and {z}", "{a} {n} that is {z} and {c}")).format(
            a=_article(color), c=color, n=noun, z=size)
    if style == 3:  # "one tiny violet star", "the big star"
        det = _pick(rng, ("one", "the", "a single", "just one"))
        return " ".join(w for w in (det, size, color, noun) if w)
    if style == 4 and color and size:  # colour before size
        return f"{_article(color)} {color} {size} {noun}"
    head = " ".join(w for w in (size, color, noun) if w)
    return f"{_article(head)} {head}"


ORDERS = ("background first", "position first", "list", "object first")


def caption(attrs: dict[str, str], rng: np.random.Generator, include: tuple[str, ...] | None = None,
            noun: str | None = None, order: str | None = None) -> str:
    """A caption naming the attributes in `include` (default: a random subset via `domain.random_subset`);
    `noun`, if given, is the object's noun whatever the shape (e.g. "sks shape"); `order`, if given, one
    of ORDERS instead of a random one (it applies where the caption names what it puts first)."""
    inc = set(domain.random_subset(rng) if include is None else include)
    np_ = _noun_phrase(rng, attrs, inc, noun)
    pos = _position(rng, attrs["position"]) if "position" in inc else None
    bg = attrs["background"] if "background" in inc else None
    bg_word = _pick(rng, COLORS[bg]) if bg else None
    order = int(rng.integers(4)) if order is None else ORDERS.index(order)
    if bg_word and order == 0:  # background first: "a plain white canvas showing a tiny orange disk"
        text = f"{_pick(rng, BACKGROUND_FIRST).format(bg_word)} {np_}" + (f" {pos}" if pos else "")
    elif pos and order == 1:  # position first: "in the upper-left area, a big box on a lilac ground"
        text = f"{pos}, {np_}" + (f" {_pick(rng, BACKGROUND_AFTER).format(bg_word)}" if bg_word else "")
    elif order == 2:  # a list: "orb, tiny, crimson, lower left, white background"
        bits = [np_] + [b for b in (pos, f"{bg_word} background" if bg_word else None) if b]
        head, rest = bits[0], bits[1:]
        rng.shuffle(rest)
        text = ", ".join([head, *rest])
    else:
        tail = [b for b in (pos, _pick(rng, BACKGROUND_AFTER).format(bg_word) if bg_word else None) if b]
        if len(tail) == 2 and rng.random() < 0.5:
            tail.reverse()
        text = " ".join([np_, *tail])
    return _pick(rng, FRAMES).format(text)


def mixed_caption(attrs: dict[str, str], rng: np.random.Generator, p_new: float = 0.5,
                  include: tuple[str, ...] | None = None) -> str:
    """A caption from this writer with probability `p_new`, else from `domain.caption`."""
    if rng.random() < p_new:
        return caption(attrs, rng, include)
    return domain.caption(attrs, rng, include=include)
