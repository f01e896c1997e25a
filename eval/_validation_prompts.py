"""The validation caption generator: prompts written apart from the training captions, used only to report.

Nothing here is imported by `train/` or by the tuning code: the figures it gives are the ones the
README quotes. It differs from `nodes.shapes.domain.caption` (the training captions) in its
templates (background first, relative clauses, imperatives, "in red", keyword lists, colons), in
its word orders (colour before or after size and shape, background before position) and in its
synonyms ("upper-left", "centre", "middle left", "dot", "tile", "giant", "against white", "the
background is ..."), and it has short prompts as people type them ("blue star", "something green
on black"). Scenes come from the held-out splits with seeds used nowhere else.

Each prompt is a `Prompt`: the text, the attributes it names (what the analyser must find), and
the split its scene came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from nodes.shapes import domain

# Seeds of the validation scenes and phrasings; no training or tuning code uses them.
SEED = 90_001

SHAPE_NOUNS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "dot", "disk", "circle shape"),
    "square": ("square", "box", "tile", "square shape"),
    "triangle": ("triangle", "triangle shape", "triangular shape"),
    "star": ("star", "star shape", "five-pointed star", "5-pointed star"),
}
SIZE_ADJ: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "little", "smallish", "mini"),
    "large": ("large", "big", "huge", "giant", "massive"),
}
# (adverbial phrase, bare phrase) pairs per position
POSITION_ADV: dict[str, tuple[str, ...]] = {
    "top left": ("in the upper left", "in the top-left", "at the upper-left corner", "up in the top left corner"),
    "top": ("at the top", "at the top middle", "along the top", "at the top centre"),
    "top right": ("in the upper right", "in the top-right", "at the upper-right corner", "up in the top right corner"),
    "left": ("on the left", "on the left-hand side", "at the middle left", "over on the left"),
    "center": ("in the middle", "in the centre", "in the center of the image", "right in the middle"),
    "right": ("on the right", "on the right-hand side", "at the middle right", "over on the right"),
    "bottom left": ("in the lower left", "in the bottom-left", "at the lower-left corner",
                    "down in the bottom left corner"),
    "bottom": ("at the bottom", "at the bottom middle", "along the bottom", "at the bottom centre"),
    "bottom right": ("in the lower right", "in the bottom-right", "at the lower-right corner",
                     "down in the bottom right corner"),
}
POSITION_BARE: dict[str, tuple[str, ...]] = {
    "top left": ("top-left", "upper left", "top left corner"),
    "top": ("top middle", "top centre", "upper middle"),
    "top right": ("top-right", "upper right", "top right corner"),
    "left": ("middle left", "left side", "centre left"),
    "center": ("centre", "middle", "centered"),
    "right": ("middle right", "right side", "centre right"),
    "bottom left": ("bottom-left", "lower left", "bottom left corner"),
    "bottom": ("bottom middle", "bottom centre", "lower middle"),
    "bottom right": ("bottom-right", "lower right", "bottom right corner"),
}
BACKGROUND_ADV = ("on a {} background", "on {}", "against a {} background", "against {}",
                  "on a plain {} background", "on a solid {} background", "over {}")
BACKGROUND_CLAUSE = ("the background is {}", "background: {}", "{} background", "{} backdrop")


@dataclass(frozen=True)
class Prompt:
    """A validation prompt and what it names."""

    text: str
    named: dict[str, str]  # attribute → value, only the attributes the prompt names
    split: str  # the domain split of its scene ("heldout_combos", "heldout_pairs", "train")
    scene: dict[str, str] = field(default_factory=dict)  # every attribute of the scene it was written for


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _art(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _articles(text: str) -> str:
    """'a' → 'an' before a vowel, wherever a template put it."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _words(rng: np.random.Generator, attrs: dict[str, str]) -> dict[str, str]:
    return {"c": attrs["color"], "s": _pick(rng, SHAPE_NOUNS[attrs["shape"]]), "z": _pick(rng, SIZE_ADJ[attrs["size"]]),
            "p": _pick(rng, POSITION_ADV[attrs["position"]]), "pb": _pick(rng, POSITION_BARE[attrs["position"]]),
            "b": _pick(rng, BACKGROUND_ADV).format(attrs["background"]),
            "bc": _pick(rng, BACKGROUND_CLAUSE).format(attrs["background"]), "bg": attrs["background"]}


