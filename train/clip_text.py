"""Stage 1b: continue the CLIP text tower on a wider phrasing set, image tower frozen.

The first CLIP stage saw one caption writer (`domain.caption`); words and word orders outside it
("a jumbo disc", "a lilac canvas showing a tiny star") land where the prior and decoder have never
been. This stage teaches the text tower the second writer's phrasings (`nodes.shapes.captions`) while
keeping every embedding the later stages were trained on:

- *phrasing distillation*: the student's pooled embedding of a second-writer caption matches the
  frozen teacher's (the bundle's own text tower) embedding of a first-writer caption naming the same
  attributes (a partial caption's target is the teacher's partial caption of the same subset);
- *anchor*: on first-writer captions and the empty prompt the student keeps the teacher's pooled
  embedding and token states (the prior and decoder read both);
- *contrastive with hard negatives*: second-writer captions against the frozen image embeddings
  (multi-positive targets as in stage 1), plus, for captions naming colour or shape, the same caption
  with one colour or shape word swapped as an extra text that no image matches (NegCLIP-style).

The image tower, and so every image embedding, is unchanged.

    python -m train clip_text [--smoke] [--steps N] [--threads T] [--out DIR]
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nodes.shapes import captions, domain
from train import data as shapes_data
from train.clip import ATTR_OF_COLUMN, positives
from train.common import SHIPPED, cosine_lr, image_embeddings, record_time, start

log = logging.getLogger("train.clip_text")


@dataclass
class Config:
    out: str = str(SHIPPED)
    init: str = ""  # the bundle whose clip/ is continued and is the teacher ("" = out)
    steps: int = 400
    batch: int = 128
    lr: float = 3e-4
    warmup: int = 30
    distill_weight: float = 1.0
    anchor_weight: float = 1.0
    contrastive_weight: float = 0.3
    p_hard: float = 0.5  # share of colour/shape-naming captions that get a swapped hard negative
    n_data: int = 12_000
    data_seed: int = 0
    seed: int = 7
    threads: int = 1
    log_every: int = 25


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=3, batch=8, n_data=64, log_every=1, warmup=1)


def swapped(attrs: dict[str, str], named: tuple[str, ...], rng: np.random.Generator) -> dict[str, str] | None:
    """The attributes with the colour or the shape (one the caption names) replaced, or None.

    Never a held-out (colour, shape) pair: as a negative it would teach the text tower that such a
    caption matches no image, and held-out pairs stay out of training in every role.
    """
    options = [a for a in ("color", "shape") if a in named]
    if not options:
        return None
    attr = options[int(rng.integers(len(options)))]
    values = domain.COLORS if attr == "color" else domain.SHAPES
    others = [v for v in values if v != attrs[attr] and not (attr == "color" and v == attrs["background"])
              and (attrs["color"] if attr == "shape" else v, v if attr == "shape" else attrs["shape"])
              not in domain.HELDOUT_PAIRS]
    return {**attrs, attr: others[int(rng.integers(len(others)))]}


def _text_params(model) -> list[torch.nn.Parameter]:
    mods = [model.token_embedding, model.transformer, model.ln_final]
    params = [p for m in mods for p in m.parameters()] + [model.positional_embedding]
    proj = model.text_projection
    params += list(proj.parameters()) if isinstance(proj, torch.nn.Module) else [proj]
    return params


def text_student(clip_dir: Path):
    """(student, frozen teacher, the student's trainable text-tower parameters) from a CLIP folder: the
    teacher is a copy of the loaded model; in the student only the text tower trains."""
    from nodes.unclip.models import load_clip

    student = load_clip(clip_dir)
    teacher = copy.deepcopy(student).eval().requires_grad_(False)
    student.requires_grad_(False)
    params = _text_params(student.model)
    for p in params:
        p.requires_grad_(True)
    return student, teacher, params


def main(argv: list[str] | None = None) -> int:
    cfg, out, timer = start(Config, argv, smoke)
    init = Path(cfg.init) if cfg.init else out
    student, teacher, params = text_student(init / "clip")
    ds = shapes_data.load(cfg.data_seed, cfg.n_data)
    img = torch.nn.functional.normalize(image_embeddings(teacher, ds.images64), dim=-1)  # (N, D), fixed
    log.info("image embeddings %s in %.0f s", tuple(img.shape), timer())
    scale = teacher.model.logit_scale.exp().clamp(max=100).item()
    with torch.no_grad():
        ref_norm = teacher.encode_text(ds.captions(np.arange(min(256, len(ds))), np.random.default_rng(0)))
        emb_scale = ref_norm.embeds.pow(2).sum(-1).mean()
        hid_scale = ref_norm.hidden[ref_norm.mask].pow(2).sum(-1).mean()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    lr = cosine_lr(opt, cfg.warmup, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    student.train()
    for step in range(cfg.steps):
        idx = rng.choice(len(ds), size=cfg.batch, replace=False)
        attrs = [ds.attrs(int(i)) for i in idx]
        subsets = [domain.random_subset(rng) for _ in idx]
        new = [captions.caption(a, rng, s) for a, s in zip(attrs, subsets, strict=True)]
        ref = [domain.caption(a, rng, include=s) for a, s in zip(attrs, subsets, strict=True)]
        ref[0] = ""  # the empty prompt is the prior's and decoder's unconditional branch: keep it too
        hard = []
        for a, s in zip(attrs, subsets, strict=True):
            neg = swapped(a, s, rng) if rng.random() < cfg.p_hard else None
            if neg is not None:
                hard.append(captions.caption(neg, rng, s))
        with torch.no_grad():
            t_ref = teacher.encode_text(ref)
        s_all = student.encode_text(new + hard + ref)
        b, h = len(new), len(hard)
        s_new, s_ref_emb = s_all.embeds[:b], s_all.embeds[b + h:]
        s_ref_hidden = s_all.hidden[b + h:]
        distill = (s_new[1:] - t_ref.embeds[1:]).pow(2).sum(-1).mean() / emb_scale
        anchor = (s_ref_emb - t_ref.embeds).pow(2).sum(-1).mean() / emb_scale
        anchor = anchor + (s_ref_hidden - t_ref.hidden)[t_ref.mask].pow(2).sum(-1).mean() / hid_scale
        # contrastive: texts (new captions, then hard negatives) against the batch's images
        txt = F.normalize(s_all.embeds[:b + h], dim=-1)
        logits = scale * txt @ img[torch.from_numpy(idx)].T  # (b + h, b)
        labels = torch.from_numpy(ds.labels[idx])
        named = torch.tensor([[a in s for a in ATTR_OF_COLUMN] for s in subsets])
        pos = positives(labels, named)  # (b, b)
        loss_t = -(F.log_softmax(logits[:b], 1) * pos / pos.sum(1, keepdim=True)).sum(1).mean()
        pos_i = torch.cat([pos.T, torch.zeros(b, h)], 1)  # images: hard negatives match none
        loss_i = -(F.log_softmax(logits.T, 1) * pos_i / pos_i.sum(1, keepdim=True)).sum(1).mean()
        contrastive = 0.5 * (loss_t + loss_i)
        loss = cfg.distill_weight * distill + cfg.anchor_weight * anchor + cfg.contrastive_weight * contrastive
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("step %d loss %.4f (distill %.4f anchor %.4f contrastive %.3f, %d hard)  %.0f s", step,
                     loss.item(), distill.item(), anchor.item(), contrastive.item(), h, timer())
    student.eval()
    from nodes.unclip.models.clip import save_open_clip

    cfg_path = init / "clip" / "open_clip_config.json"
    ocfg = json.loads(cfg_path.read_text())
    save_open_clip(student.model, out / "clip", ocfg["preprocess_cfg"], ocfg["model_cfg"])
    prev = init / "training_log.json"
    extra = {"steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr, "distill_weight": cfg.distill_weight,
             "anchor_weight": cfg.anchor_weight, "contrastive_weight": cfg.contrastive_weight, "p_hard": cfg.p_hard,
             "continued_from": json.loads(prev.read_text()).get("clip") if prev.is_file() else str(init)}
    record_time(out, "clip_text", timer(), extra)
    log.info("saved %s in %.0f s", out / "clip", timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
