"""A subject's training rows in the Shapes domain: the object is cut out of each subject image with
the pixel analyser's mask and placed again at another size, position and colour on another
background, captioned with the identifier word ("a large blue sks shape at the top on a white
background") by either of the domain's two caption writers, so that the identifier is learnt in
many phrasings and word orders, not in one writer's. With augmentation off, the images are used as
they are, captioned from what the analyser measures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from nodegraph import NodeExecutionError

from ..shapes.api import analyse, captions, domain

SUPERSAMPLE = 4


@dataclass(frozen=True)
class Cutout:
    """One subject image's object: its mask (S, S) as float in [0, 1], centre (x, y) and equivalent
    radius (of the circle of the same area), fractions of the side."""

    mask: np.ndarray
    center: tuple[float, float]
    radius: float
    analysis: Any


def cutouts(images: np.ndarray) -> list[Cutout]:
    """The object of each subject image (B, H, W, 3) in [0, 1]; an image without one is an error."""
    out = []
    for i, image in enumerate(images):
        a = analyse(image)
        if not a.found or a.center is None:
            raise NodeExecutionError(f"subject image {i} shows no object on a plain background; give 3–5 images of "
                                     "the subject, one object each, on a one-colour background")
        out.append(Cutout(a.mask.astype(np.float32), a.center, math.sqrt(a.area / math.pi), a))
    return out


def place(cut: Cutout, cx: float, cy: float, radius: float, fg: tuple[int, ...], bg: tuple[int, ...],
          side: int = 64) -> np.ndarray:
    """The cut-out object moved to (cx, cy), scaled to equivalent `radius`, in colour `fg` on `bg`:
    uint8 (side, side, 3), anti-aliased by supersampling."""
    import torch
    import torch.nn.functional as F

    big = side * SUPERSAMPLE
    u = (torch.arange(big, dtype=torch.float32) + 0.5) / big
    scale = cut.radius / radius
    sx = (cut.center[0] + (u - cx) * scale) * 2 - 1  # output → source, in grid_sample's [-1, 1]
    sy = (cut.center[1] + (u - cy) * scale) * 2 - 1
    grid = torch.stack(torch.meshgrid(sx, sy, indexing="xy"), dim=-1)[None]  # (1, big, big, 2) as (x, y)
    m = torch.from_numpy(cut.mask)[None, None]
    cover = (F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False) >= 0.5).float()
    alpha = F.avg_pool2d(cover, SUPERSAMPLE)[0, 0].numpy()[..., None]  # (side, side, 1)
    img = alpha * np.asarray(fg, np.float32) + (1 - alpha) * np.asarray(bg, np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def caption(attrs: dict[str, str], identifier: str, rng: np.random.Generator, include: tuple[str, ...],
            p_second: float = 0.0) -> str:
    """A caption naming `include` (never the shape) whose noun is "<identifier> shape": by the second
    writer (`captions`) with probability `p_second`, else by `domain.caption`."""
    named = tuple(a for a in include if a != "shape")
    if p_second > 0 and rng.random() < p_second:  # p_second 0 draws nothing: seeded prompt sets stay put
        return captions.caption({**attrs, "shape": "circle"}, rng, include=named, noun=f"{identifier} shape")
    text = domain.caption({**attrs, "shape": "circle"}, rng, include=named)
    return re.sub(r"\b(shape|object)\b", f"{identifier} shape", text, count=1)


def without_class_noun(text: str, identifier: str) -> str:
    """The caption with the identifier alone where it was "<identifier> shape" ("a red sks at the top")."""
    return re.sub(rf"\b{re.escape(identifier)} shape\b", identifier, text, count=1)


def rephrase(text: str, identifier: str, rng: np.random.Generator) -> str:
    """A writer's caption rewritten in ways neither writer has, so that the identifier's row is learnt
    in more contexts than theirs: the class noun dropped ("a blue sks at the top"), the first article
    swapped or dropped, and the caption's comma-separated parts put in another order or joined with
    semicolons. Generic: it knows no template, only the caption's words and commas."""
    if rng.random() < 0.35:
        text = without_class_noun(text, identifier)
    if rng.random() < 0.35:
        text = re.sub(r"\b(a|an)\s", _pick(rng, ("the ", "one ", "")), text, count=1)
    parts = text.split(", ")
    if len(parts) > 1 and rng.random() < 0.5:
        parts = [parts[i] for i in rng.permutation(len(parts))]
    return _pick(rng, (", ", ", ", "; ")).join(parts)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _measured(cut: Cutout) -> dict[str, str]:
    a = cut.analysis
    size = "large" if cut.radius >= math.sqrt(domain.SIZE_RANGES["small"][1] * domain.SIZE_RANGES["large"][0]) \
        else "small"
    return {"color": a.color, "size": size, "position": a.position, "background": a.background}


def rows(images: np.ndarray, identifier: str, n: int, rng: np.random.Generator,
         augment: bool = True, p_second: float = 0.5, small_share: float | None = None,
         scenes: list[dict[str, str]] | None = None, placed: list | None = None) -> tuple[np.ndarray, list[str]]:
    """`n` subject images uint8 (n, 64, 64, 3) and their captions (`p_second` of them by the second writer).

    `small_share`: the share of augmented rows drawn at the domain's small size (None: the domain's
    own, half). `scenes`: if a list, each row's attributes are appended to it (to caption them again).
    `placed`: if a list, each row's domain scene (where the object was placed; None without augment)."""
    cuts = cutouts(images)
    out, caps = [], []
    for k in range(n):
        cut = cuts[k % len(cuts)]
        if augment:
            s = domain.sample_scene(rng, "any")
            if small_share is not None:
                size = "small" if rng.random() < small_share else "large"
                s = domain.make_scene(rng, s.color, s.background, s.shape, size, s.position)
            attrs = s.attributes()
            out.append(place(cut, s.cx, s.cy, s.r, s.fg_rgb, s.bg_rgb))
        else:
            s = None
            attrs = _measured(cut)
            out.append(place(cut, *cut.center, cut.radius, cut.analysis.color_rgb, cut.analysis.background_rgb))
        caps.append(caption(attrs, identifier, rng, domain.random_subset(rng), p_second))
        if scenes is not None:
            scenes.append(attrs)
        if placed is not None:
            placed.append(s)
    return np.stack(out), caps
