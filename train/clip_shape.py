"""Stage 1f: the lexicon's rare shape nouns again ("cube", "saucer"), read through the prior and the decoder.

`clip_vocab` taught the lexicon's synonyms by pulling a rephrased caption's pooled embedding (and its token
states when the token count matched) to the original's. A shape synonym of another length ("circ|let",
"tri|lateral") never had its token states trained, and the prior and the decoder attend to them: on the
hard tuning set "a hulking cube" and "a large black circlet" were drawn as triangles (docs/unclip.md,
"Shape nouns"). This stage trains only the rows of those nouns, with `clip_place`'s loop (`clip_rows`):

- **the words** (`shape_table`): by rule from the lexicon (`train/lexicon.json`, WordNet's `noun.shape`
  senses and hyponyms): the noun synonyms of a first-writer shape noun ("circle", "disk", "block",
  "triangle", "star", …) that are one word and have no first-writer noun in them (`candidate`:
  "osculating circle", "isosceles triangle", "foursquare", "circlet" are not), with the pieces that only
  such a noun uses. A piece stays frozen if a training text, the second caption writer (what `prior_tune` and
  `clip_bind` read), a reserved word or a protected piece uses it; if another lexicon word or another
  shape's noun shares it; if it is shorter than `MIN_PIECE` letters; or if any word of a general English
  word list (`clip_rows.english_words`, 73,445 words) other than the noun itself uses it ("que" of
  "uni|que", "gon" of "poly|gon", "hex" of "hex|agon"). A noun left with no piece of its own is not in the
  table and reads as it did. With the shipped tokenizer that leaves "cube" and "saucer", one row each;
- **the targets**: a caption of a training scene with its shape noun said as a table noun of the same
  shape must encode as the same caption with a first-writer noun: half the time a first-writer caption
  (its other words rephrased with lexicon synonyms `p_sub` of the time), half the time a second-writer
  one (its frames: background first, lists, requests), each text of it from the same draws: the pooled
  embedding, the token states when the lengths match, the frozen prior's x₀ prediction and the frozen decoder's prediction (`decoder_weight`) from it, at the same noisy image
  embedding and 32 px render of the scene;
- **hard negatives** (InfoNCE at `tau`): nearer the original than the original with its noun swapped
  for each other shape's ("circle", "square", "triangle", "star"), never one naming a held-out pair.

The rows start where `clip_vocab` left them. Every other row, the transformer and the projection are the
input tower's bit for bit, so a prompt without a table noun encodes exactly as before, and of the English
word list only the table nouns themselves encode differently (`tests/test_train_shape.py`). It continues
the tower after `clip_place` and reads the bundle's prior and decoder, so `python -m train unclip` runs it after `decoder_tune` (the decoder and the
AR prior train on first-writer captions, which it leaves as they were); it refuses a tower it wrote itself.

    python -m train clip_shape [--smoke] [--steps N] [--threads T] [--out DIR] [--init DIR] [--again true]
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nodes.shapes import captions as second_writer
from nodes.shapes import domain
from train import clip_rows, clip_vocab, lexicon
from train.common import SHIPPED

log = logging.getLogger("train.clip_shape")

# the first writer's nouns of each shape (a negative says another shape with the first of them)
FIRST_NOUNS: dict[str, tuple[str, ...]] = domain.SHAPE_WORDS


@dataclass
class Config(clip_rows.Config):
    out: str = str(SHIPPED)
    steps: int = 120
    decoder_weight: float = 1.0
    seed: int = 29


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=3, batch=8, n_data=64, log_every=1, warmup=1)


# the shortest piece (in letters, "</w>" not counted) this stage trains: "c", "e", "il", "cu" are pieces of
# thousands of words. A backstop: with the shipped tokenizer and word list the English rule already leaves
# no piece under 3 letters, but another list or tokenizer might
MIN_PIECE = 3


def _synonyms() -> dict[str, list[str]]:
    """{shape: the lexicon's noun synonyms of its first-writer nouns}, in the lexicon's order."""
    nouns = lexicon.load()["noun"]
    out: dict[str, list[str]] = {}
    for shape, words in FIRST_NOUNS.items():
        out[shape] = []
        for w in words:
            out[shape] += [s for s in nouns.get(w, ()) if s not in out[shape]]
    return out


def candidate(word: str) -> bool:
    """A synonym the table may take: one word, letters only, that no first-writer noun is part of
    ("foursquare", "circlet", "osculating circle", "isosceles triangle" are not: their other pieces are
    modifiers or endings that ordinary words use, and the first writer's noun is already read right)."""
    return word.isalpha() and not any(n in word for ns in FIRST_NOUNS.values() for n in ns)


@lru_cache(maxsize=2)  # the rule reads only the tokenizer; a run asks for it several times
def _table(clip) -> tuple[dict[str, tuple[str, ...]], frozenset[int]]:
    syns = _synonyms()
    frozen = clip_vocab.frozen_tokens(clip) | clip_rows.second_writer_tokens(clip)
    table_words = {s: shape for shape, ws in syns.items() for s in ws}
    users: dict[int, set[str]] = {}  # piece -> lexicon synonyms using it
    for s in clip_rows.lexicon_synonyms():
        for i in clip.token_ids(s):
            users.setdefault(i, set()).add(s)
    english = clip_rows.english_users(clip)
    def own(i: int, word: str, shape: str) -> bool:
        return (i not in frozen and len(clip_rows.piece(clip, i).removesuffix("</w>")) >= MIN_PIECE
                and not english.get(i, frozenset()) - {word}
                and all(table_words.get(u) == shape for u in users.get(i, ())))

    table: dict[str, tuple[str, ...]] = {}
    rows: set[int] = set()
    for shape, words in syns.items():
        keep = []
        for w in words:
            ids = [i for i in clip.token_ids(w) if own(i, w, shape)] if candidate(w) else []
            if ids:
                keep.append(w)
                rows.update(ids)
        table[shape] = tuple(keep)
    return table, frozenset(rows)


def shape_table(clip) -> dict[str, tuple[str, ...]]:
    """{shape: the lexicon nouns this stage trains} (see the module docstring for the rule)."""
    return _table(clip)[0]


def trainable_tokens(clip) -> set[int]:
    """The rows of the table nouns' own pieces (see the module docstring)."""
    return set(_table(clip)[1])


def _noun_span(caption: str, shape: str) -> tuple[int, int] | None:
    for w in sorted(FIRST_NOUNS[shape], key=len, reverse=True):
        m = re.search(rf"\b{re.escape(w)}\b", caption)
        if m:
            return m.span()
    return None


def shape_row(attrs: dict[str, str], rng: np.random.Generator, subs: dict[str, list[str]], p_sub: float,
              table: dict[str, tuple[str, ...]], p_second: float = 0.5) -> tuple[str, list[str]] | None:
    """(a caption of `attrs` with its shape said as a table noun, [the same caption with the first writer's
    noun, then with each other shape's first noun, leaving out any that names a held-out pair]).

    The caption is the first writer's (its other words rephrased with lexicon synonyms at `p_sub`) or, with
    probability `p_second`, the second writer's (background or position first, lists, requests: frames the
    first writer never uses), whose frame and other words are the same in every text of the row."""
    words = table[attrs["shape"]]
    if not words:
        return None
    include = tuple(a for a in domain.ATTRIBUTES if a == "shape" or rng.random() < 0.7)
    noun = words[int(rng.integers(len(words)))]
    nouns = {s: FIRST_NOUNS[s][0] for s in domain.SHAPES}
    if rng.random() < p_second:
        state = rng.bit_generator.state  # each text of the row from the same draws: only the noun differs
        texts = {}
        for key, word in (("new", noun), *nouns.items()):
            rng.bit_generator.state = state
            texts[key] = second_writer.caption(attrs, rng, include=include, noun=word)
        new, orig = texts["new"], texts[attrs["shape"]]
        swapped = {s: texts[s] for s in domain.SHAPES}
    else:
        orig = domain.caption(attrs, rng, include=include)
        span = _noun_span(orig, attrs["shape"])
        if span is None:
            return None
        new = (lexicon.rephrase(orig[:span[0]], subs, rng, p_sub) + noun
               + lexicon.rephrase(orig[span[1]:], subs, rng, p_sub))
        swapped = {s: orig[:span[0]] + w + orig[span[1]:] for s, w in nouns.items()}
    color = attrs["color"] if "color" in include else None
    others = [swapped[s] for s in domain.SHAPES if s != attrs["shape"] and (color, s) not in domain.HELDOUT_PAIRS]
    return new, [orig, *others]


def shape_checks(clip, seed: int, n: int = 256) -> dict[str, float]:
    """On captions of a seed training never draws: the share whose table-noun caption is nearest its
    original among it and the other shapes' captions, and the mean cosine to it."""
    table = shape_table(clip)
    return clip_rows.nearest_own(clip, lambda attrs, rng: shape_row(attrs, rng, {}, 0.0, table), seed, "shape", n)


def words_for(clip) -> clip_rows.Words:
    """The stage's table for the input tower `clip` (its tokenizer decides which nouns have pieces of their own)."""
    table = shape_table(clip)
    return clip_rows.Words(words=tuple(w for ws in table.values() for w in ws), trainable=trainable_tokens,
                           start=lambda clip, rows: {}, checks=shape_checks,
                           row=lambda attrs, rng, subs, p_sub: shape_row(attrs, rng, subs, p_sub, table))


def main(argv: list[str] | None = None) -> int:
    return clip_rows.train("clip_shape", words_for, Config, argv, smoke, log,
                           hint="run the stage on clip_place's tower (--init <bundle after clip_place> --out DIR), "
                                "retrain the chain with `python -m train unclip`, ")


if __name__ == "__main__":
    sys.exit(main())
