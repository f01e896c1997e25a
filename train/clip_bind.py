"""Stage 1d: bind each colour word to its role (object or background) in any word order.

The text tower learned from one caption writer, whose captions always name the object first. Put the
background first ("a plain white canvas showing a red disk") and the pooled embedding lies nearer the
colour-swapped scene's than its own: the prior is given the wrong scene, and Factor Out Colour's
read-out sees two object colours. This stage distils the tower into itself across word orders:

- *order distillation*: the student's encoding of a second-writer caption (`nodes.shapes.captions`;
  half of them forced background-first or position-first) matches the frozen teacher's (the bundle's
  own tower before this stage) encoding of a first-writer caption naming the same attributes — the
  pooled embedding directly, and the token states through the bundle's frozen diffusion prior: the
  prior's x₀ prediction from the student's encoding must match its prediction from the teacher's
  canonical one, at the same noisy image embedding (token states of different captions do not line
  up position by position; what the prior makes of them can be compared);
- *hard negatives*: in the teacher's space, the student's embedding must be nearer the canonical
  caption than to the canonical caption of the colour-swapped scene (object and background colours
  exchanged) and of the scene with another shape (InfoNCE over the three);
- *anchors*: first-writer captions, training instructions and the empty prompt keep the teacher's
  pooled embedding and token states (what CLIP, the prior, the decoder, the LoRAs and IP2P were
  trained on), with a strong weight.

Only the text tower trains; the image tower, and so every image embedding, is unchanged. Never a
held-out (colour, shape) pair in any role, and never the evaluation's caption generators.

    python -m train clip_bind [--smoke] [--steps N] [--threads T] [--out DIR] [--init BUNDLE]
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nodes.shapes import captions, domain
from train import arprior
from train import data as shapes_data
from train.clip_text import text_student
from train.clip_vocab import carry_ar_prior, through_prior, training_texts
from train.common import SHIPPED, cosine_lr, image_embeddings, record_time, start
from train.prior import scheduler as prior_scheduler

log = logging.getLogger("train.clip_bind")


@dataclass
class Config:
    out: str = str(SHIPPED)
    init: str = ""  # the bundle whose clip/ is continued and is the teacher, with its prior ("" = out)
    steps: int = 1200
    batch: int = 64
    lr: float = 2e-4
    warmup: int = 30
    p_forced: float = 0.5  # share of second-writer captions forced background-first (or position-first)
    p_background: float = 0.5  # chance that a caption not naming the background is made to name it
    distill_weight: float = 1.0
    prior_weight: float = 2.0
    hard_weight: float = 0.5
    tau: float = 0.05  # InfoNCE temperature of the hard negatives (cosine / tau)
    anchor_weight: float = 8.0
    p_instruction: float = 0.2  # share of anchor texts that are training instructions
    n_data: int = 4000  # training scenes whose image embeddings give the prior its noisy inputs
    data_seed: int = 0
    seed: int = 13
    threads: int = 1
    log_every: int = 25


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=3, batch=8, n_data=64, log_every=1, warmup=1)


def _allowed(attrs: dict[str, str]) -> bool:
    return attrs["color"] != attrs["background"] and (attrs["color"], attrs["shape"]) not in domain.HELDOUT_PAIRS


def negatives(attrs: dict[str, str], named: tuple[str, ...],
              rng: np.random.Generator) -> list[tuple[dict[str, str], tuple[str, ...]]]:
    """(scene, named attributes) a caption naming `named` of `attrs` must not be read as: object and
    background colours exchanged (else another object colour), the background's colour read as the
    object's when the caption names no object colour, and another shape; never a held-out pair."""
    out = []
    if "color" in named:
        swap = {**attrs, "color": attrs["background"], "background": attrs["color"]}
        if "background" in named and _allowed(swap):
            out.append((swap, named))
        else:
            options = [c for c in domain.COLORS if c != attrs["color"] and _allowed({**attrs, "color": c})]
            out.append(({**attrs, "color": options[int(rng.integers(len(options)))]}, named))
    elif "background" in named:  # "a purple field holding a star" is not "a purple star"
        bg_as_object = {**attrs, "color": attrs["background"]}
        if (bg_as_object["color"], bg_as_object["shape"]) not in domain.HELDOUT_PAIRS:
            out.append((bg_as_object, tuple(a for a in domain.ATTRIBUTES if a in named and a != "background")
                        + ("color",)))
    if "shape" in named:
        options = [s for s in domain.SHAPES if s != attrs["shape"] and _allowed({**attrs, "shape": s})]
        out.append(({**attrs, "shape": options[int(rng.integers(len(options)))]}, named))
    return out[:2]


