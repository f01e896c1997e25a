"""Instruction edits of Shapes scenes: an edited scene and the English instruction that asks for it.

Five kinds of edit change exactly one attribute: `color` ("make it blue"), `shape` ("turn it into a
star"), `size` ("make it bigger": small ↔ large), `position` (relative moves one grid step, "move it
to the left", "move it up"; absolute moves to a corner or the centre, "move it to the top right
corner") and `background` ("change the background to black"). Everything else in the scene is kept
exactly (same jittered colours, centre and radius), except the changed attribute's concrete value,
which is drawn like `domain.make_scene` draws it.

Phrasings come in two disjoint sets: `split="train"` templates for training and `split="heldout"`
templates (other verbs and word orders) that only the evaluation uses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import domain

EDIT_KINDS: tuple[str, ...] = ("color", "shape", "size", "position", "background")
PhraseSplit = Literal["train", "heldout"]

# {c} colour, {s} shape noun, {n} the current shape noun, {d} direction, {p} an absolute position phrase
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "color": {
        "train": ("make it {c}", "turn it {c}", "paint it {c}", "change the color to {c}", "color it {c}",
                  "make the {n} {c}", "change its colour to {c}", "recolor it {c}"),
        "heldout": ("give it a {c} color", "it should be {c}", "switch the color to {c}", "can you make it {c}"),
    },
    "shape": {
        "train": ("turn it into a {s}", "make it a {s}", "change the shape to a {s}", "replace it with a {s}",
                  "change it to a {s}", "make the {n} a {s}"),
        "heldout": ("transform it into a {s}", "swap it for a {s}", "reshape it into a {s}"),
    },
    "bigger": {
        "train": ("make it bigger", "make it larger", "enlarge it", "scale it up", "make the {n} bigger",
                  "increase the size"),
        "heldout": ("grow it", "make it huge", "blow it up"),
    },
    "smaller": {
        "train": ("make it smaller", "shrink it", "scale it down", "make the {n} smaller", "reduce the size"),
        "heldout": ("make it tiny", "make it little", "decrease its size"),
    },
    "move": {
        "train": ("move it to the {d}", "move it {d}", "shift it to the {d}", "push it {d}",
                  "move the {n} {d}"),
        "heldout": ("nudge it {d}", "slide it {d}", "can you move it {d}"),
    },
    "place": {
        "train": ("move it {p}", "put it {p}", "move the {n} {p}"),
        "heldout": ("place it {p}", "relocate it {p}"),
    },
    "background": {
        "train": ("change the background to {c}", "make the background {c}", "paint the background {c}",
                  "use a {c} background", "put it on a {c} background", "{c} background"),
        "heldout": ("set the background to {c}", "give it a {c} backdrop", "the background should be {c}"),
    },
}
# (dcol, drow) of a one-step move, and its words
MOVES: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
MOVE_WORDS: dict[str, tuple[str, ...]] = {"left": ("left",), "right": ("right",), "up": ("up", "upwards"),
                                          "down": ("down", "downwards")}
# absolute moves: corners and centre only, so that no phrase reads like a relative move
PLACE_PHRASES: dict[str, tuple[str, ...]] = {
    p: tuple(x for x in domain.POSITION_PHRASES[p] if "corner" in x or "cent" in x or "middle" in x)
    for p in ("top left", "top right", "bottom left", "bottom right", "center")
}


@dataclass(frozen=True)
class Edit:
    """One instruction edit: source scene, edited scene, which attribute changed, the instruction."""

    source: domain.Scene
    target: domain.Scene
    kind: str  # one of EDIT_KINDS
    instruction: str

    @property
    def kept(self) -> tuple[str, ...]:
        """The attributes the edit must leave alone."""
        return tuple(a for a in domain.ATTRIBUTES if a != self.kind)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _move(position: str, direction: str) -> str | None:
    col, row = domain.POSITIONS[position]
    dc, dr = MOVES[direction]
    col, row = col + dc, row + dr
    if not (0 <= col < 3 and 0 <= row < 3):
        return None
    return next(name for name, cr in domain.POSITIONS.items() if cr == (col, row))


def _at(rng: np.random.Generator, scene: domain.Scene, position: str) -> domain.Scene:
    col, row = domain.POSITIONS[position]
    j = domain.POSITION_JITTER
    return dataclasses.replace(scene, position=position, cx=float(domain.GRID[col] + rng.uniform(-j, j)),
                               cy=float(domain.GRID[row] + rng.uniform(-j, j)))


def random_edit(rng: np.random.Generator, scene: domain.Scene, kind: str, split: PhraseSplit = "train") -> Edit:
    """A random edit of `kind` on `scene`, phrased with a template of `split`."""
    noun = _pick(rng, domain.SHAPE_WORDS[scene.shape])
    if kind == "color":
        c = _pick(rng, [c for c in domain.COLORS if c not in (scene.color, scene.background)])
        target = dataclasses.replace(scene, color=c, fg_rgb=domain._jitter(rng, domain.PALETTE[c]))
        text = _pick(rng, TEMPLATES["color"][split]).format(c=c, n=noun)
    elif kind == "shape":
        s = _pick(rng, [s for s in domain.SHAPES if s != scene.shape])
        target = dataclasses.replace(scene, shape=s)
        text = _pick(rng, TEMPLATES["shape"][split]).format(s=_pick(rng, domain.SHAPE_WORDS[s]), n=noun)
    elif kind == "size":
        new = "large" if scene.size == "small" else "small"
        target = dataclasses.replace(scene, size=new, r=float(rng.uniform(*domain.SIZE_RANGES[new])))
        text = _pick(rng, TEMPLATES["bigger" if new == "large" else "smaller"][split]).format(n=noun)
    elif kind == "position":
        moves = [(d, p) for d in MOVES if (p := _move(scene.position, d)) is not None]
        if rng.random() < 0.6 and moves:
            d, p = _pick(rng, moves)
            template = _pick(rng, TEMPLATES["move"][split])
            if d in ("up", "down"):  # "move it up", never "move it to the up"
                template = template.replace("to the {d}", "{d}")
            text = template.format(d=_pick(rng, MOVE_WORDS[d]), n=noun)
        else:
            p = _pick(rng, [p for p in PLACE_PHRASES if p != scene.position])
            text = _pick(rng, TEMPLATES["place"][split]).format(p=_pick(rng, PLACE_PHRASES[p]), n=noun)
        target = _at(rng, scene, p)
    elif kind == "background":
        c = _pick(rng, [c for c in domain.COLORS if c not in (scene.color, scene.background)])
        target = dataclasses.replace(scene, background=c, bg_rgb=domain._jitter(rng, domain.PALETTE[c]))
        text = _pick(rng, TEMPLATES["background"][split]).format(c=c)
    else:
        raise ValueError(f"unknown edit kind {kind!r}; expected one of {', '.join(EDIT_KINDS)}")
    return Edit(scene, target, kind, text)


def sample_edits(seed: int, n: int, scenes: domain.Split = "train", phrasing: PhraseSplit = "train",
                 targets: tuple[str, ...] = ("train",)) -> list[Edit]:
    """`n` edits, kinds in turn, of scenes from the split `scenes`, whose edited scenes lie in a split of
    `targets` (by default the training split, so no held-out pair or combination is ever rendered)."""
    rng = np.random.default_rng(seed)
    out: list[Edit] = []
    while len(out) < n:
        kind = EDIT_KINDS[len(out) % len(EDIT_KINDS)]
        edit = random_edit(rng, domain.sample_scene(rng, scenes), kind, phrasing)
        t = edit.target
        if domain.split_of(t.color, t.background, t.shape, t.size, t.position) in targets:
            out.append(edit)
    return out
