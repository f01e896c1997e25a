"""Stage 1c: teach the CLIP text tower the lexicon's words, leaving every trained word exactly as it is.

The tower was trained on the first caption writer's few words; a token it never saw ("giant",
"crimson", "grow") keeps its untrained embedding, and a prompt that uses it lands where no later
stage has been. This stage learns new token embeddings only (textual inversion, for many words at
once): a caption or training instruction with words replaced by their WordNet synonyms
(`train/lexicon.py`) must encode — pooled embedding, and token states when the token count is the same —
as the frozen tower encodes the original text.

Only embedding rows of tokens that neither the first writer nor the training instructions nor the
reserved words (the pink LoRA's "pink") contain are trained, and never a word-final piece that is an
English word of its own ("i" in "part|i-color"); the transformer, the projection and every other row
are untouched, so every first-writer caption and training instruction (what CLIP, the decoder, the
LoRAs, IP2P and the AR prior were trained on) encodes bit for bit as before. Texts with other words
change: that includes the second caption writer's captions, half of the diffusion prior's
continuation (`prior_tune`), and the other words of multi-word synonyms ("by", "light", "hand"). A new token starts from the
mean embedding of the word it stands for.

    python -m train clip_vocab [--smoke] [--steps N] [--threads T] [--out DIR]
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

from nodes.shapes import domain, edits
from train import arprior, lexicon
from train.common import SHIPPED, cosine_lr, record_time, start

log = logging.getLogger("train.clip_vocab")


@dataclass
class Config:
    out: str = str(SHIPPED)
    init: str = ""  # the bundle whose clip/ is continued ("" = out)
    steps: int = 1500
    batch: int = 96
    lr: float = 3e-3
    warmup: int = 50
    p_sub: float = 0.6  # chance that a word with synonyms is replaced
    p_instruction: float = 0.3  # share of rows that are training instructions (else captions)
    hidden_weight: float = 1.0
    seed: int = 11
    threads: int = 1
    log_every: int = 50


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=3, batch=8, log_every=1, warmup=1)


def training_texts(rng: np.random.Generator, n: int, p_instruction: float) -> list[str]:
    """`n` texts the shipped models were trained on: first-writer captions and training instructions."""
    out = []
    for _ in range(n):
        scene = domain.sample_scene(rng, "train")
        if rng.random() < p_instruction:
            kind = edits.EDIT_KINDS[int(rng.integers(len(edits.EDIT_KINDS)))]
            out.append(edits.random_edit(rng, scene, kind, "train").instruction)
        else:
            out.append(domain.caption(scene, rng))
    return out


def frozen_tokens(clip, n: int = 6000) -> set[int]:
    """Token ids of every text the shipped models were trained on, the reserved words, the empty prompt,
    and the lexicon's protected pieces (English words that are only a fragment of a synonym)."""
    rng = np.random.default_rng(0)
    texts = training_texts(rng, n, 0.3) + [""] + sorted(lexicon.RESERVED) + lexicon.load_protected()
    texts += [t.format(c="red", s="star", n="star", d="left", p="at the top") for k in edits.TEMPLATES.values()
              for t in k["train"]]
    return token_set(clip, texts)


def token_set(clip, texts: list[str]) -> set[int]:
    """Every token id of `texts` (tokenised 512 at a time)."""
    ids: set[int] = set()
    for i in range(0, len(texts), 512):
        ids.update(clip.tokenize(texts[i:i + 512]).unique().tolist())
    return ids


def rephrased_pairs(rng: np.random.Generator, n: int, subs: dict[str, list[str]], cfg: Config) -> list[tuple[str, str]]:
    """`n` (rephrased, original) pairs of training texts that differ."""
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        (orig,) = training_texts(rng, 1, cfg.p_instruction)
        if not any(w in subs for w in re.findall(r"[a-z]+", orig)):
            continue
        new = lexicon.rephrase(orig, subs, rng, cfg.p_sub)
        if new != orig:
            pairs.append((new, orig))
    return pairs


