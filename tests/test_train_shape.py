"""The shape-noun stage (`train/clip_shape.py`): its table comes from the lexicon by rule, a training row
says the scene's shape with a table noun against the other shapes, it trains only rows no trained text
and no other English word uses, and every prompt without a table noun encodes bit for bit as before."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nodes.shapes import domain
from train import arprior, clip_place, clip_rows, clip_shape, clip_vocab, lexicon

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "shapes-unclip"
TABLE = {"circle": ("circlet",), "square": ("cube",), "triangle": ("trigon",), "star": ("pentacle",)}
# common English words made of pieces the first table (36 rows, before the English-word rule) trained:
# "uni|que", "tech|ni|que", "hex|agon", "poly|gon", "sk|ating", "aster|isk", "obli|que", "equ|ator", ...
COMMON = ("unique", "technique", "hexagon", "polygon", "angled", "acute", "skating", "asterisk", "oblique",
          "equator", "golden")


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
        assert any(re.search(rf"\b{re.escape(w)}\b", orig) for w in clip_shape.FIRST_NOUNS[attrs["shape"]]), orig
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


def test_the_table_takes_single_words_without_a_first_writer_noun():
    assert clip_shape.candidate("cube") and clip_shape.candidate("saucer") and clip_shape.candidate("trigon")
    for word in ("foursquare", "circlet", "osculating circle", "isosceles triangle", "acute-angled triangle", "wedge shape",
                 "intervertebral disc"):
        assert not clip_shape.candidate(word), word


@pytest.mark.skipif(not (SHIPPED / "clip").is_dir(), reason="shipped weights absent")
def test_the_table_comes_from_the_lexicon_and_its_rows_from_no_trained_text_nor_other_word():
    from nodes.unclip.models import load_clip

    clip = load_clip(SHIPPED / "clip")
    table = clip_shape.shape_table(clip)
    nouns = lexicon.load()["noun"]
    for shape, words in table.items():
        lex = {s for w in clip_shape.FIRST_NOUNS[shape] for s in nouns.get(w, ())}
        assert set(words) <= lex and all(clip_shape.candidate(w) for w in words), shape
    assert "cube" in table["square"]
    # "circlet" has "circle" in it; "tri|gon", "pent|acle": pieces of other English words ("polygon", "tentacle")
    assert "circlet" not in table["circle"] and "trigon" not in table["triangle"] and "pentacle" not in table["star"]
    rows = clip_shape.trainable_tokens(clip)
    assert set(clip.token_ids("cube")) <= rows
    assert not rows & clip_vocab.frozen_tokens(clip)
    assert not rows & clip_rows.second_writer_tokens(clip)
    english = clip_rows.english_users(clip)
    words = {w for ws in table.values() for w in ws}
    for i in rows:  # 3 letters or more, and no word of the English list but a table noun uses it
        assert len(clip_rows.piece(clip, i).removesuffix("</w>")) >= clip_shape.MIN_PIECE
        assert english.get(i, frozenset()) <= words, (clip_rows.piece(clip, i), english[i] - words)
    for word in ("circle", "square", "triangle", "star", "penta", "angle", "tri", "let", *COMMON):
        assert not set(clip.token_ids(word)) & rows, word


def shipped_log() -> dict:
    return json.loads((SHIPPED / "training_log.json").read_text())


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A few steps of the stage on the shipped tower (`--again`, a large learning rate so every trained row moves)."""
    if not (SHIPPED / "prior").is_dir():
        pytest.skip("shipped weights absent")
    tmp_path = tmp_path_factory.mktemp("clip_shape")
    out = tmp_path / "bundle"
    with pytest.raises(SystemExit, match="clip_shape's own output"):  # the shipped tower went through it
        clip_shape.main(["--smoke", "--init", str(SHIPPED), "--out", str(out)])
    assert not (out / "clip").exists()
    assert clip_shape.main(["--smoke", "--init", str(SHIPPED), "--out", str(out), "--lr", "0.05", "--again", "true"]) == 0
    return tmp_path, out


def test_common_words_built_from_shape_pieces_encode_bit_for_bit_as_before(smoke_run):
    from nodes.unclip.models import load_clip

    _, out = smoke_run
    before, after = load_clip(SHIPPED / "clip"), load_clip(out / "clip")
    texts = list(COMMON) + [f"a red {w}" for w in ("hexagon", "polygon", "asterisk")] + [
        "a unique technique", "an acute angled oblique line", "skating on the equator", "a golden star"]
    with torch.no_grad():
        a, b = before.encode_text(texts), after.encode_text(texts)
    for t, ea, eb, ha, hb in zip(texts, a.embeds, b.embeds, a.hidden, b.hidden, strict=True):
        assert torch.equal(ea, eb) and torch.equal(ha, hb), t


