"""The word-order stage of the text tower (`train/clip_bind.py`): its captions, its negatives, and what it
leaves alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nodes.shapes import captions, domain
from train import clip_bind

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "shapes-unclip"
ATTRS = {"color": "red", "background": "white", "shape": "circle", "size": "large", "position": "center"}


def _first(text: str, color: str) -> int:
    return min(i for w in captions.COLORS[color] if (i := text.find(w)) >= 0)


def test_a_forced_order_puts_the_background_or_the_position_first():
    rng = np.random.default_rng(0)
    for _ in range(50):
        text = captions.caption(ATTRS, rng, include=domain.ATTRIBUTES, order="background first")
        assert _first(text, "white") < _first(text, "red"), text
        text = captions.caption(ATTRS, rng, include=("color", "shape", "position"), order="position first")
        assert _first(text, "red") > min(text.find(w) for w in captions.POSITIONS["center"] if w in text), text


def test_an_unforced_caption_draws_as_before():
    """The order option must not change the writer's random stream (the prior's and DreamBooth's captions)."""
    a = [captions.caption(ATTRS, np.random.default_rng(i)) for i in range(50)]
    b = [captions.caption(ATTRS, np.random.default_rng(i), order=None) for i in range(50)]
    assert a == b


def test_negatives_exchange_the_colours_or_read_the_background_as_the_object_and_never_a_held_out_pair():
    rng = np.random.default_rng(1)
    (swap, named), (shape, _) = clip_bind.negatives(ATTRS, domain.ATTRIBUTES, rng)
    assert (swap["color"], swap["background"]) == ("white", "red") and named == domain.ATTRIBUTES
    assert shape["shape"] != "circle" and shape["color"] == "red"
    # no object colour named, the background is: the negative is the background's colour as the object's
    ((bg_obj, named),) = clip_bind.negatives(ATTRS, ("background", "size"), rng)
    assert bg_obj["color"] == "white" and "color" in named and "background" not in named
    for color in {c for c, _ in domain.HELDOUT_PAIRS}:
        for s in domain.SHAPES:
            bg = "white" if color != "white" else "black"
            attrs = {"color": bg, "background": color, "shape": s, "size": "small", "position": "top"}
            for named in (domain.ATTRIBUTES, ("background", "shape")):
                for _ in range(10):
                    for neg, _ in clip_bind.negatives(attrs, named, rng):
                        assert (neg["color"], neg["shape"]) not in domain.HELDOUT_PAIRS, neg


@pytest.mark.skipif(not (SHIPPED / "clip").is_dir(), reason="shipped weights absent")
def test_the_stage_trains_the_text_tower_only_and_records_how_far_trained_texts_moved(tmp_path):
    import shutil

    from nodes.unclip.models import load_clip

    out = tmp_path / "shapes-unclip"
    out.mkdir()
    shutil.copytree(SHIPPED / "clip", out / "clip")
    shutil.copytree(SHIPPED / "prior", out / "prior")
    assert clip_bind.main(["--smoke", "--out", str(out)]) == 0
    before, after = load_clip(SHIPPED / "clip").model.state_dict(), load_clip(out / "clip").model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(not k.startswith("visual.") for k in changed), sorted(changed)[:5]
    log = json.loads((out / "training_log.json").read_text())["clip_bind"]
    assert log["steps"] == 3 and 0.99 < log["trained_texts_drift"]["pooled_cosine"] <= 1.0