@torch.no_grad()
def agreement(clip, subs: dict[str, list[str]], cfg: Config, weight: torch.Tensor | None = None,
              n: int = 512) -> float:
    """Mean cosine between the embeddings of rephrased texts and of their originals, on texts drawn from
    a seed training never uses (`weight`: token rows to use instead of the tower's own)."""
    pairs = rephrased_pairs(np.random.default_rng(10_000 + cfg.seed), n, subs, cfg)
    emb = clip.model.token_embedding.weight
    saved = emb.detach().clone()
    if weight is not None:
        emb.copy_(weight)
    try:
        a = clip.encode_text([p[0] for p in pairs]).embeds
        b = clip.encode_text([p[1] for p in pairs]).embeds
    finally:
        emb.copy_(saved)
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item()


def carry_ar_prior(out: Path, old_sha: str,
                   by: str = "clip_vocab (new token rows only; trained encodings unchanged)") -> None:
    """The AR prior records the sha256 of the CLIP it was trained on. This stage leaves every encoding of
    its training texts bit for bit as it was, so a record of the tower before it carries over (`by`
    says which stage carried it, and why)."""
    path = out / "prior_ar" / "training_log.json"
    if not path.is_file():
        return
    logs = json.loads(path.read_text())
    entry = logs.get("arprior", {})
    if entry.get("clip_sha256") != old_sha:
        return
    entry["clip_sha256"] = arprior.clip_sha256(out)
    earlier = entry.get("clip_sha256_carried_by")
    entry["clip_sha256_carried_by"] = f"{earlier}; then {by}" if earlier else by
    path.write_text(json.dumps(logs, indent=2) + "\n")


def through_prior(prior, abar, x0, teacher, student):
    """The frozen prior's x₀ prediction from the student's encoding against the teacher's, as MSE: both at
    the same noisy image embeddings (`x0`, normalised latents, noised at timesteps drawn uniformly from
    `abar`'s schedule). `teacher`, `student`: (pooled embeddings, token states, mask)."""
    ts = torch.randint(0, len(abar), (len(x0),))
    a = abar[ts][:, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0)
    with torch.no_grad():
        target = prior(xt, timestep=ts, proj_embedding=teacher[0], encoder_hidden_states=teacher[1],
                       attention_mask=teacher[2]).predicted_image_embedding
    pred = prior(xt, timestep=ts, proj_embedding=student[0], encoder_hidden_states=student[1],
                 attention_mask=student[2]).predicted_image_embedding
    return torch.nn.functional.mse_loss(pred, target)


def through_decoder(decoder, abar, x0, image_embeds, teacher, student):
    """The frozen decoder's prediction from the student's encoding against the teacher's, as MSE: both at the
    same noisy 32 px images (`x0`, (B, 3, 32, 32) in [-1, 1], noised at timesteps drawn uniformly from
    `abar`) and image embeddings (B, D). The decoder attends to the prompt's token states as the prior does;
    `teacher`, `student`: (pooled embeddings, token states, mask)."""
    ts = torch.randint(0, len(abar), (len(x0),))
    a = abar[ts].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0)
    from nodes.unclip.models.clip import TextEncoding
    from nodes.unclip.models.decoder import conditioning

    def predict(text):
        hidden, additive, mask = conditioning(decoder, image_embeds, TextEncoding(*text), False)
        return decoder.unet(xt, ts, encoder_hidden_states=hidden, class_labels=additive, attention_mask=mask).sample[:, :3]

    with torch.no_grad():
        target = predict(teacher)
    return torch.nn.functional.mse_loss(predict(student), target)


def row_optimizer(weight: torch.Tensor, trainable: set[int], lr: float, warmup: int, steps: int):
    """(the mask of the rows to train, Adam on the embedding table, its cosine schedule): the table learns,
    and the caller multiplies its gradient by the mask, so only `trainable` rows move."""
    mask = torch.zeros(weight.shape[0], 1)
    mask[sorted(trainable)] = 1.0
    weight.requires_grad_(True)
    opt = torch.optim.Adam([weight], lr=lr)
    return mask, opt, cosine_lr(opt, warmup, steps)


