"""Stage 1e: teach the text tower the vertical words no training text uses ("high up on the left", "low down").

The first writer says a row with "top", "upper", "up top", "bottom", "lower", "down at the bottom"; the
lexicon's position synonyms add "uppermost", "lowermost", "topmost". Nobody who trained the tower wrote
"high" or "low", the most common English words for a place on the vertical axis, so "high up on the
left" reached the prior through a row no stage ever trained and was drawn on the left edge's middle
(docs/unclip.md, "Vertical place words"). This stage trains only the embedding rows of a small table of such
words (`ROW_WORDS`, written from general English usage: high, higher, highest, above; low, lower down,
lowest, below), as `clip_vocab` does for the lexicon:

- a first-writer caption of a training scene in the top or bottom row has its position phrase said
  with the new words ("high up on the left", "on the right, down low", "low down, centered"), the rest
  of it optionally rephrased with the lexicon's synonyms; it must encode as the original: the pooled
  embedding, the token states when the token count matches, and the frozen prior's x₀ prediction from
  it at the same noisy image embedding of the scene (as `clip_bind` and `clip_vocab_tune` do);
- **hard negatives** (InfoNCE at `tau`): the rephrased caption nearer its original than the original
  said at each of the eight other positions (the miss it fixes: "high up on the left" read as "on the left");
- **"low" is shared**: its row is also the last piece of "bil|low", one of the lexicon's synonyms of
  "move", which `clip_vocab` taught with "low" left frozen (a protected piece). Training instructions
  that say "billow" keep the input tower's encoding of themselves (pooled and token states, weight
  `anchor_weight`); the row of its first piece "bil" (no other lexicon word uses it) is trained with
  them, so the one other word that uses the row reads as it did as nearly as a shared row allows.

Every other row, the transformer and the projection are the input tower's bit for bit, so every prompt
without these words, or a word built from their pieces ("billow", "bellow", "fallow", "bilinear"), encodes
exactly as before (`tests/test_train_place.py`) and no later stage needs re-measuring for it. It continues
the tower after `clip_bind` (it reads the bundle's prior) and refuses a tower it wrote itself.

    python -m train clip_place [--smoke] [--steps N] [--threads T] [--out DIR] [--init DIR] [--again true]
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass

import numpy as np
import torch

from nodes.shapes import domain
from train import clip_rows, clip_vocab, clip_vocab_tune, lexicon
from train.common import SHIPPED

log = logging.getLogger("train.clip_place")

# A row of the 3×3 grid said with vertical words (row 0 is the top). Written from general English
# usage (the hard tuning set's "high up on the left" is among them; no validation prompt was read);
# "lower down", "up above" mix in trained words.
ROW_WORDS: dict[int, tuple[str, ...]] = {
    0: ("high up", "up high", "high", "higher up", "high above", "up above", "highest"),
    2: ("low down", "down low", "low", "lower down", "down below", "below", "lowest"),
}
# the words that name the row: their rows are the ones trained ("up", "down", "lower" are
# training-text or other words whose rows stay as they are)
NEW_WORDS: tuple[str, ...] = ("high", "higher", "highest", "above", "low", "lowest", "below")
# new words whose row another word's last piece shares: {word: the words that share it}
SHARED: dict[str, tuple[str, ...]] = {"low": ("billow",)}
# a column: left, middle, right
COLUMN_WORDS: dict[int, tuple[str, ...]] = {
    0: ("on the left", "to the left", "at the left", "on the left side", "on the left-hand side", "left"),
    1: ("in the middle", "in the center", "centered", "in the centre", "halfway across", ""),
    2: ("on the right", "to the right", "at the right", "on the right side", "on the right-hand side", "right"),
}
TEMPLATES = ("{row} {col}", "{row}, {col}", "{col}, {row}", "{col} and {row}", "{row} and {col}")
CORNER_TEMPLATES = ("{row} in the {side} corner", "in the {side} corner, {row}")


@dataclass
class Config(clip_rows.Config):
    out: str = str(SHIPPED)
    steps: int = 200


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=3, batch=8, n_data=64, n_anchor=2, log_every=1, warmup=1)


def place_phrase(position: str, rng: np.random.Generator) -> str:
    """`position` (a top or bottom row cell) said with a vertical word of `ROW_WORDS` and a column phrase."""
    col, row = domain.POSITIONS[position]
    pick = lambda opts: opts[int(rng.integers(len(opts)))]  # noqa: E731
    vertical = pick(ROW_WORDS[row])
    if col != 1 and rng.random() < 0.2:
        return pick(CORNER_TEMPLATES).format(row=vertical, side="left" if col == 0 else "right")
    column = pick(COLUMN_WORDS[col])
    if not column:
        return vertical
    return pick(TEMPLATES).format(row=vertical, col=column)


def trainable_tokens(clip) -> set[int]:
    """The rows of `NEW_WORDS`' pieces. Every one must be a row no training text, second-writer caption,
    lexicon synonym, reserved word or protected piece uses, but for a piece `SHARED` names (checked, so that a
    change of the training texts, of the second writer or of the lexicon cannot make this stage move a trained
    row unnoticed); with a shared piece, the other pieces of the words sharing it ("bil" of "bil|low"), which
    only those words use, so that the anchor can keep their encoding."""
    frozen = clip_vocab.frozen_tokens(clip) | clip_rows.second_writer_tokens(clip)
    lex_ids = clip_rows.lexicon_ids(clip)
    ids: set[int] = set()
    for word in NEW_WORDS:
        pieces = clip.token_ids(word)
        taken = [i for i in pieces if i in frozen or i in lex_ids]
        if taken and word not in SHARED:
            raise ValueError(f"{word!r} uses a row that trained texts or the lexicon already use: {taken}")
        ids.update(pieces)
        for other in SHARED.get(word, ()):  # the sharing word's other pieces may move to keep its meaning
            rest = [i for i in clip.token_ids(other) if i not in ids]
            if any(i in frozen for i in rest):
                raise ValueError(f"{other!r} (sharing {word!r}'s row) has a piece that training texts use")
            ids.update(rest)
    return ids


def _start_rows(clip, trainable: set[int]) -> dict[int, torch.Tensor]:
    """A start for each new row: the embedding of the first-writer word of its row ("top" or "bottom")."""
    emb = clip.model.token_embedding.weight
    out = {}
    for row, anchor in ((0, "top"), (2, "bottom")):
        (a,) = clip.tokenize([anchor])[0][1:2].tolist()
        for phrase in ROW_WORDS[row]:
            for w in phrase.split():
                tok = clip.tokenize([w])[0]
                for i in tok[tok != 0][1:-1].tolist():
                    if i in trainable and i not in out:
                        out[i] = emb[a].detach().clone()
    return out


def place_row(attrs: dict[str, str], rng: np.random.Generator, subs: dict[str, list[str]],
              p_sub: float) -> tuple[str, list[str]] | None:
    """(a first-writer caption of `attrs` with its position said by `place_phrase` and its other words
    maybe rephrased, the original caption said at each of the other eight positions first-writer style,
    the original itself first) or None when the scene is in the middle row."""
    if domain.POSITIONS[attrs["position"]][1] == 1:
        return None
    include = tuple(a for a in domain.ATTRIBUTES if a == "position" or rng.random() < 0.7)
    orig = domain.caption(attrs, rng, include=include)
    span = clip_vocab_tune._position_span(orig, attrs["position"])
    if span is None:
        return None
    new = (lexicon.rephrase(orig[:span[0]], subs, rng, p_sub) + place_phrase(attrs["position"], rng)
           + lexicon.rephrase(orig[span[1]:], subs, rng, p_sub))
    others = [orig[:span[0]] + domain.POSITION_PHRASES[p][0] + orig[span[1]:] for p in domain.POSITION_NAMES
              if p != attrs["position"]]
    return new, [orig, *others]


def anchor_texts(rng: np.random.Generator, n: int) -> list[str]:
    """Training instructions that move the object, said with "billow" (the lexicon word sharing "low")."""
    out: list[str] = []
    while len(out) < n:
        (text,) = clip_vocab.training_texts(rng, 1, 1.0)
        m = re.search(r"\b(move|shift|push)\b", text)
        if m:
            out.append(text[:m.start()] + "billow" + text[m.end():])
    return out


def place_checks(clip, seed: int, n: int = 256) -> dict[str, float]:
    """On captions of a seed training never draws: the share whose place-word caption is nearest its own
    position's first-writer caption among the nine, and the mean cosine to it."""
    subs = lexicon.substitutions(lexicon.load())
    return clip_rows.nearest_own(clip, lambda attrs, rng: place_row(attrs, rng, subs, 0.0), seed, "place", n)


WORDS = clip_rows.Words(words=NEW_WORDS, trainable=trainable_tokens, start=_start_rows, row=place_row,
                        checks=place_checks, anchors=anchor_texts, anchor_name="billow")


def main(argv: list[str] | None = None) -> int:
    return clip_rows.train("clip_place", lambda clip: WORDS, Config, argv, smoke, log,
                           hint="run the stage on clip_bind's tower (--init <bundle after clip_bind> --out DIR), "
                                "retrain the chain with `python -m train unclip`, ")


if __name__ == "__main__":
    sys.exit(main())
