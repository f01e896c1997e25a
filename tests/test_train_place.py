"""The place-word stage (`train/clip_place.py`): its phrases say the right row and column, it trains only
the rows of its own words, and every prompt without them encodes bit for bit as before."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nodes.shapes import domain
from train import arprior, clip_place, clip_rows

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "shapes-unclip"
COLUMNS = {0: "left", 2: "right"}


def test_a_place_phrase_names_the_row_with_a_vertical_word_and_the_right_column():
    rng = np.random.default_rng(0)
    up = {w for p in clip_place.ROW_WORDS[0] for w in p.split()}
    down = {w for p in clip_place.ROW_WORDS[2] for w in p.split()}
    for position, (col, row) in domain.POSITIONS.items():
        if row == 1:
            continue
        for _ in range(30):
            phrase = clip_place.place_phrase(position, rng)
            words = set(re.findall(r"[a-z]+", phrase))
            assert words & (up if row == 0 else down), (position, phrase)
            assert not words & (down if row == 0 else up), (position, phrase)
            if col in COLUMNS:
                assert COLUMNS[col] in words and COLUMNS[2 - col] not in words, (position, phrase)
            else:
                assert not words & {"left", "right"}, (position, phrase)


def test_a_place_row_keeps_the_caption_and_lists_the_other_positions_as_negatives():
    rng = np.random.default_rng(1)
    attrs = {"color": "red", "background": "white", "shape": "circle", "size": "large", "position": "top left"}
    new, originals = clip_place.place_row(attrs, rng, {}, 0.0)
    assert len(originals) == 9 and len(set(originals)) == 9
    orig = originals[0]
    for p in domain.POSITION_NAMES:  # the negatives: the same caption at each other position
        if p != "top left":
            assert sum(o == orig.replace(o_span(orig), domain.POSITION_PHRASES[p][0]) for o in originals[1:]) == 1
    assert set(re.findall(r"[a-z]+", new)) & {w for p in clip_place.ROW_WORDS[0] for w in p.split()}
    middle = dict(attrs, position="left")
    assert clip_place.place_row(middle, rng, {}, 0.0) is None  # the middle row has no vertical word


def o_span(caption: str) -> str:
    """The first-writer position phrase of the top-left cell that `caption` uses."""
    for ph in sorted(domain.POSITION_PHRASES["top left"], key=len, reverse=True):
        if ph in caption:
            return ph
    raise AssertionError(caption)


def test_billow_anchors_say_billow_in_a_training_instruction():
    texts = clip_place.anchor_texts(np.random.default_rng(0), 6)
    assert len(texts) == 6 and all(re.search(r"\bbillow\b", t) for t in texts)


@pytest.mark.skipif(not (SHIPPED / "clip").is_dir(), reason="shipped weights absent")
def test_the_stage_trains_only_rows_no_trained_text_uses(monkeypatch):
    from nodes.unclip.models import load_clip
    from train import clip_vocab

    clip = load_clip(SHIPPED / "clip")
    rows = clip_place.trainable_tokens(clip)
    frozen = clip_vocab.frozen_tokens(clip)
    piece = lambda w: clip.tokenize([w])[0][1].item()  # noqa: E731
    assert {piece(w) for w in ("high", "low", "below", "above")} <= rows
    assert rows & frozen == {piece("low")}  # the one shared row: "low" of "bil|low", a protected piece
    for word in ("up", "down", "lower", "top", "left", "i", "like"):
        assert piece(word) not in rows, word
    monkeypatch.setattr(clip_place, "NEW_WORDS", ("high", "top"))
    with pytest.raises(ValueError, match="'top'"):
        clip_place.trainable_tokens(clip)
    # a word only the second caption writer uses (what prior_tune and clip_bind read) is refused too
    words = [clip_rows.piece(clip, i).removesuffix("</w>") for i in clip_rows.second_writer_tokens(clip) - frozen]
    only_second = sorted(w for w in words if w.isalpha() and len(clip.token_ids(w)) == 1)
    assert only_second
    monkeypatch.setattr(clip_place, "NEW_WORDS", ("high", only_second[0]))
    with pytest.raises(ValueError, match=repr(only_second[0])):
        clip_place.trainable_tokens(clip)


@pytest.mark.skipif(not (SHIPPED / "prior").is_dir(), reason="shipped weights absent")
def test_prompts_without_the_new_words_encode_bit_for_bit_as_before(tmp_path):
    from eval import _tuning_hard_prompts, _tuning_prompts
    from nodes.unclip.models import load_clip
    from train import clip_vocab

    out = tmp_path / "bundle"
    with pytest.raises(SystemExit, match="clip_place's own output"):  # the shipped tower went through it
        clip_place.main(["--smoke", "--init", str(SHIPPED), "--out", str(out)])
    assert not (out / "clip").exists()
    assert clip_place.main(["--smoke", "--init", str(SHIPPED), "--out", str(out), "--lr", "0.05", "--again", "true"]) == 0
    before, after = load_clip(SHIPPED / "clip"), load_clip(out / "clip")
    rng = np.random.default_rng(3)
    new_word = re.compile(r"\b(high|higher|highest|above|low|lowest|below|billow)\b")
    tuning = [p.text for m in (_tuning_prompts, _tuning_hard_prompts) for split in ("heldout_combos", "heldout_pairs")
              for p in m.full_prompts(split, 48)]
    kept = [t for t in tuning if not new_word.search(t)]
    assert len(kept) < len(tuning)  # the hard set says "high up on the left"; those are left out here
    texts = clip_vocab.training_texts(rng, 64, 0.3) + kept + [
        "", "i want a red star", "a star like a circle", "a giant crimson disc in the uppermost left corner",
        "a big star up top, lower left", "a colossal star toward the bottom, leftmost"]
    with torch.no_grad():
        a, b = before.encode_text(texts), after.encode_text(texts)
        assert torch.equal(a.embeds, b.embeds) and torch.equal(a.hidden, b.hidden)  # bit for bit
        new = ["a big red star high up on the left", "a small blue circle low down on the right"]
        assert not torch.equal(before.encode_text(new).embeds, after.encode_text(new).embeds)
    changed = set((before.model.token_embedding.weight != after.model.token_embedding.weight).any(1)
                  .nonzero().flatten().tolist())
    assert changed and changed <= clip_place.trainable_tokens(before)
    assert all(torch.equal(p, q) for (n, p), (_, q) in zip(before.model.named_parameters(),
                                                             after.model.named_parameters(), strict=True)
               if n != "token_embedding.weight")
    entry = json.loads((out / "training_log.json").read_text())["clip_place"]
    assert entry["steps"] == 3 and entry["rows"] == len(clip_place.trainable_tokens(before))
    assert 0 <= entry["place_nearest_own"] <= 1 and "billow_cosine_to_before" in entry
    assert entry["row_ids"] == sorted(clip_place.trainable_tokens(before)) and entry["seed"] == 23
    assert entry["clip_sha256"] == arprior.clip_sha256(out) != entry["clip_sha256_before"]