def full_text(rng: np.random.Generator, attrs: dict[str, str]) -> str:
    """A prompt naming all five attributes in one of the validation templates."""
    w = _words(rng, attrs)
    c, s, z, p, pb, b, bc, bg = (w[k] for k in ("c", "s", "z", "p", "pb", "b", "bc", "bg"))
    templates = (
        lambda: f"{_cap(b)}, {_art(z)} {z} {c} {s} {p}",
        lambda: f"{_art(c)} {c} {s} that is {z}, {p}, {bc}",
        lambda: f"draw {_art(z)} {z} {c} {s} {p} {b}",
        lambda: f"{_art(bg)} {bg} background with {_art(z)} {z} {c} {s} {p}",
        lambda: f"{_art(z)} {z} {s} in {c} {p}, {b}",
        lambda: f"the {s} is {c} and {z}; it sits {p} {b}",
        lambda: f"{c} {z} {s} {pb} {bg} background",
        lambda: f"{_cap(p)} there is {_art(z)} {z} {c} {s} {b}",
        lambda: f"{_art(z)} {z}, {c} {s} {b}, {p}",
        lambda: f"{s}: {c}, {z}, {pb}, on {bg}",
        lambda: f"{c} {s} ({z}) {p}, {bc}",
        lambda: f"{_art(z)} {z} {c} {s} {p} {b}",
    )
    return _articles(templates[int(rng.integers(len(templates)))]())


def full_prompts(split: str, n: int, seed: int = SEED) -> list[Prompt]:
    """n prompts naming all five attributes, for scenes of a held-out split ('heldout_combos', 'heldout_pairs')."""
    rng = np.random.default_rng(seed + 11)
    scenes = domain.sample_scenes(seed, n, split)  # type: ignore[arg-type]
    return [Prompt(full_text(rng, s.attributes()), s.attributes(), split, s.attributes()) for s in scenes]


# Short prompts: which attributes they name, and how people type them.
SHORT_KINDS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("color", "shape"): ("a {c} {s}", "{c} {s}", "{s} in {c}", "one {c} {s}"),
    ("shape",): ("a {s}", "{s}", "just a {s}", "one single {s}"),
    ("color",): ("something {c}", "a {c} object", "a {c} thing"),
    ("color", "shape", "background"): ("a {c} {s} on {bg}", "{c} {s}, {bg} background", "{c} {s} against {bg}"),
    ("size", "color", "shape"): ("a {z} {c} {s}", "{z} {c} {s}"),
    ("shape", "position"): ("a {s} {p}", "{s} {pb}"),
    ("color", "background"): ("something {c} on {bg}", "{c} on {bg}", "a {c} thing on a {bg} background"),
    ("color", "shape", "position"): ("{c} {s} {pb}", "a {c} {s} {p}"),
    ("size", "shape"): ("a {z} {s}", "{z} {s}"),
    ("shape", "background"): ("a {s} on {bg}", "{bg} background with a {s}"),
}


def short_text(rng: np.random.Generator, kind: tuple[str, ...], attrs: dict[str, str]) -> str:
    return _articles(_pick(rng, SHORT_KINDS[kind]).format(**_words(rng, attrs)))


def short_prompts(n: int, seed: int = SEED + 1, heldout_pairs: bool = False) -> list[Prompt]:
    """n short prompts naming one to three attributes, cycling through the kinds.

    heldout_pairs=False: scenes whose (colour, shape) pair is in training (the pair is named or not);
    True: the four held-out pairs, named by colour and shape only ("a red star").
    """
    rng = np.random.default_rng(seed + 13)
    if heldout_pairs:
        scenes = domain.sample_scenes(seed, n, "heldout_pairs")
        kinds = [("color", "shape")] * n
    else:
        scenes = domain.sample_scenes(seed, n, "train")
        order = list(SHORT_KINDS)
        kinds = [order[i % len(order)] for i in range(n)]
    out = []
    for scene, kind in zip(scenes, kinds, strict=True):
        attrs = scene.attributes()
        named = {a: attrs[a] for a in kind}
        out.append(Prompt(short_text(rng, kind, attrs), named, "heldout_pairs" if heldout_pairs else "train", attrs))
    return out


def variation_scenes(n: int, seed: int = SEED + 2) -> list[domain.Scene]:
    """Scenes of held-out attribute combinations whose renders the variation workflow starts from."""
    return domain.sample_scenes(seed, n, "heldout_combos")
