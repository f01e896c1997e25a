"""The hard tuning set: a third caption writer, for choices the plain tuning set is too easy to show.

Tuning only: like `eval._tuning_prompts`, its figures may be looked at and tuned on, and are never
reported as the models' figures (the README quotes the validation set, `eval._validation_prompts`).
It was written apart from the two training writers (`nodes.shapes.domain.caption`,
`nodes.shapes.captions.caption`) and from the validation generator, whose templates and synonyms it
does not read (it uses only its `Prompt` record, the interface the evaluation takes):

- templates of its own: the attributes after the noun ("a trigon which is teensy and azure"), the
  background first as the sentence's subject ("ebony all over, and high up on the left ..."), the
  position first, slash lists in shuffled order, parentheses, requests, "first ..., then ...";
- colour, size and shape synonyms from the text tower's lexicon (`train/lexicon.json`, the words
  `clip_vocab` taught it: "vermilion", "colossal", "trigon", "pentacle"), chosen among those neither
  training writer uses, mixed with the plain palette and domain words;
- positions said as the grid's two axes ("toward the bottom, rightmost", "halfway across, halfway
  down").

Scenes come from the held-out splits (full prompts) and the training split (short prompts) on seeds
of its own. `tests/test_eval_text2image.py` checks that no fixed phrase of its templates occurs in
the validation or training writers' captions and that every attribute word is one the text tower
was trained on.
"""

from __future__ import annotations

import numpy as np

from nodes.shapes import domain

from ._validation_prompts import Prompt

SEED = 33_001

# attribute words: the domain's own word, or a lexicon synonym no training writer uses
COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("vermilion", "carmine", "ruby", "blood-red"),
    "orange": ("orangish",),
    "yellow": ("canary", "saffron", "yellowish"),
    "green": ("jade", "jade green", "greenish"),
    "blue": ("azure", "sapphire", "ultramarine", "bluish"),
    "purple": ("purplish", "mauve", "royal purple"),
    "white": ("alabaster", "chalk", "off-white"),
    "black": ("ebony", "sable", "coal black"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "large": ("colossal", "gigantic", "immense", "hulking", "humongous", "king-size"),
    "small": ("teensy", "bitty", "pocket-sized", "lilliputian", "midget"),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circlet",),
    "square": ("quadrate", "cube"),
    "triangle": ("trigon", "trilateral", "equilateral triangle"),
    "star": ("pentacle", "pentangle"),
}
P_SYNONYM = {"color": 0.3, "size": 0.5, "shape": 0.35}
# positions said as the grid's two axes
POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "top left": ("high up on the left", "in the uppermost left corner", "toward the top, leftmost"),
    "top": ("at the top, halfway across", "along the topmost edge, midway across"),
    "top right": ("high up on the right", "in the uppermost right corner", "toward the top, rightmost"),
    "left": ("at the leftmost side, halfway down", "on the left, midway up"),
    "center": ("at the heart of the picture", "halfway across, halfway down", "in the exact middle"),
    "right": ("at the rightmost side, halfway down", "on the right, midway up"),
    "bottom left": ("low down on the left", "in the lowermost left corner", "toward the bottom, leftmost"),
    "bottom": ("at the bottom, halfway across", "along the bottommost edge, midway across"),
    "bottom right": ("low down on the right", "in the lowermost right corner", "toward the bottom, rightmost"),
}