def test_prompts_without_a_table_noun_encode_bit_for_bit_as_before(smoke_run):
    from eval import _tuning_hard_prompts, _tuning_prompts
    from nodes.shapes import captions
    from nodes.unclip.models import load_clip

    tmp_path, out = smoke_run
    with pytest.raises(SystemExit, match="clip_shape's own output"):  # nor its own output, run again
        clip_shape.main(["--smoke", "--init", str(out), "--out", str(tmp_path / "again")])
    # the input's log came along with --out, and the run recorded its input's ancestry (its --again entry
    # replaced the one that linked clip_place's tower to the shipped one)
    with pytest.raises(SystemExit, match="clip_place's own output"):
        clip_place.main(["--smoke", "--init", str(out), "--out", str(tmp_path / "place")])
    before, after = load_clip(SHIPPED / "clip"), load_clip(out / "clip")
    rows = clip_shape.trainable_tokens(before)
    table = {w for ws in clip_shape.shape_table(before).values() for w in ws}
    rng = np.random.default_rng(3)
    tuning = [p.text for m in (_tuning_prompts, _tuning_hard_prompts) for split in ("heldout_combos", "heldout_pairs")
              for p in m.full_prompts(split, 96)]
    tuning += [p.text for m in (_tuning_prompts, _tuning_hard_prompts) for p in m.short_prompts(24)]
    # word by word: a word of a prompt uses a trained row if and only if it is a table noun
    for word in sorted({w for t in tuning for w in re.findall(r"[a-z]+", t.lower())}):
        assert bool(set(before.token_ids(word)) & rows) == (word in table), word
    uses = [bool(set(re.findall(r"[a-z]+", t.lower())) & table) for t in tuning]
    kept = [t for t, u in zip(tuning, uses, strict=True) if not u]
    assert len(kept) < len(tuning)  # the hard set says "cube"
    second = [captions.caption(domain.sample_scene(rng, "train").attributes(), rng) for _ in range(64)]
    texts = clip_vocab.training_texts(rng, 64, 0.3) + second + kept + [
        "", "a big red star up top", "a pentangle", "a pentagram on white", "a wedge shape", "a quadrate",
        "a large black circlet", "a trigon"]
    with torch.no_grad():
        a, b = before.encode_text(texts), after.encode_text(texts)
        assert torch.equal(a.embeds, b.embeds) and torch.equal(a.hidden, b.hidden)  # bit for bit
        new = ["a hulking cube of a hue", "a small cube"]
        assert not torch.equal(before.encode_text(new).embeds, after.encode_text(new).embeds)
    changed = set((before.model.token_embedding.weight != after.model.token_embedding.weight).any(1)
                  .nonzero().flatten().tolist())
    assert changed and changed <= rows
    assert all(torch.equal(p, q) for (n, p), (_, q) in zip(before.model.named_parameters(),
                                                             after.model.named_parameters(), strict=True)
               if n != "token_embedding.weight")
    logs = json.loads((out / "training_log.json").read_text())
    entry = logs["clip_shape"]
    assert entry["steps"] == 3 and entry["rows"] == len(rows) and entry["row_ids"] == sorted(rows)
    assert entry["decoder_weight"] > 0 and "shape_nearest_own" in entry and entry["wall_seconds"] > 0
    assert entry["clip_sha256"] == arprior.clip_sha256(out) != entry["clip_sha256_before"]
    assert shipped_log()["clip_place"]["clip_sha256"] in entry["clip_sha256_ancestors"]
    shipped = json.loads((SHIPPED / "training_log.json").read_text())
    # the input's text-tower entries came along; the models the stage does not write have none in a fresh folder
    assert {k: v for k, v in logs.items() if k != "clip_shape"} == {
        k: v for k, v in shipped.items() if k != "clip_shape" and (k == "clip" or k.startswith("clip_"))}


def test_carrying_the_log_keeps_the_entries_of_the_models_the_stage_does_not_write(tmp_path):
    init, out = tmp_path / "init", tmp_path / "out"
    init.mkdir(), out.mkdir()
    (init / "training_log.json").write_text(json.dumps({
        "clip": {"from": "A"}, "clip_place": {"clip_sha256": "P"}, "decoder": {"from": "A"}, "upsampler": {"from": "A"}}))
    (out / "training_log.json").write_text(json.dumps({
        "clip": {"from": "O"}, "decoder": {"from": "O"}, "prior": {"from": "O"}}))
    clip_rows.carry_log(init, out)
    assert json.loads((out / "training_log.json").read_text()) == {
        "clip": {"from": "A"}, "clip_place": {"clip_sha256": "P"}, "decoder": {"from": "O"}, "prior": {"from": "O"}}


def test_a_towers_ancestry_survives_its_stage_run_again():
    logs = {"clip_place": {"clip_sha256": "P", "clip_sha256_before": "B"},
            # clip_shape run again on its own output ("S1" from "P"): the entry that linked S1 to P is replaced
            "clip_shape": {"clip_sha256": "S2", "clip_sha256_before": "S1", "clip_sha256_ancestors": ["B", "P"]}}
    assert clip_rows.ancestors(logs, "S2") == {"S1", "P", "B"}
    assert clip_rows.ancestors(logs, "P") == {"B"} and clip_rows.ancestors(logs, "X") == set()
