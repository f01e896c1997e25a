"""Does the text tower read each lexicon synonym as its own word? (by hand; not a test; text only, seconds)

    PYTHONPATH=. .venv/bin/python bench/vocab_probe.py --threads 1 [--models DIR] [--n 16] [--weak 0.8]

Two checks on the pooled text embedding, no prior or image involved:

- **synonyms**: for every synonym of a shape, colour, size or position word (`train/lexicon.json`),
  `n` first-writer captions that use the word are rewritten with the synonym in its place. A caption
  reads right when its embedding is nearer the original caption than the original with the word
  swapped for each other value of the attribute (the other shapes, colours, the other size, the other
  positions): NegCLIP's hard negatives, as a nearest-neighbour test. Printed per attribute, with the
  synonyms read right in fewer than `--weak` of their captions.
- **positions along the axes**: captions that say a position along the grid's two axes (the hard
  tuning set's position phrases, `eval/_tuning_hard_prompts.py`, a tuning set) against the same
  caption with each of the nine first-writer position phrases: which one is nearest.

It also says, for the words of those position phrases, whether each token is a row the vocabulary
stages train, one training texts fix, or neither (a row no stage has ever trained).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the first writer's words for each value, as they appear in its captions
VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": {"circle": ("circle", "disk", "disc", "dot"), "square": ("square", "box", "block"),
              "triangle": ("triangle",), "star": ("star",)},
    "color": {c: (c,) for c in ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")},
    "size": {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")},
    "position": {"left": ("left",), "right": ("right",), "top": ("top", "upper"), "bottom": ("bottom", "lower"),
                 "center": ("center", "middle")},
}


def captions_with(word: str, n: int, rng: np.random.Generator, tries: int = 4000) -> list[str]:
    """Up to `n` first-writer captions of training scenes that use `word` as a whole word."""
    from nodes.shapes import domain

    out: list[str] = []
    pat = re.compile(rf"\b{re.escape(word)}\b")
    for _ in range(tries):
        c = domain.caption(domain.sample_scene(rng, "train"), rng)
        if pat.search(c):
            out.append(c)
            if len(out) == n:
                break
    return out


def swap(text: str, word: str, new: str) -> str:
    return re.sub(rf"\b{re.escape(word)}\b", new, text, count=1)


def synonym_table(clip, n: int, seed: int = 5) -> dict[str, dict[str, float]]:
    """{attribute: {"word→synonym": share of captions read right}}."""
    import torch
    import torch.nn.functional as F

    from train import lexicon

    subs = lexicon.substitutions(lexicon.load())
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for attr, values in VALUES.items():
        for value, words in values.items():
            others = [ws[0] for v, ws in values.items() if v != value]
            for word in words:
                syns = subs.get(word, [])
                if not syns:
                    continue
                caps = captions_with(word, n, rng)
                if not caps:
                    continue
                with torch.no_grad():
                    orig = F.normalize(clip.encode_text(caps).embeds, dim=-1)
                    negs = torch.stack([F.normalize(clip.encode_text([swap(c, word, o) for c in caps]).embeds, dim=-1)
                                        for o in others])  # (O, N, D)
                    for s in syns:
                        e = F.normalize(clip.encode_text([swap(c, word, s) for c in caps]).embeds, dim=-1)
                        pos = (e * orig).sum(-1)
                        neg = (e[None] * negs).sum(-1).amax(0)
                        out[attr][f"{word}→{s}"] = (pos > neg).float().mean().item()
    return out


def axis_table(clip) -> tuple[float, list[tuple[str, str, str]]]:
    """Share of the hard tuning set's axis position phrases whose caption is nearest its own position's."""
    import torch
    import torch.nn.functional as F

    from eval import _tuning_hard_prompts as hard
    from nodes.shapes import domain

    frames = ("a big red star {p} on a white background", "a small blue circle {p}, black background",
              "there is a tiny green square that is green, {p}", "a picture of a yellow triangle, large, {p}, on purple")
    names = list(domain.POSITION_NAMES)
    misses, right, total = [], 0, 0
    with torch.no_grad():
        for f in frames:
            canon = F.normalize(clip.encode_text([f.format(p=domain.POSITION_PHRASES[p][0]) for p in names]).embeds,
                                dim=-1)
            for pos, phrases in hard.POSITION_WORDS.items():
                e = F.normalize(clip.encode_text([f.format(p=ph) for ph in phrases]).embeds, dim=-1)
                got = (e @ canon.T).argmax(-1).tolist()
                for ph, g in zip(phrases, got, strict=True):
                    total += 1
                    right += names[g] == pos
                    if names[g] != pos:
                        misses.append((ph, pos, names[g]))
    return right / total, misses


def token_kinds(clip, words: list[str]) -> dict[str, list[tuple[str, str]]]:
    """For each word, its BPE pieces and what fixes each: a training text ("trained text"), the lexicon's
    protected pieces ("protected"), the vocabulary stages ("vocab row", "vocab row, fixed since
    clip_vocab_tune" for the other words of multi-word synonyms), `clip_place`'s vertical words ("clip_place
    row", whatever fixed the piece before), only `clip_bind`'s second-writer captions ("second writer"), or
    nothing ("never trained")."""
    from open_clip.tokenizer import SimpleTokenizer

    from nodes.shapes import captions, domain
    from train import clip_place, clip_vocab, clip_vocab_tune, lexicon

    lex = lexicon.load()
    texts = clip_vocab.training_texts(np.random.default_rng(0), 2000, 0.3) + [""]
    trained = set(clip.tokenize(texts).unique().tolist())
    protected = set(clip.tokenize(lexicon.load_protected() + sorted(lexicon.RESERVED)).unique().tolist()) - trained
    syns = sorted({s for v in lexicon.substitutions(lex).values() for s in v})
    lex_ids = set(clip.tokenize(syns).unique().tolist())
    tune = clip_vocab_tune.trainable_tokens(clip, lex)
    place = clip_place.trainable_tokens(clip)
    rng = np.random.default_rng(0)
    second = set(clip.tokenize([captions.caption(domain.sample_scene(rng, "train").attributes(), rng,
                                                 domain.random_subset(rng)) for _ in range(3000)]).unique().tolist())
    tok = SimpleTokenizer()
    out = {}
    for w in words:
        kinds = []
        for i in tok.encode(w):
            kind = ("clip_place row" if i in place else "trained text" if i in trained else
                    "protected" if i in protected else
                    "vocab row" if i in tune else "vocab row, fixed since clip_vocab_tune" if i in lex_ids
                    else "second writer" if i in second else "never trained")
            kinds.append((tok.decoder[i], kind))
        out[w] = kinds
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--n", type=int, default=16, help="captions per synonym")
    ap.add_argument("--weak", type=float, default=0.8, help="list synonyms read right in fewer than this share")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    from nodes.unclip.models import load_clip

    torch.set_num_threads(args.threads)
    clip = load_clip(args.models / "shapes-unclip")
    table = synonym_table(clip, args.n)
    print("synonyms read as their own word (nearer the original caption than any value-swapped one):")
    for attr, res in table.items():
        vals = list(res.values())
        weak = sorted((v, k) for k, v in res.items() if v < args.weak)
        print(f"  {attr:9s} {np.mean(vals):.3f} over {len(vals)} synonyms; weak ({len(weak)}): "
              + ", ".join(f"{k} {v:.2f}" for v, k in weak))
    share, misses = axis_table(clip)
    print(f"axis position phrases nearest their own position: {share:.3f}")
    for ph, want, got in sorted(set(misses)):
        print(f"  {ph!r} ({want}) → {got}")
    from eval import _tuning_hard_prompts as hard

    words = sorted({w for phs in hard.POSITION_WORDS.values() for ph in phs for w in re.findall(r"[a-z-]+", ph)})
    print("tokens of those phrases:")
    for w, pieces in token_kinds(clip, words).items():
        print(f"  {w}: " + ", ".join(f"{p} ({k})" for p, k in pieces))
    return 0


if __name__ == "__main__":
    sys.exit(main())
