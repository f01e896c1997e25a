"""What the token-row stages share (`clip_place`, `clip_shape`): train a few CLIP token-embedding rows, nothing else.

A token-row stage teaches the text tower a small table of words by training only the embedding rows of
their pieces, so every prompt without them encodes bit for bit as before and no later model needs
retraining. A stage is a `Words` table: which rows it trains, where each row starts, and how to make a
training row from a first-writer caption of a training scene (the caption said with the stage's words,
and its targets: the original first, then the hard negatives it must be further from). `train` runs the
loop every such stage uses:

- the rephrased caption must encode as the original: the pooled embedding, the token states when the
  token count matches, the frozen prior's x₀ prediction from it at the same noisy image embedding of the
  scene (`clip_vocab.through_prior`), and, with `decoder_weight`, the frozen decoder's prediction at the
  same noisy 32 px render and image embedding (`clip_vocab.through_decoder`: the decoder attends to the
  same token states), in units of the distance between a caption's prediction and its first negative's
  (`decoder_scale`);
- **hard negatives** (InfoNCE at `tau`): nearer the original than each negative;
- **anchors**: texts of other words that share a trained row ("billow" for "low") keep the input tower's
  encoding of themselves (pooled and token states).

Every row outside the table is copied back from the input tower at the end, and a stage refuses a tower
its own training log names as its output (`refuse_own_output`).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from train import arprior, clip_vocab, lexicon
from train import data as shapes_data
from train.common import image_embeddings, record_time, start

# (caption said with the stage's words, [the original, then its hard negatives]) or None (no row here)
Row = tuple[str, list[str]] | None


@dataclass
class Config:
    out: str = ""
    init: str = ""  # the bundle whose clip/ (the teacher), prior/ (and decoder) are read ("" = out)
    steps: int = 200
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 20
    p_sub: float = 0.4  # chance that another word of the caption with synonyms is replaced
    hidden_weight: float = 1.0
    prior_weight: float = 1.0
    decoder_weight: float = 0.0  # the frozen decoder's prediction from the student's encoding (0: not read)
    hard_weight: float = 0.3
    anchor_weight: float = 1.0
    n_anchor: int = 8  # anchor texts a step
    tau: float = 0.05
    n_data: int = 3000  # training scenes whose image embeddings give the prior its noisy inputs
    data_seed: int = 0
    seed: int = 23
    threads: int = 1
    log_every: int = 25
    again: bool = False  # run on a tower this stage wrote (refused otherwise: `refuse_own_output`)


@dataclass
class Words:
    """A token-row stage's table (`words`, for the log). `trainable(clip)`: the row ids it trains; `start(clip, rows)`: a start for
    each (id → row); `row(attrs, rng, subs, p_sub)`: a training row from a training scene's attributes;
    `anchors(rng, n)`: texts that keep the input tower's encoding (`anchor_name` in the log); `checks(clip,
    seed)`: the stage's own text-side figures on fresh captions."""

    words: tuple[str, ...]
    trainable: Callable[[object], set[int]]
    start: Callable[[object, set[int]], dict[int, torch.Tensor]]
    row: Callable[[dict[str, str], np.random.Generator, dict[str, list[str]], float], Row]
    checks: Callable[[object, int], dict[str, float]]
    anchors: Callable[[np.random.Generator, int], list[str]] = lambda rng, n: []
    anchor_name: str = "anchor"


# A general English word list: the letters-only words, lower-cased (proper nouns included), of SCOWL's "american-english" (Debian's
# wamerican 2020.12.07-2, /usr/share/dict/words; 73,445 words; copyright and licence in
# train/english_words.LICENSE). Shipped so the rule that reads it runs offline and the same everywhere.
ENGLISH_WORDS = Path(__file__).with_name("english_words.txt.gz")


@lru_cache(maxsize=1)
def english_words() -> tuple[str, ...]:
    """The shipped general English word list (`ENGLISH_WORDS`), sorted."""
    with gzip.open(ENGLISH_WORDS, "rt", encoding="utf-8") as f:
        return tuple(f.read().split())


@lru_cache(maxsize=2)  # the tokenizer is all it reads; 73k words take a few seconds
def english_users(clip) -> dict[int, frozenset[str]]:
    """{token id: the words of the English word list whose tokenisation uses it}."""
    users: dict[int, set[str]] = {}
    words = english_words()
    for k in range(0, len(words), 4096):
        chunk = words[k:k + 4096]
        for w, tok in zip(chunk, clip.tokenize(list(chunk)).tolist(), strict=True):
            for i in [t for t in tok if t != 0][1:-1]:  # between the start and end-of-text tokens
                users.setdefault(i, set()).add(w)
    return {i: frozenset(ws) for i, ws in users.items()}


def piece(clip, i: int) -> str:
    """The BPE piece of token id `i` ("cube</w>": a word's last piece ends in "</w>")."""
    tok = clip.tokenizer
    return tok.decoder[i] if hasattr(tok, "decoder") else tok.convert_ids_to_tokens(i)


def lexicon_synonyms() -> list[str]:
    """Every synonym of the lexicon (`lexicon.substitutions`), sorted."""
    return sorted({s for v in lexicon.substitutions(lexicon.load()).values() for s in v})


def lexicon_ids(clip) -> set[int]:
    """Every token id of the lexicon's synonyms."""
    return set(clip.tokenize(lexicon_synonyms()).unique().tolist())


def second_writer_tokens(clip, n: int = 4000) -> set[int]:
    """Token ids of the second caption writer's captions (`nodes/shapes/captions.py`, which `prior_tune` and
    `clip_bind` read): its tables' phrases and `n` captions (seed 0)."""
    from nodes.shapes import captions, domain

    phrases = [p.replace("{}", "").replace("{", "").replace("}", "") for table in
               (captions.SIZES, captions.COLORS, captions.SHAPES, captions.POSITIONS)
               for opts in table.values() for p in opts]
    phrases += [p.replace("{}", "") for frames in (captions.PLACE_FRAMES, captions.CENTER_FRAMES,
                captions.BACKGROUND_AFTER, captions.BACKGROUND_FIRST, captions.FRAMES,
                captions.NO_SHAPE) for p in frames]
    rng = np.random.default_rng(0)
    phrases += [captions.caption(domain.sample_scene(rng, "train").attributes(), rng) for _ in range(n)]
    return clip_vocab.token_set(clip, phrases)


def ancestors(logs: dict, sha: str) -> set[str]:
    """The hashes of the towers the tower `sha` was continued from, as a training log tells them: the entry
    that wrote `sha` names its input (`clip_sha256_before`) and, since row stages record it, the input's own
    ancestry (`clip_sha256_ancestors`, which survives a later run of the same stage replacing the entry)."""
    writers = {e["clip_sha256"]: e for e in logs.values() if isinstance(e, dict) and e.get("clip_sha256")}
    out: set[str] = set()
    todo = [sha]
    while todo:
        e = writers.get(todo.pop(), {})
        for h in [e.get("clip_sha256_before"), *e.get("clip_sha256_ancestors", ())]:
            if h and h not in out:
                out.add(h)
                todo.append(h)
    return out


def refuse_own_output(bundle: Path, stage: str, hint: str) -> None:
    """Refuse a tower `stage` wrote, or one that later stages continued from it (its training log's entry
    names its hash, and the tower's ancestry, `ancestors`, holds it): run again on it, the stage would start
    from its own trained rows, anchor shared words to its own drifted reading, and measure "before" on the
    trained tower."""
    path = bundle / "training_log.json"
    logs = json.loads(path.read_text()) if path.exists() else {}
    own = logs.get(stage, {}).get("clip_sha256")
    sha = arprior.clip_sha256(bundle)
    if own and (own == sha or own in ancestors(logs, sha)):
        raise SystemExit(f"{bundle / 'clip'} is {stage}'s own output (or continues it); {hint}or give --again true "
                         "to continue this tower's rows anyway")


def carry_log(init: Path, out: Path) -> None:
    """With `--init` another bundle than `--out`, copy the input bundle's text-tower entries (`clip` and the
    `clip_*` stages) into the output's log (the input's win over any the output folder had): the output tower
    continues the input's, and `refuse_own_output` follows its ancestry (`clip_sha256_before` links) through
    this log only. The entries of the models the stage does not write (prior, decoder, …) stay the output
    folder's own."""
    if init.resolve() == out.resolve():
        return
    src, dst = init / "training_log.json", out / "training_log.json"
    if not src.exists():
        return
    logs = json.loads(dst.read_text()) if dst.exists() else {}
    logs.update({k: v for k, v in json.loads(src.read_text()).items() if k == "clip" or k.startswith("clip_")})
    out.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(logs, indent=2) + "\n")


@torch.no_grad()
def nearest_own(clip, row: Callable[[dict[str, str], np.random.Generator], Row], seed: int, name: str,
                n: int = 256) -> dict[str, float]:
    """A stage's text check on `n` training scenes of a seed training never draws: the share of rows whose
    rephrased caption is nearest its original among its targets, and the mean cosine to the original
    (`{name}_nearest_own`, `{name}_cosine`)."""
    from nodes.shapes import domain

    rng = np.random.default_rng(20_000 + seed)
    right, cos, k = 0, 0.0, 0
    while k < n:
        got = row(domain.sample_scene(rng, "train").attributes(), rng)
        if got is None:
            continue
        e = F.normalize(clip.encode_text([got[0]]).embeds, dim=-1)
        c = F.normalize(clip.encode_text(got[1]).embeds, dim=-1)
        sims = (e @ c.T)[0]
        right += int(sims.argmax().item() == 0)
        cos += sims[0].item()
        k += 1
    return {f"{name}_nearest_own": round(right / n, 4), f"{name}_cosine": round(cos / n, 4)}


@torch.no_grad()
def decoder_scale(clip, decoder, abar, x32, img, ds, words: Words, subs, cfg: Config, n: int = 64) -> float:
    """The decoder term's unit: the MSE between the frozen decoder's predictions from a caption and from its
    first negative (its hard negatives name another value: another shape, another place), on `n` rows
    of a seed training never draws. A student caption as far from its original as that scores 1."""
    rng = np.random.default_rng(30_000 + cfg.seed)
    rows: list[tuple[list[str], int]] = []
    while len(rows) < n:
        i = int(rng.integers(len(ds)))
        got = words.row(ds.attrs(i), rng, subs, 0.0)
        if got is not None and len(got[1]) > 1:
            rows.append((got[1], i))
    a = clip.encode_text([r[0][0] for r in rows])
    b = clip.encode_text([r[0][1] for r in rows])
    idx = torch.tensor([r[1] for r in rows])
    return clip_vocab.through_decoder(decoder, abar, x32[idx], img[idx], (a.embeds, a.hidden, a.mask),
                                      (b.embeds, b.hidden, b.mask)).item()


def train(name: str, make_words: Callable[[object], Words], cfg_cls: type[Config], argv: list[str] | None, smoke,
          log: logging.Logger, hint: str = "") -> int:
    """Run the token-row stage `name`, whose table is `make_words(input tower)`, with the config `cfg_cls` parsed
    from `argv` (see the module docstring); `hint`: what to run instead when `refuse_own_output` refuses."""
    from diffusers import PriorTransformer

    from nodes.unclip.models import load_clip
    from nodes.unclip.models.clip import save_open_clip
    from train.prior import scheduler as prior_scheduler

    cfg, out, timer = start(cfg_cls, argv, smoke)
    init = Path(cfg.init) if cfg.init else out
    if not cfg.again:
        refuse_own_output(init, name, hint)
    student = load_clip(init / "clip")
    student.requires_grad_(False)
    teacher_weight = student.model.token_embedding.weight.detach().clone()
    subs = lexicon.substitutions(lexicon.load())
    words = make_words(student)
    trainable = words.trainable(student)
    log.info("%d rows to train: %s", len(trainable), ", ".join(words.words))
    prior = PriorTransformer.from_pretrained(init / "prior").eval().requires_grad_(False)
    ds = shapes_data.load(cfg.data_seed, cfg.n_data)
    with torch.no_grad():
        img = image_embeddings(student, ds.images64)  # (N, D)
        latent = (img - prior.clip_mean) / prior.clip_std
    abar = prior_scheduler().alphas_cumprod
    decoder = None
    if cfg.decoder_weight > 0:
        from nodes.unclip.models import load_decoder
        from nodes.unclip.models.decoder import alphas_cumprod

        decoder = load_decoder(init)
        decoder.text_proj.requires_grad_(False)
        decoder.unet.requires_grad_(False)
        dec_abar = alphas_cumprod(decoder)
        x32 = shapes_data.to_tensor(ds.images32) * 2 - 1  # (N, 3, 32, 32) in [-1, 1]
    rng = np.random.default_rng(cfg.seed)
    if decoder is not None:
        dec_scale = decoder_scale(student, decoder, dec_abar, x32, img, ds, words, subs, cfg)
        log.info("decoder: prediction MSE between a caption and another shape's, %.2e (the decoder term's unit)",
                 dec_scale)
    anchors_eval = words.anchors(np.random.default_rng(10_000 + cfg.seed), 64)
    with torch.no_grad():
        anchor_before = student.encode_text(anchors_eval).embeds if anchors_eval else None
    checks_before = words.checks(student, cfg.seed)
    weight = student.model.token_embedding.weight
    with torch.no_grad():
        for i, row in words.start(student, trainable).items():
            weight[i] = row
    mask, opt, lr = clip_vocab.row_optimizer(weight, trainable, cfg.lr, cfg.warmup, cfg.steps)
    emb_scale, hid_scale = clip_vocab.encoding_scales(student, 0.3)
    for step in range(cfg.steps):
        rows: list[tuple[str, list[str], int]] = []
        while len(rows) < cfg.batch:
            i = int(rng.integers(len(ds)))
            got = words.row(ds.attrs(i), rng, subs, cfg.p_sub)
            if got is not None:
                rows.append((got[0], got[1], i))
        b, k = len(rows), max(len(r[1]) for r in rows)
        valid = torch.tensor([[j < len(r[1]) for j in range(k)] for r in rows])  # (b, k): padded targets off
        anchors = words.anchors(rng, cfg.n_anchor)
        tok_new = student.tokenize([r[0] for r in rows])
        tok_orig = student.tokenize([t for r in rows for t in r[1] + r[1][:1] * (k - len(r[1]))])  # (b * k, L)
        with torch.no_grad():
            t = student.encode_tokens(tok_orig)
            if anchors:
                weight_now = weight.detach().clone()
                weight.data.copy_(teacher_weight)  # the input tower's encoding of the anchors
                t_anchor = student.encode_text(anchors)
                weight.data.copy_(weight_now)
        s = student.encode_tokens(tok_new)
        own = torch.arange(b) * k
        t_emb, t_hid, t_mask = t.embeds[own], t.hidden[own], t.mask[own]
        pooled = (s.embeds - t_emb).pow(2).sum(-1).mean() / emb_scale
        same = (tok_new != 0).sum(1) == (tok_orig[own] != 0).sum(1)
        hidden = torch.zeros(())
        if same.any():
            hidden = (s.hidden[same] - t_hid[same])[t_mask[same]].pow(2).sum(-1).mean() / hid_scale
        sn = F.normalize(s.embeds, dim=-1)
        logits = torch.einsum("bd,bkd->bk", sn, F.normalize(t.embeds, dim=-1).view(b, k, -1)) / cfg.tau
        logits = logits.masked_fill(~valid, float("-inf"))
        hard = F.cross_entropy(logits, torch.zeros(b, dtype=torch.long))
        idx = torch.tensor([r[2] for r in rows])
        through = clip_vocab.through_prior(prior, abar, latent[idx], (t_emb, t_hid, t_mask), (s.embeds, s.hidden, s.mask))
        through_dec = torch.zeros(())
        if decoder is not None:
            through_dec = clip_vocab.through_decoder(decoder, dec_abar, x32[idx], img[idx], (t_emb, t_hid, t_mask),
                                                     (s.embeds, s.hidden, s.mask)) / dec_scale
        anchor = torch.zeros(())
        if anchors:
            sa = student.encode_text(anchors)
            anchor = ((sa.embeds - t_anchor.embeds).pow(2).sum(-1).mean() / emb_scale
                      + (sa.hidden - t_anchor.hidden)[t_anchor.mask].pow(2).sum(-1).mean() / hid_scale)
        loss = (pooled + cfg.hidden_weight * hidden + cfg.prior_weight * through + cfg.hard_weight * hard
                + cfg.anchor_weight * anchor)
        if decoder is not None:
            loss = loss + cfg.decoder_weight * through_dec
        opt.zero_grad(set_to_none=True)
        loss.backward()
        weight.grad.mul_(mask)
        opt.step()
        lr.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            acc = (logits.argmax(1) == 0).float().mean().item()
            log.info("step %d loss %.4f (pooled %.4f token states %.4f prior %.4f decoder %.4f hard %.3f [original "
                     "nearest %.2f] %s %.4f)  %.0f s", step, loss.item(), pooled.item(), hidden.item(), through.item(),
                     through_dec.item(), hard.item(), acc, words.anchor_name, anchor.item(), timer())
    with torch.no_grad():  # every row outside the trained set is the input tower's, exactly
        keep = mask[:, 0] == 0
        weight[keep] = teacher_weight[keep]
    weight.requires_grad_(False)
    checks = words.checks(student, cfg.seed)
    if anchors_eval:
        with torch.no_grad():
            checks[f"{words.anchor_name}_cosine_to_before"] = round(F.cosine_similarity(
                student.encode_text(anchors_eval).embeds, anchor_before, dim=-1).mean().item(), 4)
    checks.update({f"{k}_before": v for k, v in checks_before.items()})
    log.info("fresh captions: %s", checks)
    old_sha = arprior.clip_sha256(init)
    init_log = init / "training_log.json"
    lineage = ancestors(json.loads(init_log.read_text()) if init_log.exists() else {}, old_sha)
    ocfg = json.loads((init / "clip" / "open_clip_config.json").read_text())
    save_open_clip(student.model, out / "clip", ocfg["preprocess_cfg"], ocfg["model_cfg"])
    clip_vocab.carry_ar_prior(out, old_sha, f"{name} (new token rows only; trained encodings unchanged)")
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "init", "threads", "log_every", "again")}
    extra = {**settings, "words": list(words.words), "rows": len(trainable), "row_ids": sorted(trainable), **checks,
             "clip_sha256_before": old_sha, "clip_sha256_ancestors": sorted(lineage),
             "clip_sha256": arprior.clip_sha256(out)}
    carry_log(init, out)
    record_time(out, name, timer(), extra)
    log.info("saved %s in %.0f s", out / "clip", timer())
    return 0
