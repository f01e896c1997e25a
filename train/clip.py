"""Stage 1: CLIP (open_clip, registered custom config `ShapesCLIP`) trained contrastively on Shapes.

Colour–shape composition: the image tower never sees a held-out (colour, shape) pair, and trained
on the 8 palette colours alone it entangles colour with shape (zero-shot colour on held-out pairs
was ~25 %). So 30 % of the images get their object repainted with a random RGB colour (never one
whose nearest palette colour would form a held-out pair with that shape; the caption then does not
name the colour), and two auxiliary regression heads predict the object and background RGB from
the image embedding for every image: colour becomes a linear, shape-independent direction.

Loss: the symmetric CLIP loss with *multi-positive* targets — a caption naming only some attributes
("a small star") matches every image in the batch that has them, so its false negatives are not
pushed away — plus auxiliary linear heads that classify colour, background, shape, size and
position from the image embedding (they make size and position linearly decodable early; ML-NOTES).
The heads are training-only and not saved.

Colour equivariance (`eq_weight` > 0, for continuing a trained CLIP with `init`; not in the shipped
recipe — docs/unclip.md gives what it measured): every repainted image's original is
encoded too, and the embedding change must be one learned bias-free linear function of the RGB
change, `e(repainted) − e(original) ≈ A·Δrgb`, the same A for all shapes. The RGB heads above only
ask colour to be *readable*; this asks a repaint to move the embedding the same way whatever the
shape (on held-out-pair renders it raised a linear shape probe from 0.74 to 0.90).

    python -m train.clip [--smoke] [--steps N] [--threads T] [--out DIR] [--init BUNDLE --eq-weight W]
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nodes.shapes import domain
from nodes.unclip.models.clip import SHAPES_CLIP, OpenClipEncoder, register_shapes_config, save_open_clip
from train import data as shapes_data
from train.common import SHIPPED, record_time, start

log = logging.getLogger("train.clip")
ATTR_OF_COLUMN = ("color", "background", "shape", "size", "position")
PREPROCESS = {"size": 64, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
              "resize_mode": "shortest"}


@dataclass
class Config:
    out: str = str(SHIPPED)
    steps: int = 900
    batch: int = 128
    lr: float = 2e-3
    warmup: int = 100
    aux_weight: float = 1.0
    p_recolor: float = 0.3
    n_data: int = 60_000
    data_seed: int = 0
    seed: int = 0
    threads: int = 2
    log_every: int = 50
    init: str = ""  # continue from this bundle's clip/ ("" = from scratch)
    eq_weight: float = 0.0  # weight of the colour-equivariance term (0 = off)
    model_overrides: dict = field(default_factory=dict)


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=3, batch=16, n_data=256, threads=1, log_every=1,
                  model_overrides={"embed_dim": 16, "vision_cfg": {"width": 8, "image_size": 32},
                                   "text_cfg": {"width": 16, "heads": 2, "layers": 1}})


def model_config(overrides: dict) -> dict:
    from open_clip import factory

    cfg = copy.deepcopy(factory._MODEL_CONFIGS[SHAPES_CLIP])
    for k, v in overrides.items():
        if isinstance(v, dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    # keep the text width equal to the embedding dim: UnCLIPTextProjModel projects token states with
    # clip_embeddings_dim
    cfg["text_cfg"]["width"] = cfg["embed_dim"]
    return cfg


def positives(labels: torch.Tensor, named: torch.Tensor) -> torch.Tensor:
    """P[i, j] = image j has every attribute caption i names. labels (B, 5), named (B, 5) bool."""
    same = labels[:, None, :] == labels[None, :, :]  # (B_text, B_img, 5)
    return (same | ~named[:, None, :]).all(-1).float()


def equivariance_loss(e_recol: torch.Tensor, e_orig: torch.Tensor, d_rgb: torch.Tensor,
                      eq_map: torch.nn.Module, scale: torch.Tensor) -> torch.Tensor:
    """Mean squared miss of `e_recol − e_orig ≈ eq_map(d_rgb)`, relative to `scale` (the mean ‖e‖²).

    e_recol, e_orig (B, D) embeddings of a repainted image and of the same scene before; d_rgb (B, 3)
    the object's RGB change in [−1, 1].
    """
    return ((e_recol - e_orig - eq_map(d_rgb)) ** 2).sum(-1).mean() / scale


def main(argv: list[str] | None = None) -> int:
    cfg, out, timer = start(Config, argv, smoke)
    import open_clip

    register_shapes_config()
    ds = shapes_data.load(cfg.data_seed, cfg.n_data)
    mcfg = model_config(cfg.model_overrides)
    size = mcfg["vision_cfg"]["image_size"]
    model = open_clip.CLIP(**mcfg)
    if cfg.init:
        from nodes.unclip.models.clip import load_clip

        model.load_state_dict({k: v.float() for k, v in load_clip(cfg.init).model.state_dict().items()})
        log.info("continuing from %s", cfg.init)
    tokenizer = open_clip.SimpleTokenizer(context_length=mcfg["text_cfg"]["context_length"])
    pre = dict(PREPROCESS, size=size)
    enc = OpenClipEncoder(model, tokenizer, size, pre["mean"], pre["std"])
    heads = torch.nn.ModuleList([torch.nn.Linear(mcfg["embed_dim"], n) for n in shapes_data.LABEL_SIZES])
    rgb_head = torch.nn.Linear(mcfg["embed_dim"], 6)  # object RGB, background RGB in [0, 1]
    heads.append(rgb_head)
    eq_map = torch.nn.Linear(3, mcfg["embed_dim"], bias=False)  # Δrgb → Δembedding
    heads.append(eq_map)
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + np.cos(np.pi * min(s, cfg.steps) / cfg.steps)))
    log.info("CLIP params: %.2f M", sum(p.numel() for p in model.parameters()) / 1e6)
    rng = np.random.default_rng(cfg.seed)
    images_src = ds.images64
    model.train()
    for step in range(cfg.steps):
        idx = rng.choice(len(ds), size=cfg.batch, replace=False)
        fg = ds.fg_rgb[idx].copy()
        recol = rng.random(cfg.batch) < cfg.p_recolor
        raw = orig_raw = images_src[idx]
        if recol.any():
            new_fg = shapes_data.random_object_colors(rng, ds.labels[idx[recol], 2], ds.bg_rgb[idx[recol]])
            raw = raw.copy()
            raw[recol] = shapes_data.recolor(raw[recol], ds.bg_rgb[idx[recol]], fg[recol], new_fg)
            fg[recol] = new_fg
        images = shapes_data.to_tensor(raw)
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        # light corruption so that imperfect generated images still embed well
        noisy = torch.rand(cfg.batch, 1, 1, 1) < 0.3
        images = torch.where(noisy, (images + 0.03 * torch.randn_like(images)).clamp(0, 1), images)
        labels = torch.from_numpy(ds.labels[idx]).clone()
        # a repainted object has no palette colour: unique labels so no colour-naming caption matches it
        labels[torch.from_numpy(recol), 0] = 100 + torch.arange(int(recol.sum()))
        named_rows, caps = [], []
        for k, i in enumerate(idx):
            include = domain.random_subset(rng)
            if recol[k]:
                include = tuple(a for a in include if a != "color")
            named_rows.append([a in include for a in ATTR_OF_COLUMN])
            caps.append(domain.caption(ds.attrs(int(i)), rng, include=include))
        named = torch.tensor(named_rows)
        eq = torch.zeros(())
        if cfg.eq_weight and recol.any():
            orig = shapes_data.to_tensor(orig_raw[recol])
            if orig.shape[-1] != size:
                orig = F.interpolate(orig, size=(size, size), mode="bilinear", antialias=True)
            both = model.encode_image(enc.preprocess(torch.cat([images, orig])))
            img, e_orig = both[:cfg.batch], both[cfg.batch:]
            d_rgb = torch.from_numpy(fg[recol].astype(np.float32) - ds.fg_rgb[idx[recol]].astype(np.float32)) / 255
            eq = equivariance_loss(img[torch.from_numpy(recol)], e_orig, d_rgb, eq_map,
                                   (img.detach() ** 2).sum(-1).mean())
        else:
            img = model.encode_image(enc.preprocess(images))
        txt = enc.encode_tokens(tokenizer(caps)).embeds
        img_n, txt_n = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * txt_n @ img_n.T  # (B_text, B_img)
        pos = positives(labels, named)
        loss_t = -(F.log_softmax(logits, 1) * pos / pos.sum(1, keepdim=True)).sum(1).mean()
        loss_i = -(F.log_softmax(logits.T, 1) * pos.T / pos.T.sum(1, keepdim=True)).sum(1).mean()
        keep = torch.from_numpy(~recol)
        aux = F.cross_entropy(heads[0](img[keep]), labels[keep, 0]) if keep.any() else img.sum() * 0
        aux = aux + sum(F.cross_entropy(heads[k](img), labels[:, k]) for k in range(1, 5))
        rgb_target = torch.from_numpy(np.concatenate([fg, ds.bg_rgb[idx]], 1)).float() / 255
        aux = aux / 5 + 5 * F.mse_loss(rgb_head(img), rgb_target)
        loss = 0.5 * (loss_t + loss_i) + cfg.aux_weight * aux + cfg.eq_weight * eq
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            acc = [(heads[k](img).argmax(1) == labels[:, k]).float().mean().item() for k in range(5)]
            log.info("step %d loss %.3f (contrastive %.3f aux %.3f eq %.4f) head acc %s  %.0f s", step,
                     loss.item(), 0.5 * (loss_t + loss_i).item(), aux.item(), eq.item(), " ".join(f"{a:.2f}" for a in acc), timer())
    model.eval()
    save_open_clip(model, out / "clip", pre, mcfg)
    (out / "clip" / "README.md").write_text(
        "open_clip model `ShapesCLIP` (custom config, SimpleTokenizer), trained on the Shapes domain by "
        "`python -m train.clip`. Load with `open_clip.create_model('local-dir:<this folder>')`.\n")
    extra = {"steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr, "p_recolor": cfg.p_recolor,
             "eq_weight": cfg.eq_weight, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    if cfg.init:
        prev = Path(cfg.init) / "training_log.json"
        extra["continued_from"] = json.loads(prev.read_text()).get("clip") if prev.is_file() else cfg.init
    record_time(out, "clip", timer(), extra)
    log.info("saved %s in %.0f s; config %s", out / "clip", timer(), json.dumps(mcfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
