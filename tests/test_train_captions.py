"""The second training caption writer: it names what it is asked to, varies its wording, and never
writes a validation prompt; the text stage's hard negatives change one named word."""

from __future__ import annotations

import numpy as np

from eval import _validation_prompts as validation_prompts
from nodes.shapes import captions, domain
from train.clip_text import swapped


def test_second_writer_never_writes_a_validation_prompt():
    """(As with the first writer, a two-word short prompt may coincide: "a black thing".)"""
    rng = np.random.default_rng(0)
    prompts = validation_prompts.full_prompts("heldout_combos", 60) + validation_prompts.full_prompts("heldout_pairs", 30)
    for p in prompts:
        written = {captions.caption(p.scene, rng, include=tuple(p.named)) for _ in range(200)}
        assert p.text not in written, p.text


def test_a_caption_names_its_attributes_and_leaves_the_others_out():
    rng = np.random.default_rng(1)
    attrs = {"color": "purple", "background": "yellow", "shape": "triangle", "size": "small", "position": "top left"}
    for _ in range(100):
        text = captions.caption(attrs, rng, include=("shape",))
        assert any(w in text for w in captions.SHAPES["triangle"]), text
        assert not any(w in text for w in (*captions.COLORS["purple"], *captions.COLORS["yellow"])), text
        full = captions.caption(attrs, rng, include=domain.ATTRIBUTES)
        assert any(w in full for w in captions.COLORS["yellow"]) and any(w in full for w in captions.SIZES["small"])


def test_the_writer_varies_word_order_and_vocabulary():
    rng = np.random.default_rng(2)
    attrs = {"color": "red", "background": "white", "shape": "circle", "size": "large", "position": "center"}
    texts = {captions.caption(attrs, rng, include=domain.ATTRIBUTES) for _ in range(200)}
    assert len(texts) > 150
    assert any(t.split()[0] in ("on", "a", "against") and t.find("white") < t.find("circle") for t in texts
               if "circle" in t)


def test_a_hard_negative_swaps_one_named_colour_or_shape():
    rng = np.random.default_rng(3)
    attrs = {"color": "red", "background": "white", "shape": "circle", "size": "large", "position": "center"}
    for _ in range(50):
        neg = swapped(attrs, ("color", "shape"), rng)
        changed = [a for a in attrs if neg[a] != attrs[a]]
        assert len(changed) == 1 and changed[0] in ("color", "shape")
        assert neg["color"] != neg["background"]
    assert swapped(attrs, ("size", "position"), rng) is None


def test_a_hard_negative_is_never_a_held_out_pair():
    rng = np.random.default_rng(4)
    for color, shape in domain.HELDOUT_PAIRS:
        # one swap away from the held-out pair: the other attribute differs
        near = [{"color": color, "background": "white" if color != "white" else "black", "shape": s,
                 "size": "small", "position": "top"} for s in domain.SHAPES if s != shape]
        near += [{"color": c, "background": "white" if c != "white" else "black", "shape": shape, "size": "small",
                  "position": "top"} for c in domain.COLORS if c not in (color, "white", "black")]
        for attrs in near:
            for _ in range(30):
                neg = swapped(attrs, ("color", "shape"), rng)
                assert (neg["color"], neg["shape"]) not in domain.HELDOUT_PAIRS, neg
