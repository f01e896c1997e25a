"""The shape-noun stage (`train/clip_shape.py`): its table comes from the lexicon by rule, a training row
says the scene's shape with a table noun against the other shapes, it trains only rows no trained text
uses, and every prompt without a table noun encodes bit for bit as before."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nodes.shapes import domain
from train import arprior, clip_shape, clip_vocab, lexicon

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "shapes-unclip"
TABLE = {"circle": ("circlet",), "square": ("cube",), "triangle": ("trigon",), "star": ("pentacle",)}


def _nouns(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text))


def test_a_shape_row_says_the_shape_with_a_table_noun_against_the_other_shapes():
    rng = np.random.default_rng(0)
    subs = lexicon.substitutions(lexicon.load())
    first = {s: ws[0] for s, ws in clip_shape.FIRST_NOUNS.items()}
    n = 0
    for _ in range(200):
        attrs = domain.sample_scene(rng, "train").attributes()
        got = clip_shape.shape_row(attrs, rng, subs, 0.4, TABLE)
        if got is None:
            continue
        n += 1
        new, (orig, *negatives) = got
        assert TABLE[attrs["shape"]][0] in _nouns(new), (new, attrs)
        assert first[attrs["shape"]] in _nouns(orig) or any(w in orig for w in clip_shape.FIRST_NOUNS[attrs["shape"]])
        shapes = [s for s in domain.SHAPES if s != attrs["shape"]]
        assert 2 <= len(negatives) <= 3
        for neg in negatives:  # each names another shape, never a held-out pair with the scene's colour
            named = [s for s in shapes if first[s] in _nouns(neg)]
            assert len(named) == 1, neg
            assert (attrs["color"], named[0]) not in domain.HELDOUT_PAIRS or attrs["color"] not in _nouns(neg)
    assert n > 150


def test_a_second_writer_row_differs_from_its_targets_only_in_the_noun():
    rng = np.random.default_rng(2)
    attrs = {"color": "green", "background": "white", "shape": "square", "size": "large", "position": "top left"}
    for _ in range(20):
        new, targets = clip_shape.shape_row(attrs, rng, {}, 0.0, TABLE, p_second=1.0)
        for t in targets:
            diff = set(re.findall(r"[a-z]+", new)) ^ set(re.findall(r"[a-z]+", t))
            assert diff <= {"cube", "square", "circle", "triangle", "star", "a", "an"}, (new, t)


@pytest.mark.skipif(not (SHIPPED / "clip").is_dir(), reason="shipped weights absent")
def test_the_table_comes_from_the_lexicon_and_its_rows_from_no_trained_text():
    from nodes.unclip.models import load_clip

    clip = load_clip(SHIPPED / "clip")
    table = clip_shape.shape_table(clip)
    nouns = lexicon.load()["noun"]
    for shape, words in table.items():
        lex = {s for w in clip_shape.FIRST_NOUNS[shape] for s in nouns.get(w, ())}
        assert set(words) <= lex, shape
    assert "cube" in table["square"] and "circlet" in table["circle"] and "trigon" in table["triangle"]
    assert "pentangle" not in table["star"]  # "penta" the second writer uses, "angle" another lexicon word
    rows = clip_shape.trainable_tokens(clip)
    assert set(clip.token_ids("cube")) <= rows
    assert not rows & clip_vocab.frozen_tokens(clip)
    assert not rows & clip_shape.second_writer_tokens(clip)
    for word in ("circle", "square", "triangle", "star", "penta", "angle", "tri", "let"):
        assert not set(clip.token_ids(word)) & rows, word


@pytest.mark.skipif(not (SHIPPED / "prior").is_dir(), reason="shipped weights absent")
def test_prompts_without_a_table_noun_encode_bit_for_bit_as_before(tmp_path):
    from eval import _tuning_hard_prompts, _tuning_prompts
    from nodes.shapes import captions
    from nodes.unclip.models import load_clip

    out = tmp_path / "bundle"
    with pytest.raises(SystemExit, match="clip_shape's own output"):  # the shipped tower went through it
        clip_shape.main(["--smoke", "--init", str(SHIPPED), "--out", str(out)])
    assert not (out / "clip").exists()
    assert clip_shape.main(["--smoke", "--init", str(SHIPPED), "--out", str(out), "--lr", "0.05", "--again", "true"]) == 0
    with pytest.raises(SystemExit, match="clip_shape's own output"):  # nor its own output, run again
        clip_shape.main(["--smoke", "--init", str(out), "--out", str(tmp_path / "again")])
    before, after = load_clip(SHIPPED / "clip"), load_clip(out / "clip")
    rows = clip_shape.trainable_tokens(before)
    table = [w for ws in clip_shape.shape_table(before).values() for w in ws]
    noun = re.compile(r"\b(" + "|".join(re.escape(w) for w in table) + r")\b")
    rng = np.random.default_rng(3)
    tuning = [p.text for m in (_tuning_prompts, _tuning_hard_prompts) for split in ("heldout_combos", "heldout_pairs")
              for p in m.full_prompts(split, 96)]
    tuning += [p.text for m in (_tuning_prompts, _tuning_hard_prompts) for p in m.short_prompts(24)]
    uses = [bool(set(before.tokenize([t])[0].tolist()) & rows) for t in tuning]
    assert all(bool(noun.search(t)) == u for t, u in zip(tuning, uses, strict=True))  # no other word has their pieces
    kept = [t for t, u in zip(tuning, uses, strict=True) if not u]
    assert len(kept) < len(tuning)  # the hard set says "cube", "circlet", "trigon"
    second = [captions.caption(domain.sample_scene(rng, "train").attributes(), rng) for _ in range(64)]
    texts = clip_vocab.training_texts(rng, 64, 0.3) + second + kept + [
        "", "a big red star up top", "a pentangle", "a pentagram on white", "a wedge shape", "a quadrate"]
    with torch.no_grad():
        a, b = before.encode_text(texts), after.encode_text(texts)
        assert torch.equal(a.embeds, b.embeds) and torch.equal(a.hidden, b.hidden)  # bit for bit
        new = ["a hulking cube of a hue", "a large black circlet"]
        assert not torch.equal(before.encode_text(new).embeds, after.encode_text(new).embeds)
    changed = set((before.model.token_embedding.weight != after.model.token_embedding.weight).any(1)
                  .nonzero().flatten().tolist())
    assert changed and changed <= rows
    assert all(torch.equal(p, q) for (n, p), (_, q) in zip(before.model.named_parameters(),
                                                             after.model.named_parameters(), strict=True)
               if n != "token_embedding.weight")
    entry = json.loads((out / "training_log.json").read_text())["clip_shape"]
    assert entry["steps"] == 3 and entry["rows"] == len(rows) and entry["row_ids"] == sorted(rows)
    assert entry["decoder_weight"] > 0 and "shape_nearest_own" in entry and entry["wall_seconds"] > 0
    assert entry["clip_sha256"] == arprior.clip_sha256(out) != entry["clip_sha256_before"]