# {c} colour word, {s} shape noun, {z} size word, {p} position phrase, {bg} background colour word
FULL: tuple[str, ...] = (
    "a {s} which is {z} and {c}, {p}, with {bg} filling the rest",
    "{bg} all over, and {p} a {z} {c} {s}",
    "a {bg} frame containing a {s}; it is {c}, {z} in size, {p}",
    "{p}: a {c} {s} of {z} size, set upon {bg}",
    "{list}",
    "{z} {s}, {c}, {p}; {bg} around it",
    "could you draw a {c} {s}, {z}, {p}, over plain {bg}",
    "{p} sits a {z} {s} whose colour is {c}; {bg} backdrop",
    "a {bg} backdrop on which a {z} {s} of a {c} hue rests {p}",
    "first {bg}, then a {z} {c} {s} {p}",
    "{c} {s} ({z}), {p}, upon {bg}",
)
SHORT: dict[tuple[str, ...], tuple[str, ...]] = {
    ("color", "shape"): ("{s}, {c}", "a {s} of a {c} hue", "just one {c} {s}"),
    ("shape",): ("only a {s}", "{s}, nothing else"),
    ("color",): ("a thing of a {c} hue", "{c}, any shape"),
    ("color", "shape", "background"): ("{bg} backdrop, {c} {s}", "a {s} of a {c} hue upon {bg}"),
    ("size", "color", "shape"): ("{s}, {c} and {z}", "{z} {s} of a {c} hue"),
    ("shape", "position"): ("{p}, a {s}",),
    ("color", "background"): ("a {c} thing, {bg} all over",),
    ("size", "shape"): ("{s} of {z} size",),
}


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _word(rng: np.random.Generator, attr: str, value: str) -> str:
    table = {"color": COLOR_WORDS, "size": SIZE_WORDS, "shape": SHAPE_WORDS}[attr]
    return _pick(rng, table[value]) if rng.random() < P_SYNONYM[attr] else value


def _words(rng: np.random.Generator, attrs: dict[str, str], noun: str | None = None) -> dict[str, str]:
    color = _word(rng, "color", attrs["color"])  # drawn first: the set's seeded prompts stay as they were
    words = {"c": color, "s": _word(rng, "shape", attrs["shape"]) if noun is None else noun,
             "z": _word(rng, "size", attrs["size"]), "p": _pick(rng, POSITION_WORDS[attrs["position"]]),
             "bg": _word(rng, "color", attrs["background"])}
    bits = [words["s"], words["c"], words["z"], words["p"], f"{words['bg']} backdrop"]
    order = rng.permutation(len(bits))
    words["list"] = " / ".join(bits[i] for i in order)
    return words


def _article(text: str) -> str:
    """'a' before a vowel sound at the start of each 'a X' ('a ultramarine' → 'an ultramarine')."""
    out = text.split(" ")
    for i in range(len(out) - 1):
        if out[i] == "a" and out[i + 1][:1] in "aeiou":
            out[i] = "an"
    return " ".join(out)


def full_text(rng: np.random.Generator, attrs: dict[str, str], noun: str | None = None) -> str:
    """A caption naming all five attributes; `noun` replaces the shape's word (a DreamBooth identifier's
    noun phrase, `eval.personalise`'s tuning_hard set)."""
    return _article(_pick(rng, FULL).format(**_words(rng, attrs, noun)))


def full_prompts(split: str, n: int, seed: int = SEED) -> list[Prompt]:
    """n prompts naming all five attributes, for scenes of a held-out split ('heldout_combos', 'heldout_pairs')."""
    rng = np.random.default_rng(seed + 11)
    scenes = domain.sample_scenes(seed, n, split)  # type: ignore[arg-type]
    return [Prompt(full_text(rng, s.attributes()), s.attributes(), split, s.attributes()) for s in scenes]


def short_prompts(n: int, seed: int = SEED + 1, heldout_pairs: bool = False) -> list[Prompt]:
    """n short prompts naming one to three attributes (the held-out pairs: colour and shape)."""
    rng = np.random.default_rng(seed + 13)
    split = "heldout_pairs" if heldout_pairs else "train"
    kinds = list(SHORT)
    out = []
    for i, scene in enumerate(domain.sample_scenes(seed, n, split)):
        attrs = scene.attributes()
        kind = ("color", "shape") if heldout_pairs else kinds[i % len(kinds)]
        text = _article(_pick(rng, SHORT[kind]).format(**_words(rng, attrs)))
        out.append(Prompt(text, {a: attrs[a] for a in kind}, split, attrs))
    return out


def variation_scenes(n: int, seed: int = SEED + 2) -> list[domain.Scene]:
    """Scenes of held-out attribute combinations whose renders the variation workflow starts from."""
    return domain.sample_scenes(seed, n, "heldout_combos")