def with_background(named: tuple[str, ...], rng: np.random.Generator, p: float) -> tuple[str, ...]:
    """`named`, with the background added with probability p (only a named background can come first)."""
    if "background" in named or rng.random() >= p:
        return named
    return tuple(a for a in domain.ATTRIBUTES if a in named or a == "background")


def second_writer(attrs: dict[str, str], named: tuple[str, ...], rng: np.random.Generator, p_forced: float) -> str:
    """A second-writer caption; with probability p_forced background-first (position-first when the
    background is not named)."""
    order = None
    if rng.random() < p_forced:
        order = "background first" if "background" in named else "position first"
    return captions.caption(attrs, rng, named, order=order)


@torch.no_grad()
def drift(student, teacher, texts: list[str]) -> dict[str, float]:
    """How far the student's encodings of `texts` are from the teacher's: mean cosine of the pooled
    embeddings, and the token states' relative RMS difference."""
    s, t = student.encode_text(texts), teacher.encode_text(texts)
    cos = F.cosine_similarity(s.embeds, t.embeds, dim=-1).mean().item()
    rel = ((s.hidden - t.hidden)[t.mask].pow(2).sum() / t.hidden[t.mask].pow(2).sum()).sqrt().item()
    return {"pooled_cosine": round(cos, 5), "token_states_rel_rms": round(rel, 5)}


