"""Synonyms of the training captions' words, derived mechanically from WordNet 3.0.

The shipped text tower knows only the words of the first caption writer (`domain.caption`) and of
the training instructions (`edits.TEMPLATES[...]["train"]`). People write "giant", "crimson",
"disc-shaped" or "enlarge". Rather than hand-pick synonyms (whoever writes them has seen some
evaluation prompt), they are read from a public lexicon by one fixed rule per part of speech:

- **adjectives** (sizes, colours, places): the word's first adjective sense (WordNet orders senses by
  frequency); its lemmas, and, when that sense heads a cluster, the lemmas of its similar-to satellites;
- **colour nouns** ("on red"): the colour word's first noun sense in WordNet's `noun.attribute` file
  (the colour, not the fruit or the person), its lemmas and its direct hyponyms' lemmas (the shades);
- **shape nouns**: every noun sense in WordNet's `noun.shape` file, lemmas and direct hyponyms;
- **place nouns** ("the top", "the center"): the first noun sense's lemmas;
- **instruction verbs**: the first verb sense's lemmas and its direct troponyms.

A synonym is dropped when it is itself a word the first writer or the training instructions use
(its meaning is already fixed, maybe as another value), or when it is one of `RESERVED` (words that
trained LoRAs and identifiers own, e.g. "pink"). Word-final pieces of
synonyms that are English words themselves are listed as protected (`protected_pieces`). What is
left is written to `lexicon.json` beside
this file (committed; WordNet is needed only to regenerate it):

    apt-get install wordnet-base        # Debian's WordNet 3.0 data, /usr/share/wordnet
    python -m train.lexicon [--wordnet DIR] [--out train/lexicon.json]

WordNet 3.0 is © Princeton University, under the WordNet License (free use with its notice kept),
which `lexicon.json` repeats.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LEXICON = HERE / "lexicon.json"
WORDNET = Path("/usr/share/wordnet")
NOUN_ATTRIBUTE, NOUN_SHAPE = 7, 25  # WordNet's lexicographer file numbers of noun.attribute, noun.shape
RESERVED = frozenset({"pink", "sks"})  # the pink LoRA's colour word, DreamBooth's default identifier

# The first writer's and the training instructions' words, by what they name. Each key is looked up
# in WordNet with the part of speech given; its synonyms stand in for it in a caption.
ADJECTIVES: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"), "large": ("large", "big", "huge"),
    "red": ("red",), "orange": ("orange",), "yellow": ("yellow",), "green": ("green",), "blue": ("blue",),
    "purple": ("purple",), "white": ("white",), "black": ("black",),
    "left": ("left",), "right": ("right",), "top": ("top", "upper"), "bottom": ("bottom", "lower"),
    "center": ("center", "middle"),
}
COLOR_NOUNS = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
SHAPE_NOUNS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disk", "disc", "dot"), "square": ("square", "box", "block"), "triangle": ("triangle",),
    "star": ("star",),
}
PLACE_NOUNS = ("top", "bottom", "center", "middle", "corner", "edge", "side")
VERBS = ("enlarge", "increase", "shrink", "reduce", "move", "shift", "push", "paint", "color", "recolor",
         "replace")


@dataclass
class Synset:
    offset: str
    lexfile: int
    kind: str  # n, v, a, s (adjective satellite), r
    lemmas: list[str]
    pointers: list[tuple[str, str, str]] = field(default_factory=list)  # (symbol, offset, pos)


class WordNet:
    """The few lookups the rule needs, read straight from WordNet's `index.*` and `data.*` files."""

    FILES = {"n": "noun", "v": "verb", "a": "adj", "s": "adj"}

    def __init__(self, root: Path = WORDNET):
        if not (root / "data.noun").is_file():
            raise FileNotFoundError(f"no WordNet data in {root}: install Debian's wordnet-base "
                                    "(apt-get install wordnet-base) or pass --wordnet DIR")
        self.root = root
        self._index: dict[str, dict[str, list[str]]] = {}
        self._data: dict[str, dict[str, str]] = {}

    def _load(self, pos: str) -> None:
        name = self.FILES[pos]
        if name in self._index:
            return
        index: dict[str, list[str]] = {}
        for line in (self.root / f"index.{name}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue
            f = line.split()
            n_synsets, n_ptrs = int(f[2]), int(f[3])
            index[f[0]] = f[6 + n_ptrs:6 + n_ptrs + n_synsets]
        data = {line[:8]: line for line in (self.root / f"data.{name}").read_text(encoding="latin-1").splitlines()
                if not line.startswith(" ")}
        self._index[name], self._data[name] = index, data

    def senses(self, lemma: str, pos: str) -> list[Synset]:
        """The synsets of `lemma` as part of speech `pos` (n, v, a), most frequent sense first."""
        self._load(pos)
        name = self.FILES[pos]
        return [self.synset(o, pos) for o in self._index[name].get(lemma.replace(" ", "_"), [])]

    def is_lemma(self, word: str) -> bool:
        """Whether `word` is a WordNet lemma of any part of speech."""
        for pos in ("n", "v", "a"):
            self._load(pos)
        key = word.replace(" ", "_")
        return any(key in self._index[name] for name in ("noun", "verb", "adj"))

    def synset(self, offset: str, pos: str) -> Synset:
        self._load(pos)
        f = self._data[self.FILES[pos]][offset].split(" | ")[0].split()
        n_words = int(f[3], 16)
        lemmas = [_clean(f[4 + 2 * i]) for i in range(n_words)]
        k = 4 + 2 * n_words
        n_ptrs = int(f[k])
        ptrs = [(f[k + 1 + 4 * i], f[k + 2 + 4 * i], f[k + 3 + 4 * i]) for i in range(n_ptrs)]
        return Synset(f[0], int(f[1]), f[2], lemmas, ptrs)

    def related(self, s: Synset, symbol: str) -> list[Synset]:
        return [self.synset(o, "a" if p in "as" else p) for sym, o, p in s.pointers if sym == symbol]


def _clean(word: str) -> str:
    """WordNet's spelling of a lemma → plain text: underscores to spaces, adjective markers off."""
    return re.sub(r"\([a-z]+\)$", "", word).replace("_", " ").lower()


def _adjective(wn: WordNet, word: str) -> list[str]:
    senses = wn.senses(word, "a")
    if not senses:
        return []
    first = senses[0]
    out = list(first.lemmas)
    if first.kind == "a":  # a cluster head: its satellites are its near synonyms
        out += [w for s in wn.related(first, "&") for w in s.lemmas]
    return out


def _with_hyponyms(wn: WordNet, s: Synset) -> list[str]:
    return list(s.lemmas) + [w for h in wn.related(s, "~") for w in h.lemmas]


def derive(wn: WordNet, first_words: set[str]) -> dict[str, dict[str, list[str]]]:
    """{part: {first-writer word: [synonyms]}} by the module's rule."""
    raw: dict[str, dict[str, list[str]]] = {"adjective": {}, "noun": {}, "verb": {}}
    for words in ADJECTIVES.values():
        for w in words:
            raw["adjective"][w] = _adjective(wn, w)
    for w in COLOR_NOUNS:
        senses = [s for s in wn.senses(w, "n") if s.lexfile == NOUN_ATTRIBUTE]
        raw["noun"][w] = _with_hyponyms(wn, senses[0]) if senses else []
    for words in SHAPE_NOUNS.values():
        for w in words:
            raw["noun"][w] = [x for s in wn.senses(w, "n") if s.lexfile == NOUN_SHAPE for x in _with_hyponyms(wn, s)]
    for w in PLACE_NOUNS:
        senses = wn.senses(w, "n")
        raw["noun"].setdefault(w, []).extend(senses[0].lemmas if senses else [])
    for w in VERBS:
        senses = wn.senses(w, "v")
        raw["verb"][w] = _with_hyponyms(wn, senses[0]) if senses else []
    out: dict[str, dict[str, list[str]]] = {}
    for part, table in raw.items():
        out[part] = {}
        for w, syns in table.items():
            keep = sorted({s for s in syns if s != w and s not in first_words and s not in RESERVED})
            if keep:
                out[part][w] = keep
    return out


def protected_pieces(wn: WordNet, synonyms: dict[str, dict[str, list[str]]]) -> list[str]:
    """Word-final BPE pieces of the synonyms that are English words of their own but no synonym ("i" in
    "part|i-color", "like" in "elf|like", "low" in "shal|low"): the vocabulary stage must not give
    them a meaning, or a prompt using the word itself ("i want", "a star like…") would change."""
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()
    words = {w for t in synonyms.values() for syns in t.values() for s in syns for w in re.split(r"[\s-]+", s)}
    out = set()
    for w in words:
        for i in tok.encode(w):
            piece = tok.decoder[i]
            if piece.endswith("</w>"):
                text = piece[:-4]
                if text != w and text not in words and (len(text) <= 2 or wn.is_lemma(text)):
                    out.add(text)
    return sorted(out)


def first_writer_words() -> set[str]:
    """Every word the first caption writer or the training instructions can write."""
    from nodes.shapes import domain, edits

    words: set[str] = set()
    rng = np.random.default_rng(0)
    for scene in domain.sample_scenes(0, 4000, split="train"):
        words.update(re.findall(r"[a-z]+(?:-[a-z]+)*", domain.caption(scene, rng).lower()))
    for kind in edits.EDIT_KINDS:
        for e in edits.sample_edits(1, 600, phrasing="train"):
            if e.kind == kind:
                words.update(re.findall(r"[a-z]+(?:-[a-z]+)*", e.instruction.lower()))
    return words


def load(path: Path = LEXICON) -> dict[str, dict[str, list[str]]]:
    """The committed lexicon: {"adjective"|"noun"|"verb": {word: [synonyms]}}."""
    return json.loads(path.read_text())["synonyms"]


def load_protected(path: Path = LEXICON) -> list[str]:
    """The committed lexicon's protected word pieces (see `protected_pieces`)."""
    return json.loads(path.read_text())["protected_pieces"]


def substitutions(lexicon: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """{first-writer word: synonyms} over all parts of speech (a word's lists merged)."""
    out: dict[str, list[str]] = {}
    for table in lexicon.values():
        for w, syns in table.items():
            out.setdefault(w, [])
            out[w] += [s for s in syns if s not in out[w]]
    return out


def rephrase(text: str, subs: dict[str, list[str]], rng: np.random.Generator, p: float = 0.5) -> str:
    """`text` with each word that has synonyms replaced, with probability `p`, by a random one."""
    def swap(m: re.Match) -> str:
        options = subs.get(m.group(0))
        if not options or rng.random() >= p:
            return m.group(0)
        return options[int(rng.integers(len(options)))]
    return re.sub(r"[a-z]+", swap, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.lexicon", description=__doc__.split("\n\n")[0])
    ap.add_argument("--wordnet", type=Path, default=WORDNET, help="WordNet 3.0 dict folder (default: Debian's)")
    ap.add_argument("--out", type=Path, default=LEXICON)
    args = ap.parse_args(argv)
    wn = WordNet(args.wordnet)
    first = first_writer_words()
    syn = derive(wn, first)
    doc = {"source": "WordNet 3.0 (Princeton University), Debian package wordnet-base; rule in train/lexicon.py",
           "license": "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. Permission to use, "
                      "copy, modify and distribute this software and database and its documentation for any purpose "
                      "and without fee or royalty is hereby granted, provided that you agree to comply with the "
                      "copyright notice and statements, including the disclaimer, of the WordNet License.",
           "synonyms": syn, "protected_pieces": protected_pieces(wn, syn)}
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    n = sum(len(v) for t in syn.values() for v in t.values())
    print(f"wrote {args.out}: {n} synonyms of {sum(len(t) for t in syn.values())} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
