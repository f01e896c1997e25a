"""A tuning probe for the few-step path: training-writer captions of held-out-combination scenes.

`bench/fast_bench.py --set probe` evaluates on it. The tuning set (`eval._tuning_prompts`) shows no
gap between the full-step and few-step paths, so it cannot choose a fix; this probe is built to
show one without touching the validation generator:

- scenes from the held-out attribute combinations (`domain.sample_scenes(..., "heldout_combos")`)
  on a seed used nowhere else (`SEED`);
- captions naming all five attributes from the TRAINING caption writers, colours by their palette
  words (the second writer's colour synonyms, "plum", "ivory", are left out: they cost both paths a
  third of their colours and backgrounds and hide any difference between them); half background first
  (`nodes.shapes.captions.caption` drawn until it puts the background before the object: "a plain
  white canvas showing a tiny orange disk"), a quarter in that writer's other orders, a quarter from
  `nodes.shapes.domain.full_caption`. Both writers use wide size words ("giant", "wee", "jumbo").

The module has the prompt-set interface of `eval._tuning_prompts` (`full_prompts`, `short_prompts`,
`variation_scenes`), so `eval.text2image.evaluate` runs it as a set of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval._validation_prompts import Prompt
from nodes.shapes import captions, domain

ROOT = Path(__file__).resolve().parents[1]

SEED = 7_301  # scenes and phrasings; used by no training, tuning or validation code
BACKGROUND_FIRST_SHARE = 0.5


def background_first(text: str, attrs: dict[str, str]) -> bool:
    """Whether a `captions.caption` text names the background (one of its BACKGROUND_FIRST frames)
    before the object's noun ("with lilac behind it" ends a caption, and is not)."""
    nouns = [i for w in captions.SHAPES[attrs["shape"]] if (i := text.find(w)) >= 0]
    frames = [i for frame in captions.BACKGROUND_FIRST for w in captions.COLORS[attrs["background"]]
              if (i := text.find(frame.format(w))) >= 0]
    return bool(frames and nouns) and min(frames) < min(nouns)


def plain_colors(text: str, attrs: dict[str, str]) -> bool:
    """Whether the object's and the background's colours are named by their palette words ("red", not
    "crimson" or "bright red"), as the validation and tuning prompts name them."""
    for key in ("color", "background"):
        plain = attrs[key]
        others = [w for w in captions.COLORS[plain] if w != plain]
        if any(w in text for w in others) or f" {plain} " not in f" {text} ".replace(",", " "):
            return False
    return True


def probe_caption(attrs: dict[str, str], rng: np.random.Generator, kind: str) -> str:
    """A caption naming every attribute in palette colour words: kind 'bg_first', 'writer2' (any other
    order) or 'writer1'."""
    if kind == "writer1":
        return domain.full_caption(attrs, rng)
    for _ in range(5000):
        text = captions.caption(attrs, rng, include=domain.ATTRIBUTES)
        if background_first(text, attrs) == (kind == "bg_first") and plain_colors(text, attrs):
            return text
    raise RuntimeError(f"no {kind} caption in 5000 draws for {attrs}")


def kind_of(i: int) -> str:
    """Prompt i's kind: every other prompt background first, the rest alternating between the writers."""
    return "bg_first" if i % 2 == 0 else ("writer2" if i % 4 == 1 else "writer1")


def full_prompts(split: str, n: int, seed: int = SEED) -> list[Prompt]:
    """n prompts naming all five attributes for scenes of `split` (the 'heldout_combos' row)."""
    rng = np.random.default_rng(seed + 11)
    out = []
    for i, s in enumerate(domain.sample_scenes(seed, n, split)):  # type: ignore[arg-type]
        attrs = s.attributes()
        out.append(Prompt(probe_caption(attrs, rng, kind_of(i)), attrs, split, attrs))
    return out


def passed_on_prompts(split: str, n: int, seed: int = SEED + 3, models: Path = ROOT / "models" / "shapes-unclip",
                      tries: int = 8) -> list[Prompt]:
    """n prompts that Factor Out Colour passes on unfactored (its read-out sees two colours, so the
    prior gets the whole prompt): for each scene, captions of the three kinds above (palette colour
    words) are drawn until one is passed on (`tries` at most; a scene with none is skipped)."""
    import torch

    from nodes.shapes.textcolor import drop_color_words, fit_text_color_map
    from nodes.unclip.models import load_clip

    clip = load_clip(models)
    tmap = fit_text_color_map(clip)
    rng = np.random.default_rng(seed + 11)
    scenes = iter(domain.sample_scenes(seed, 50 * n, split))  # type: ignore[arg-type]
    out: list[Prompt] = []
    with torch.no_grad():
        while len(out) < n:
            attrs = next(scenes).attributes()
            texts = [probe_caption(attrs, rng, kind_of(i)) for i in range(tries)]
            passed = [t for t, d in zip(texts, drop_color_words(tmap, clip, texts), strict=True) if len(d.read) > 1]
            if passed:
                out.append(Prompt(passed[0], attrs, split, attrs))
    return out


def short_prompts(n: int, seed: int = SEED + 1, heldout_pairs: bool = False) -> list[Prompt]:
    """No short rows: the probe is for the full-caption row."""
    return []


def variation_scenes(n: int, seed: int = SEED + 2) -> list[domain.Scene]:
    return domain.sample_scenes(seed, n, "heldout_combos")


class PassedOn:
    """The prompt-set interface over `passed_on_prompts` (`fast_bench.py --set probe-passed`)."""

    full_prompts = staticmethod(passed_on_prompts)
    short_prompts = staticmethod(short_prompts)
    variation_scenes = staticmethod(variation_scenes)


if __name__ == "__main__":
    for i, p in enumerate(full_prompts("heldout_combos", 16)):
        print(f"{kind_of(i):<9} {p.text}")
    for p in passed_on_prompts("heldout_combos", 16):
        print(f"passed on {p.text}")