def main(argv: list[str] | None = None) -> int:
    from diffusers import PriorTransformer

    from nodes.unclip.models.clip import save_open_clip

    cfg, out, timer = start(Config, argv, smoke)
    init = Path(cfg.init) if cfg.init else out
    student, teacher, params = text_student(init / "clip")
    prior = None
    if (init / "prior").is_dir() and cfg.prior_weight > 0:
        prior = PriorTransformer.from_pretrained(init / "prior").eval().requires_grad_(False)
        ds = shapes_data.load(cfg.data_seed, cfg.n_data)
        emb = image_embeddings(teacher, ds.images64)
        latent = (emb - prior.clip_mean) / prior.clip_std  # (N, D): the prior's x0 space
        abar = prior_scheduler().alphas_cumprod  # (T,): the schedule the prior was trained on
        log.info("prior latents %s in %.0f s", tuple(latent.shape), timer())
    else:
        log.info("no prior in %s (or prior_weight 0): pooled distillation only", init)
    fixed = training_texts(np.random.default_rng(1), 256, cfg.p_instruction)
    with torch.no_grad():
        ref = teacher.encode_text(fixed)
        emb_scale = ref.embeds.pow(2).sum(-1).mean()
        hid_scale = ref.hidden[ref.mask].pow(2).sum(-1).mean()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    lr = cosine_lr(opt, cfg.warmup, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    scenes_rng = np.random.default_rng([cfg.seed, 1])
    student.train()
    for step in range(cfg.steps):
        if prior is not None:
            idx = rng.choice(len(ds), size=cfg.batch, replace=False)
            attrs = [ds.attrs(int(i)) for i in idx]
        else:
            attrs = [domain.sample_scene(scenes_rng, "train").attributes() for _ in range(cfg.batch)]
        named = [with_background(domain.random_subset(rng), rng, cfg.p_background) for _ in attrs]
        new = [second_writer(a, s, rng, cfg.p_forced) for a, s in zip(attrs, named, strict=True)]
        canon = [domain.caption(a, rng, include=s) for a, s in zip(attrs, named, strict=True)]
        negs = [negatives(a, s, rng) for a, s in zip(attrs, named, strict=True)]
        neg_texts = [domain.caption(n, rng, include=s) for ns in negs for n, s in ns]
        anchors = [""] + training_texts(rng, cfg.batch - 1, cfg.p_instruction)
        with torch.no_grad():
            t_all = teacher.encode_text(canon + neg_texts + anchors)
        b, k = len(new), len(neg_texts)
        s_all = student.encode_text(new + anchors)
        s_new, t_canon = s_all.embeds[:b], t_all.embeds[:b]
        distill = (s_new - t_canon).pow(2).sum(-1).mean() / emb_scale
        # anchors: pooled and token states as the teacher's
        s_anc, t_anc = s_all.embeds[b:], t_all.embeds[b + k:]
        t_mask = t_all.mask[b + k:]
        anchor = (s_anc - t_anc).pow(2).sum(-1).mean() / emb_scale
        anchor = anchor + (s_all.hidden[b:] - t_all.hidden[b + k:])[t_mask].pow(2).sum(-1).mean() / hid_scale
        # hard negatives: nearer the canonical caption than the swapped scenes' (teacher space)
        hard = torch.zeros(())
        if k:
            cand = torch.full((b, 3), float("-inf"))
            sn = F.normalize(s_new, dim=-1)
            cand[:, 0] = (sn * F.normalize(t_canon, dim=-1)).sum(-1)
            tn = F.normalize(t_all.embeds[b:b + k], dim=-1)
            j = 0
            for i, ns in enumerate(negs):
                for c in range(len(ns)):
                    cand[i, 1 + c] = (sn[i] * tn[j]).sum()
                    j += 1
            has = torch.tensor([bool(ns) for ns in negs])
            hard = F.cross_entropy(cand[has] / cfg.tau, torch.zeros(int(has.sum()), dtype=torch.long))
        through = torch.zeros(())
        if prior is not None:
            through = through_prior(prior, abar, latent[torch.from_numpy(idx)],
                                    (t_canon, t_all.hidden[:b], t_all.mask[:b]), (s_new, s_all.hidden[:b], s_all.mask[:b]))
        loss = (cfg.distill_weight * distill + cfg.prior_weight * through + cfg.hard_weight * hard
                + cfg.anchor_weight * anchor)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("step %d loss %.4f (distill %.4f prior %.4f hard %.3f anchor %.5f)  %.0f s", step, loss.item(),
                     distill.item(), through.item(), hard.item(), anchor.item(), timer())
    student.eval()
    held = training_texts(np.random.default_rng(2), 512, cfg.p_instruction) + [""]
    moved = drift(student, teacher, held)
    log.info("first-writer captions and training instructions (fresh): %s", moved)
    old_sha = arprior.clip_sha256(init)
    ocfg = json.loads((init / "clip" / "open_clip_config.json").read_text())
    save_open_clip(student.model, out / "clip", ocfg["preprocess_cfg"], ocfg["model_cfg"])
    # the AR prior is not retrained here: its training texts (first-writer captions) are anchored, and
    # the record says by how much they moved (rerun `python -m train arprior` to train it on this tower)
    carry_ar_prior(out, old_sha, f"clip_bind (not retrained; its training captions anchored: pooled cosine "
                                 f"{moved['pooled_cosine']}, token states {moved['token_states_rel_rms']} relative RMS)")
    extra = {"steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr, "p_forced": cfg.p_forced, "p_background": cfg.p_background,
             "distill_weight": cfg.distill_weight, "prior_weight": cfg.prior_weight, "hard_weight": cfg.hard_weight,
             "anchor_weight": cfg.anchor_weight, "trained_texts_drift": moved, "clip_sha256_before": old_sha}
    record_time(out, "clip_bind", timer(), extra)
    log.info("saved %s in %.0f s", out / "clip", timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