def encoding_scales(clip, p_instruction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean squared norms of the pooled embedding and of a token state over 256 training texts (seed 1):
    the distillation losses' units."""
    with torch.no_grad():
        ref = clip.encode_text(training_texts(np.random.default_rng(1), 256, p_instruction))
        return ref.embeds.pow(2).sum(-1).mean(), ref.hidden[ref.mask].pow(2).sum(-1).mean()


def _row_means(clip, subs: dict[str, list[str]], trainable: set[int]) -> dict[int, torch.Tensor]:
    """A start for each trainable token: the mean embedding of the word it first stands in for."""
    emb = clip.model.token_embedding.weight
    start_of: dict[int, torch.Tensor] = {}
    for word, syns in subs.items():
        tok = clip.tokenize([word])[0]
        word_rows = tok[(tok != 0)][1:-1]  # no start / end tokens
        mean = emb[word_rows].mean(0)
        for s in syns:
            t = clip.tokenize([s])[0]
            for i in t[(t != 0)][1:-1].tolist():
                if i in trainable and i not in start_of:
                    start_of[i] = mean.detach().clone()
    return start_of


def main(argv: list[str] | None = None) -> int:
    from nodes.unclip.models import load_clip
    from nodes.unclip.models.clip import save_open_clip

    cfg, out, timer = start(Config, argv, smoke)
    init = Path(cfg.init) if cfg.init else out
    student = load_clip(init / "clip")
    student.requires_grad_(False)
    teacher_weight = student.model.token_embedding.weight.detach().clone()
    subs = lexicon.substitutions(lexicon.load())
    frozen = frozen_tokens(student)
    lex_ids: set[int] = set()
    for syns in subs.values():
        for i in range(0, len(syns), 512):
            lex_ids.update(student.tokenize(syns[i:i + 512]).unique().tolist())
    trainable = lex_ids - frozen
    log.info("lexicon: %d words, %d synonyms; %d new tokens to learn, %d frozen", len(subs),
             sum(map(len, subs.values())), len(trainable), len(frozen))
    weight = student.model.token_embedding.weight
    with torch.no_grad():
        for i, row in _row_means(student, subs, trainable).items():
            weight[i] = row
    mask, opt, lr = row_optimizer(weight, trainable, cfg.lr, cfg.warmup, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    emb_scale, hid_scale = encoding_scales(student, cfg.p_instruction)
    before = agreement(student, subs, cfg, teacher_weight)
    for step in range(cfg.steps):
        pairs = rephrased_pairs(rng, cfg.batch, subs, cfg)
        tok_new = student.tokenize([p[0] for p in pairs])
        tok_orig = student.tokenize([p[1] for p in pairs])
        with torch.no_grad():
            t = student.encode_tokens(tok_orig)  # the frozen rows and weights: the teacher's encoding
        s = student.encode_tokens(tok_new)
        pooled = (s.embeds - t.embeds).pow(2).sum(-1).mean() / emb_scale
        same = (tok_new != 0).sum(1) == (tok_orig != 0).sum(1)  # same length: token states line up
        hidden = torch.zeros(())
        if same.any():
            m = t.mask[same]
            hidden = (s.hidden[same] - t.hidden[same])[m].pow(2).sum(-1).mean() / hid_scale
        loss = pooled + cfg.hidden_weight * hidden
        opt.zero_grad(set_to_none=True)
        loss.backward()
        weight.grad.mul_(mask)
        opt.step()
        lr.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("step %d loss %.4f (pooled %.4f, token states %.4f on %d of %d)  %.0f s", step, loss.item(),
                     pooled.item(), hidden.item(), int(same.sum()), len(pairs), timer())
    with torch.no_grad():  # every row outside the learned set is the trained tower's, exactly
        keep = mask[:, 0] == 0
        weight[keep] = teacher_weight[keep]
    weight.requires_grad_(False)
    after = agreement(student, subs, cfg)
    log.info("cosine of a rephrased text's embedding to its original's (fresh texts): %.3f before, %.3f after",
             before, after)
    old_sha = arprior.clip_sha256(init)
    cfg_path = init / "clip" / "open_clip_config.json"
    ocfg = json.loads(cfg_path.read_text())
    save_open_clip(student.model, out / "clip", ocfg["preprocess_cfg"], ocfg["model_cfg"])
    carry_ar_prior(out, old_sha)
    extra = {"cosine_before": round(before, 4), "cosine_after": round(after, 4), "steps": cfg.steps,
             "batch": cfg.batch, "lr": cfg.lr, "p_sub": cfg.p_sub, "p_instruction": cfg.p_instruction, "new_tokens": len(trainable),
             "lexicon_words": len(subs), "lexicon_synonyms": sum(map(len, subs.values()))}
    record_time(out, "clip_vocab", timer(), extra)
    log.info("saved %s in %.0f s", out / "clip", timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
