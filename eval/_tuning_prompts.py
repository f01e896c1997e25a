"""The tuning set: the prompts that choices (guidance, steps, training options) are made on.

Two kinds, on seeds of their own (neither the training data's nor the validation generator's):
training-style captions (`nodes.shapes.domain.caption`, another seed), and tuning phrasings written
here (requests, "colored", labels with colons, "the ... please"). The validation generator
(`eval._validation_prompts`) is kept apart and only reports.
"""

from __future__ import annotations

import numpy as np

from nodes.shapes import domain

from ._validation_prompts import Prompt

SEED = 5_001

TUNING_FULL = (
    "make a {z} {c} {s}, placed {p}, background {bg}",
    "{z} {c} {s}. position: {pb}. background: {bg}",
    "i want a {z} {s} colored {c} {p} on top of {bg}",
    "{bg} image, {z} {c} {s} {p}",
    "the {c} {s} is {z} and {p}, {bg} behind it",
)
TUNING_SHORT: dict[tuple[str, ...], tuple[str, ...]] = {
    ("color", "shape"): ("{c} {s} please", "a {c} colored {s}", "the {c} {s}"),
    ("shape",): ("the {s}", "{s} please"),
    ("color",): ("a {c} shape", "anything {c}"),
    ("color", "shape", "background"): ("the {c} {s} on a {bg} backdrop", "{c} {s} over {bg}"),
    ("size", "color", "shape"): ("{c} {s}, {z}", "the {z} {c} {s}"),
    ("shape", "position"): ("the {s}, {pb}",),
    ("color", "background"): ("a {c} object, {bg} background",),
    ("size", "shape"): ("the {z} {s}",),
}


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _words(rng: np.random.Generator, attrs: dict[str, str]) -> dict[str, str]:
    return {"c": attrs["color"], "s": _pick(rng, domain.SHAPE_WORDS[attrs["shape"]]),
            "z": _pick(rng, domain.SIZE_WORDS[attrs["size"]]),
            "p": _pick(rng, domain.POSITION_PHRASES[attrs["position"]]), "pb": attrs["position"],
            "bg": attrs["background"]}


def full_prompts(split: str, n: int, seed: int = SEED) -> list[Prompt]:
    """n prompts naming all five attributes: half training-style captions, half tuning phrasings."""
    rng = np.random.default_rng(seed + 11)
    out = []
    for i, s in enumerate(domain.sample_scenes(seed, n, split)):  # type: ignore[arg-type]
        attrs = s.attributes()
        text = domain.full_caption(s, rng) if i % 2 == 0 else _pick(rng, TUNING_FULL).format(**_words(rng, attrs))
        out.append(Prompt(text, attrs, split, attrs))
    return out


def short_prompts(n: int, seed: int = SEED + 1, heldout_pairs: bool = False) -> list[Prompt]:
    """n short prompts (one to three attributes): half training-style, half tuning phrasings."""
    rng = np.random.default_rng(seed + 13)
    scenes = domain.sample_scenes(seed, n, "heldout_pairs" if heldout_pairs else "train")
    kinds = list(TUNING_SHORT)
    out = []
    for i, scene in enumerate(scenes):
        attrs = scene.attributes()
        kind = ("color", "shape") if heldout_pairs else kinds[i % len(kinds)]
        if i % 2 == 0:
            text = domain.caption(scene, rng, include=kind)
        else:
            text = _pick(rng, TUNING_SHORT[kind]).format(**_words(rng, attrs))
        out.append(Prompt(text, {a: attrs[a] for a in kind}, "heldout_pairs" if heldout_pairs else "train", attrs))
    return out


def variation_scenes(n: int, seed: int = SEED + 2) -> list[domain.Scene]:
    return domain.sample_scenes(seed, n, "heldout_combos")
