"""A trial (not in the shipped recipe): the vocabulary stage again, after `clip_bind`, new-token rows only, with
hard negatives and the token states read through the prior.

`clip_vocab` pulls a rephrased text's encoding to its original's: the pooled embedding always, the token
states only when the two have the same number of tokens. Most synonyms do not ("circ|let" for
"circle", "right|most" for "right"), so their token states, which the diffusion prior attends to, were
never trained, and a pooled embedding near the original's can still sit nearer another shape's. This
continuation of the shipped tower trains the same rows (never a row that a training text, a reserved
word or a protected piece uses) with:

- **pooled distillation** as before, and the token states when the lengths match;
- **the token states through the frozen prior** (as `clip_bind` does for word order): the prior's x₀
  prediction from the rephrased caption's encoding must match its prediction from the original's, at
  the same noisy image embedding of the caption's scene, whatever the token counts;
- **hard negatives** (NegCLIP): the rephrased caption's pooled embedding must be nearer its original's
  than the original's with the replaced word swapped for another value of the same attribute (another
  shape, colour, size or position word; never a held-out pair), InfoNCE at temperature `tau`;
- **positions along the axes**: a share of captions say the position as a column word and a row word
  from the lexicon's own position synonyms ("rightmost" with "midway": the right edge's middle),
  distilled to the first-writer phrase, with the position sharing one axis as the negative;
- **multi-word synonyms' other words stay fixed**: the particles of verb phrases ("across" of "go
  across", "by" of "go by") and the words beside the word a synonym stands for ("hand" of "left-hand",
  "light" of "light-green") are no longer trained.

The transformer, the projection and every other row are the input tower's, bit for bit, so every
first-writer caption and training instruction encodes as before (42 of the rows also occur in the second
writer's captions, which `prior_tune` and `clip_bind` read, so those encodings do move). Measured on the tuning sets it drew no better than the shipped tower,
so it is a trial, not a shipped stage (docs/unclip.md, "The vocabulary rows again").

    python -m train clip_vocab_tune --out DIR [--init models/shapes-unclip] [--smoke] [--steps N] [--threads T]

(it refuses to write into models/shapes-unclip itself: give it a copy of the bundle, or a new folder with --init.)
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nodes.shapes import domain
from train import arprior, clip_vocab, lexicon
from train import data as shapes_data
from train.common import SHIPPED, image_embeddings, record_time, start

log = logging.getLogger("train.clip_vocab_tune")

# the first writer's words for each attribute value (a negative swaps one for another value's first word)
VALUE_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": {"circle": ("circle", "disk", "disc", "dot"), "square": ("square", "box", "block"),
              "triangle": ("triangle",), "star": ("star",)},
    "color": {c: (c,) for c in domain.COLORS},
    "size": {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")},
    "position": {"left": ("left",), "right": ("right",), "top": ("top", "upper"), "bottom": ("bottom", "lower"),
                 "center": ("center", "middle")},
}
WORD_VALUE = {w: (attr, v) for attr, vals in VALUE_WORDS.items() for v, ws in vals.items() for w in ws}
# the grid's two axes in the lexicon's own position synonyms (train/lexicon.json: left, right, top,
# bottom, center); "halfway" / "midway" name the middle of either axis
COLUMN_WORDS = {0: ("leftmost", "left-hand"), 1: ("halfway", "midway"), 2: ("rightmost", "right-hand")}
ROW_WORDS = {0: ("uppermost", "topmost", "upmost"), 1: ("halfway", "midway"),
             2: ("lowermost", "bottommost", "nethermost")}
AXIS_TEMPLATES = ("{row} and {col}", "{col} and {row}", "{row}, {col}", "{col}, {row}", "at the {row}, {col}",
                  "{row}-{col}")


@dataclass
class Config:
    out: str = str(SHIPPED)
    init: str = ""  # the bundle whose clip/ (the teacher) and prior/ are read ("" = out)
    steps: int = 600
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 30
    p_sub: float = 0.6  # chance that a word with synonyms is replaced
    p_instruction: float = 0.2  # share of rows that are training instructions (pooled and token states only)
    p_axis: float = 0.3  # share of caption rows whose position is said along the axes
    hidden_weight: float = 1.0
    prior_weight: float = 1.0
    hard_weight: float = 0.3
    tau: float = 0.05
    n_data: int = 3000  # training scenes whose image embeddings give the prior its noisy inputs
    data_seed: int = 0
    seed: int = 17
    threads: int = 1
    log_every: int = 25


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=3, batch=8, n_data=64, log_every=1, warmup=1)


def fixed_words(lex: dict[str, dict[str, list[str]]]) -> set[str]:
    """Words of multi-word synonyms that are not the synonym's meaning: the particles of verb phrases
    ("across" of "go across") and the words beside the word the synonym stands for ("hand" of
    "left-hand", "light" of "light-green"). A word that is a one-word synonym of its own stays trainable."""
    subs = lexicon.substitutions(lex)
    single = {s for syns in subs.values() for s in syns if not re.search(r"[\s-]", s)}
    out: set[str] = set()
    for part, table in lex.items():
        for word, syns in table.items():
            for s in syns:
                words = re.split(r"[\s-]+", s)
                if len(words) < 2:
                    continue
                if part == "verb":
                    out.update(words[1:])
                elif word in words:
                    out.update(w for w in words if w != word)
    return out - single


def trainable_tokens(clip, lex: dict[str, dict[str, list[str]]]) -> set[int]:
    """The rows this stage trains: the lexicon's tokens, less those of training texts (and reserved and
    protected words) and the fixed words of multi-word synonyms, unless a one-word synonym uses them."""
    subs = lexicon.substitutions(lex)
    syns = sorted({s for v in subs.values() for s in v})
    lex_ids = set(clip.tokenize(syns).unique().tolist())
    single = sorted({s for s in syns if not re.search(r"[\s-]", s)})
    single_ids = set(clip.tokenize(single).unique().tolist())
    fixed = sorted(fixed_words(lex))
    fixed_ids = set(clip.tokenize(fixed).unique().tolist()) - single_ids if fixed else set()
    return lex_ids - clip_vocab.frozen_tokens(clip) - fixed_ids


def axis_phrase(position: str, rng: np.random.Generator) -> str:
    """The position named along the grid's axes in the lexicon's position synonyms ("uppermost and midway")."""
    col, row = domain.POSITIONS[position]
    t = AXIS_TEMPLATES[int(rng.integers(len(AXIS_TEMPLATES)))]
    pick = lambda opts: opts[int(rng.integers(len(opts)))]  # noqa: E731
    return t.format(row=pick(ROW_WORDS[row]), col=pick(COLUMN_WORDS[col]))


def _position_span(text: str, position: str) -> tuple[int, int] | None:
    """Where the first-writer caption `text` names `position` (its longest phrase found)."""
    for ph in sorted((*domain.POSITION_PHRASES[position], position), key=len, reverse=True):
        m = re.search(rf"\b{re.escape(ph)}\b", text)
        if m:
            return m.span()
    return None


def _neighbour(position: str, rng: np.random.Generator) -> str:
    """A position sharing a column or a row with `position`: the confusion of an axis phrase."""
    col, row = domain.POSITIONS[position]
    options = [p for p, (c, r) in domain.POSITIONS.items() if p != position and (c == col or r == row)]
    return options[int(rng.integers(len(options)))]


def _has_heldout_pair(text: str) -> bool:
    words = set(re.findall(r"[a-z]+", text))
    return any(c in words and set(VALUE_WORDS["shape"][s]) & words for c, s in domain.HELDOUT_PAIRS)


def rephrase_with_negative(text: str, attrs: dict[str, str] | None, subs: dict[str, list[str]],
                           rng: np.random.Generator, p_sub: float, p_axis: float) -> tuple[str, str | None]:
    """(the caption rephrased, the original with one replaced word swapped for another value's word, or
    None). With probability p_axis (and a scene) the position is said along the axes first."""
    if attrs is not None and "position" in attrs and rng.random() < p_axis:
        span = _position_span(text, attrs["position"])
        if span is not None:  # the axis phrase as it is; the words around it rephrased
            other = domain.POSITION_PHRASES[_neighbour(attrs["position"], rng)][0]
            new = (lexicon.rephrase(text[:span[0]], subs, rng, p_sub) + axis_phrase(attrs["position"], rng)
                   + lexicon.rephrase(text[span[1]:], subs, rng, p_sub))
            return new, text[:span[0]] + other + text[span[1]:]
    negs: list[str] = []
    # word-level synonyms, remembering where each replaced word was in the original
    pieces, last = [], 0
    for m in re.finditer(r"[a-z]+", text):
        w = m.group(0)
        options = subs.get(w)
        pieces.append(text[last:m.start()])
        if options and rng.random() < p_sub:
            pieces.append(options[int(rng.integers(len(options)))])
            if w in WORD_VALUE:
                attr, value = WORD_VALUE[w]
                options = [text[:m.start()] + ws[0] + text[m.end():] for v, ws in VALUE_WORDS[attr].items() if v != value]
                options = [o for o in options if not _has_heldout_pair(o)]
                if options:
                    negs.append(options[int(rng.integers(len(options)))])
        else:
            pieces.append(w)
        last = m.end()
    pieces.append(text[last:])
    new = "".join(pieces)
    return new, (negs[int(rng.integers(len(negs)))] if negs else None)


def batch_rows(rng: np.random.Generator, ds, n: int, subs: dict[str, list[str]], cfg: Config):
    """`n` rows (rephrased, original, negative or None, index of the scene in `ds` or -1 for instructions)
    whose rephrased text differs from the original."""
    rows = []
    while len(rows) < n:
        if rng.random() < cfg.p_instruction:
            (orig,) = clip_vocab.training_texts(rng, 1, 1.0)
            new, neg = rephrase_with_negative(orig, None, subs, rng, cfg.p_sub, 0.0)
            i = -1
        else:
            i = int(rng.integers(len(ds)))
            attrs = ds.attrs(i)
            orig = domain.caption(attrs, rng)
            new, neg = rephrase_with_negative(orig, attrs, subs, rng, cfg.p_sub, cfg.p_axis)
        if new != orig:
            rows.append((new, orig, neg, i))
    return rows


def main(argv: list[str] | None = None) -> int:
    from diffusers import PriorTransformer

    from nodes.unclip.models import load_clip
    from nodes.unclip.models.clip import save_open_clip
    from train.prior import scheduler as prior_scheduler

    cfg, out, timer = start(Config, argv, smoke)
    if out.resolve() == SHIPPED.resolve():
        log.error("clip_vocab_tune is a trial and would rewrite the shipped text tower in place: pass "
                  "--out DIR (a copy of the bundle, or a new folder with --init %s)", SHIPPED)
        return 2
    init = Path(cfg.init) if cfg.init else out
    student = load_clip(init / "clip")
    student.requires_grad_(False)
    teacher_weight = student.model.token_embedding.weight.detach().clone()
    lex = lexicon.load()
    subs = lexicon.substitutions(lex)
    trainable = trainable_tokens(student, lex)
    log.info("%d rows to train (fixed words of multi-word synonyms: %d)", len(trainable), len(fixed_words(lex)))
    prior = PriorTransformer.from_pretrained(init / "prior").eval().requires_grad_(False)
    ds = shapes_data.load(cfg.data_seed, cfg.n_data)
    with torch.no_grad():
        latent = (image_embeddings(student, ds.images64) - prior.clip_mean) / prior.clip_std  # (N, D)
    abar = prior_scheduler().alphas_cumprod  # (T,)
    weight = student.model.token_embedding.weight
    mask, opt, lr = clip_vocab.row_optimizer(weight, trainable, cfg.lr, cfg.warmup, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    vocab_cfg = clip_vocab.Config(p_sub=cfg.p_sub, seed=11)
    emb_scale, hid_scale = clip_vocab.encoding_scales(student, 0.3)
    before = clip_vocab.agreement(student, subs, vocab_cfg)
    for step in range(cfg.steps):
        rows = batch_rows(rng, ds, cfg.batch, subs, cfg)
        b = len(rows)
        neg_rows = [k for k, r in enumerate(rows) if r[2] is not None]
        tok_new = student.tokenize([r[0] for r in rows])
        tok_orig = student.tokenize([r[1] for r in rows] + [rows[k][2] for k in neg_rows])
        with torch.no_grad():
            t = student.encode_tokens(tok_orig)  # the frozen rows of the originals: the teacher's encoding
        s = student.encode_tokens(tok_new)
        t_emb = t.embeds[:b]
        pooled = (s.embeds - t_emb).pow(2).sum(-1).mean() / emb_scale
        same = (tok_new != 0).sum(1) == (tok_orig[:b] != 0).sum(1)
        hidden = torch.zeros(())
        if same.any():
            hidden = (s.hidden[same] - t.hidden[:b][same])[t.mask[:b][same]].pow(2).sum(-1).mean() / hid_scale
        hard = torch.zeros(())
        if neg_rows:
            sn = F.normalize(s.embeds[neg_rows], dim=-1)
            pos = (sn * F.normalize(t_emb[neg_rows], dim=-1)).sum(-1)
            neg = (sn * F.normalize(t.embeds[b:], dim=-1)).sum(-1)
            logits = torch.stack([pos, neg], 1) / cfg.tau
            hard = F.cross_entropy(logits, torch.zeros(len(neg_rows), dtype=torch.long))
        through = torch.zeros(())
        cap = [k for k, r in enumerate(rows) if r[3] >= 0]
        if cap and cfg.prior_weight > 0:
            x0 = latent[torch.tensor([rows[k][3] for k in cap])]
            through = clip_vocab.through_prior(prior, abar, x0, (t_emb[cap], t.hidden[cap], t.mask[cap]),
                                               (s.embeds[cap], s.hidden[cap], s.mask[cap]))
        loss = pooled + cfg.hidden_weight * hidden + cfg.prior_weight * through + cfg.hard_weight * hard
        opt.zero_grad(set_to_none=True)
        loss.backward()
        weight.grad.mul_(mask)
        opt.step()
        lr.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("step %d loss %.4f (pooled %.4f token states %.4f prior %.4f hard %.3f on %d)  %.0f s", step,
                     loss.item(), pooled.item(), hidden.item(), through.item(), hard.item(), len(neg_rows), timer())
    with torch.no_grad():  # every row outside the trained set is the input tower's, exactly
        keep = mask[:, 0] == 0
        weight[keep] = teacher_weight[keep]
    weight.requires_grad_(False)
    after = clip_vocab.agreement(student, subs, vocab_cfg)
    log.info("cosine of a rephrased text's embedding to its original's (fresh texts): %.3f before, %.3f after",
             before, after)
    old_sha = arprior.clip_sha256(init)
    ocfg = json.loads((init / "clip" / "open_clip_config.json").read_text())
    save_open_clip(student.model, out / "clip", ocfg["preprocess_cfg"], ocfg["model_cfg"])
    clip_vocab.carry_ar_prior(out, old_sha, "clip_vocab_tune (new token rows only; trained encodings unchanged)")
    extra = {"cosine_before": round(before, 4), "cosine_after": round(after, 4), "steps": cfg.steps,
             "batch": cfg.batch, "lr": cfg.lr, "p_sub": cfg.p_sub, "p_axis": cfg.p_axis,
             "prior_weight": cfg.prior_weight, "hard_weight": cfg.hard_weight, "tau": cfg.tau,
             "rows": len(trainable), "clip_sha256_before": old_sha}
    record_time(out, "clip_vocab_tune", timer(), extra)
    log.info("saved %s in %.0f s", out / "clip", timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
