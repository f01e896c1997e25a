"""The WordNet lexicon and the vocabulary stage: synonyms come from the rule, and teaching the text
tower new words leaves every encoding the shipped models were trained on bit for bit as it was."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from train import lexicon

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "shapes-unclip"


def _data_line(offset: str, lexfile: int, kind: str, words: list[str], ptrs: list[tuple[str, str, str]]) -> str:
    w = " ".join(f"{x} 0" for x in words)
    p = " ".join(f"{s} {o} {pos} 0000" for s, o, pos in ptrs)
    return f"{offset} {lexfile:02d} {kind} {len(words):02x} {w} {len(ptrs):03d} {p} | a gloss"


def _fake_wordnet(root: Path) -> Path:
    """A WordNet folder in the real file format with a few synsets."""
    adj = [_data_line("00000001", 0, "a", ["large", "big"], [("&", "00000002", "s"), ("!", "00000003", "a")]),
           _data_line("00000002", 0, "s", ["giant", "jumbo"], [("&", "00000001", "a")]),
           _data_line("00000003", 0, "a", ["small"], [("&", "00000004", "s")]),
           _data_line("00000004", 0, "s", ["tiny", "wee"], [("&", "00000003", "a")]),
           _data_line("00000005", 0, "a", ["large(a)", "boastful"], [])]
    noun = [_data_line("00000010", 14, "n", ["star", "leading_man"], [("~", "00000012", "n")]),
            _data_line("00000011", 25, "n", ["star"], [("~", "00000012", "n"), ("@", "00000013", "n")]),
            _data_line("00000012", 25, "n", ["pentagram", "pentacle"], [])]
    (root / "data.adj").write_text("  1 licence header\n" + "\n".join(adj) + "\n")
    (root / "data.noun").write_text("\n".join(noun) + "\n")
    (root / "data.verb").write_text("")
    (root / "index.adj").write_text("  1 licence header\nlarge a 2 1 & 2 0 00000001 00000005  \n"
                                    "tiny a 1 1 & 1 0 00000004  \n")
    (root / "index.noun").write_text("star n 2 1 ~ 2 0 00000010 00000011  \n")
    (root / "index.verb").write_text("")
    return root


def test_wordnet_reader_takes_the_first_sense_and_a_heads_satellites(tmp_path):
    wn = lexicon.WordNet(_fake_wordnet(tmp_path))
    assert [s.offset for s in wn.senses("large", "a")] == ["00000001", "00000005"]
    assert lexicon._adjective(wn, "large") == ["large", "big", "giant", "jumbo"]  # not "boastful": 2nd sense
    assert lexicon._adjective(wn, "tiny") == ["tiny", "wee"]  # a satellite: its own lemmas, not its head
    assert wn.synset("00000005", "a").lemmas == ["large", "boastful"]  # "(a)" marker stripped
    shape = [s for s in wn.senses("star", "n") if s.lexfile == lexicon.NOUN_SHAPE]
    assert [w for s in shape for w in lexicon._with_hyponyms(wn, s)] == ["star", "pentagram", "pentacle"]


def test_a_missing_wordnet_names_the_package_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        lexicon.WordNet(tmp_path)


def test_the_committed_lexicon_keeps_to_its_rule():
    first = lexicon.first_writer_words()
    table = lexicon.load()
    subs = lexicon.substitutions(table)
    assert {"large", "small", "red", "circle", "star", "left"} <= set(subs)
    for word, syns in subs.items():
        assert word in first, word
        for s in syns:  # never a word whose meaning training already fixed, never a reserved word
            assert s not in first and s not in lexicon.RESERVED and s != word, (word, s)


def test_rephrase_swaps_only_words_with_synonyms():
    subs = {"big": ["giant", "jumbo"], "red": ["crimson"]}
    rng = np.random.default_rng(0)
    assert lexicon.rephrase("a big red star", subs, rng, p=0.0) == "a big red star"
    out = lexicon.rephrase("a big red star on a bigger field", subs, rng, p=1.0)
    words = out.split()
    assert words[1] in ("giant", "jumbo") and words[2] == "crimson" and words[3] == "star"
    assert "bigger" in words  # whole words only


@pytest.mark.skipif(not (SHIPPED / "clip").is_dir(), reason="shipped weights absent")
def test_the_vocabulary_stage_changes_only_new_words(tmp_path):
    from nodes.unclip.models import load_clip
    from train import clip_vocab

    out = tmp_path / "bundle"
    assert clip_vocab.main(["--smoke", "--init", str(SHIPPED), "--out", str(out), "--lr", "0.05"]) == 0
    before, after = load_clip(SHIPPED / "clip"), load_clip(out / "clip")
    rng = np.random.default_rng(3)
    texts = clip_vocab.training_texts(rng, 64, 0.3) + ["", "i want a red star", "a star like a circle, low"]
    with torch.no_grad():
        a, b = before.encode_text(texts), after.encode_text(texts)
    assert torch.equal(a.embeds, b.embeds) and torch.equal(a.hidden, b.hidden)  # bit for bit
    rows_a, rows_b = before.model.token_embedding.weight, after.model.token_embedding.weight
    changed = (rows_a != rows_b).any(1).nonzero().flatten().tolist()
    frozen = clip_vocab.frozen_tokens(before)
    assert changed and not set(changed) & frozen
    assert all(torch.equal(p, q) for (n, p), (_, q) in zip(before.model.named_parameters(),
                                                             after.model.named_parameters(), strict=True)
               if n != "token_embedding.weight")
    log = json.loads((out / "training_log.json").read_text())["clip_vocab"]
    assert log["new_tokens"] > 100 and log["steps"] == 3


@pytest.mark.skipif(not (SHIPPED / "clip").is_dir(), reason="shipped weights absent")
def test_word_pieces_that_are_words_of_their_own_stay_frozen():
    """"parti-color" ends in the piece "i": teaching it would change "i want a red star"."""
    from nodes.unclip.models import load_clip
    from train import clip_vocab

    assert {"i", "like", "low"} <= set(lexicon.load_protected())
    clip = load_clip(SHIPPED / "clip")
    frozen = clip_vocab.frozen_tokens(clip, n=200)
    for word in ("i", "like", "low"):
        (piece,) = clip.tokenize([word])[0][1:2].tolist()
        assert piece in frozen, word


def test_multi_word_synonyms_train_only_the_words_that_carry_their_meaning():
    from train import clip_vocab_tune

    lex = {"adjective": {"left": ["left-hand", "leftmost"], "green": ["light-green", "jade"]},
           "noun": {"green": ["jade green", "sea green"]},
           "verb": {"move": ["go across", "go by"]}}
    fixed = clip_vocab_tune.fixed_words(lex)
    assert {"hand", "light", "across", "by"} <= fixed  # beside the word meant, or a verb's particle
    assert "jade" not in fixed  # a one-word synonym of its own
    assert "sea" in fixed and "go" not in fixed  # a verb phrase's head word still learns the verb


def test_a_hard_negative_swaps_the_replaced_word_for_another_value_of_its_attribute():
    from train import clip_vocab_tune

    subs = {"star": ["pentacle"], "big": ["colossal"]}
    rng = np.random.default_rng(0)
    for _ in range(20):
        new, neg = clip_vocab_tune.rephrase_with_negative("a big yellow star on the left", None, subs, rng, 1.0, 0.0)
        assert new == "a colossal yellow pentacle on the left"
        assert neg in {"a small yellow star on the left", "a big yellow square on the left",
                       "a big yellow triangle on the left"}  # not "yellow circle", a held-out pair
    for _ in range(20):  # "red star" is a held-out pair: never a negative
        _, neg = clip_vocab_tune.rephrase_with_negative("a red circle", None, {"circle": ["circlet"]}, rng, 1.0, 0.0)
        assert neg in {"a red square", "a red triangle"}


def test_an_axis_phrase_names_the_column_and_the_row_of_the_position():
    from nodes.shapes import domain
    from train import clip_vocab_tune

    rng = np.random.default_rng(0)
    cols, rows = clip_vocab_tune.COLUMN_WORDS, clip_vocab_tune.ROW_WORDS
    for position, (col, row) in domain.POSITIONS.items():
        for _ in range(10):
            words = set(re.findall(r"left-hand|right-hand|[a-z]+", clip_vocab_tune.axis_phrase(position, rng)))
            assert words & set(cols[col]) and words & set(rows[row]), (position, words)
            assert not words & (set().union(*cols.values(), *rows.values()) - set(cols[col]) - set(rows[row]))
    attrs = {"color": "red", "background": "white", "shape": "circle", "size": "large", "position": "right"}
    new, neg = clip_vocab_tune.rephrase_with_negative("a big red circle on the right side", attrs, {}, rng, 0.0, 1.0)
    assert new.startswith("a big red circle ") and "right side" not in new
    assert neg in {"a big red circle " + domain.POSITION_PHRASES[p][0] for p in ("top right", "bottom right",
                                                                                   "left", "center")}


@pytest.mark.skipif(not (SHIPPED / "prior").is_dir(), reason="shipped weights absent")
def test_the_vocabulary_continuation_changes_only_its_rows(tmp_path):
    from nodes.unclip.models import load_clip
    from train import clip_vocab, clip_vocab_tune

    out = tmp_path / "bundle"
    assert clip_vocab_tune.main(["--smoke", "--init", str(SHIPPED), "--out", str(out), "--lr", "0.05"]) == 0
    before, after = load_clip(SHIPPED / "clip"), load_clip(out / "clip")
    texts = clip_vocab.training_texts(np.random.default_rng(3), 64, 0.3) + ["", "i want a red star",
                                                                             "a star by the left-hand edge"]
    with torch.no_grad():
        a, b = before.encode_text(texts), after.encode_text(texts)
    assert torch.equal(a.embeds, b.embeds) and torch.equal(a.hidden, b.hidden)  # bit for bit
    changed = set((before.model.token_embedding.weight != after.model.token_embedding.weight).any(1)
                  .nonzero().flatten().tolist())
    trainable = clip_vocab_tune.trainable_tokens(before, lexicon.load())
    assert changed and changed <= trainable
    for word in ("by", "hand", "across"):  # fixed words of multi-word synonyms
        (piece,) = before.tokenize([word])[0][1:2].tolist()
        assert piece not in trainable, word
    assert all(torch.equal(p, q) for (n, p), (_, q) in zip(before.model.named_parameters(),
                                                             after.model.named_parameters(), strict=True)
               if n != "token_embedding.weight")
    assert json.loads((out / "training_log.json").read_text())["clip_vocab_tune"]["steps"] == 3


def test_the_vocabulary_trial_refuses_to_rewrite_the_shipped_tower():
    """Review fix: with no --out the trial wrote into models/shapes-unclip/clip in place."""
    from train import clip_vocab_tune
    from train.common import SHIPPED

    before = sorted((p.name, p.stat().st_mtime_ns) for p in (SHIPPED / "clip").iterdir()) if SHIPPED.is_dir() else []
    assert clip_vocab_tune.main(["--steps", "1"]) == 2
    assert clip_vocab_tune.main(["--steps", "1", "--out", str(SHIPPED)]) == 2
    after = sorted((p.name, p.stat().st_mtime_ns) for p in (SHIPPED / "clip").iterdir()) if SHIPPED.is_dir() else []
    assert after == before
