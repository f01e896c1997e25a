"""A trial (not in the shipped recipe): the 32 → 64 px upsampler that also sees the CLIP image embedding.

The decoder's 32 px images of small stars and sharp corners are soft, and the 64 px upsampler, which sees
only the image (as the paper's), draws a blob's outline from them; given true 32 px renders it draws the
shape (docs/unclip.md, "Short prompts: where the unclean scenes come from"). Imagen's and DeepFloyd IF's
super-resolution stages also see their text conditioning; here the upsampler sees the CLIP image embedding the
decoder was conditioned on, which says "star" where the 32 px image is ambiguous.

The bundle's `super_res_first/` becomes a `UNet2DModel` with `class_embed_type="identity"` plus
`super_res_embed/` (`UpsamplerEmbedding`: the embedding → an addition to the timestep embedding, its last
layer zero at first), so step 0 is exactly the shipped upsampler (`with_embedding`). It is continued on
(corrupted 32 px render, the scene's CLIP image embedding of its 64 px render) → 64 px render crops, with
the conditioning softened more often and more strongly than in the base run (a Gaussian blur of σ up to
`max_blur` 32 px pixels on `p_blur` of the samples), so that the 32 px image alone is ambiguous and the
embedding is what tells the shape. The embedding gets the decoder's kind of conditioning augmentation:
dropped (zeros: the path off) for `p_drop_embed` of the samples, so the upsampler still works without
one, and moved by a random vector of norm up to `embed_noise` (on the unit sphere) for the rest, as the
prior's samples (through Recolour) differ from a render's embedding. `edge_weight` > 0 puts more of the
loss where the conditioning lacks what the render has (the outline, a star's tips).

A blur leaves the shape in the 32 px image, and the net learns to read it from there and barely uses the
embedding. With `n_decoded` > 0, `p_decoded` of each batch is instead conditioned on `upsampler_decoded`'s
pairs: the first `n_decoded` training scenes noised part of the way and denoised by the `--init` bundle's
decoder (cached in `--cache`), whose 32 px images are ambiguous the way the decoder makes them at inference,
so that the embedding is the cue for the outline the render has.

    python -m train upsampler_embed --out DIR            # a new folder: super_res_first/, super_res_embed/, ...
    python -m train upsampler_embed --out DIR --smoke    # a few steps, the shipped weights at the start
    python -m train upsampler_embed --out DIR --n-decoded 1536 --cache /tmp/pairs   # decoder-made pairs mixed in
    python -m train upsampler_embed --out models/shapes-unclip --ship true   # into the shipped bundle

It reads `--init` (default models/shapes-unclip: its `clip/` and `super_res_first/`) and refuses to
write into the shipped bundle unless `--ship true` is given.
"""

from __future__ import annotations

import copy
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

from nodes.unclip.models.upsampler import UpsamplerEmbedding, upscale_condition, with_embedding
from train import data as shapes_data
from train import upsampler_decoded
from train.common import (
    SHIPPED,
    cosine_lr,
    image_embeddings,
    load_clip_frozen,
    record_time,
    start,
    write_model_index,
)
from train.upsampler import conditioning, corrupt, scheduler

log = logging.getLogger("train.upsampler_embed")


@dataclass
class Config:
    out: str = ""  # required: a folder for the upsampler (the shipped bundle only with --ship true)
    init: str = str(SHIPPED)  # the bundle whose clip/ embeds the scenes and whose super_res_first/ is continued
    ship: bool = False
    steps: int = 600
    batch: int = 32
    crop: int = 32
    lr: float = 1e-4  # the UNet's, as upsampler_tune
    embed_lr: float = 1e-3  # the new embedding path's (from zero)
    warmup: int = 20
    max_aug_noise: float = 0.1
    p_blur: float = 0.7
    max_blur: float = 1.2
    p_drop_embed: float = 0.1
    embed_noise: float = 0.3
    edge_weight: float = 0.0  # > 0: per-pixel loss weight 1 + edge_weight × |render − conditioning| (mean 1)
    n_decoded: int = 0  # > 0: that many training scenes decoded by the init bundle's decoder (upsampler_decoded)
    p_decoded: float = 0.6  # the share of each batch conditioned on them
    cache: str = ""  # folder of the decoded pairs ("": a temporary folder), shared with upsampler_decoded
    ema: float = 0.995
    n_data: int = 12_000
    data_seed: int = 0
    seed: int = 13
    threads: int = 1
    log_every: int = 50


def smoke() -> Config:
    return Config(steps=2, batch=4, n_data=64, log_every=1)


def augment_embeddings(emb: torch.Tensor, p_drop: float, noise: float, gen: torch.Generator) -> torch.Tensor:
    """(B, D) → unit-norm embeddings moved by a random vector of norm uniform in [0, noise], and zero rows
    (the embedding dropped) for `p_drop` of them."""
    b, d = emb.shape
    e = F.normalize(emb, dim=-1)
    step = F.normalize(torch.randn(b, d, generator=gen), dim=-1) * torch.rand(b, 1, generator=gen) * noise
    e = F.normalize(e + step, dim=-1)
    keep = (torch.rand(b, 1, generator=gen) >= p_drop).to(e.dtype)
    return e * keep


def labels_for(embed: UpsamplerEmbedding, e: torch.Tensor, time_dim: int) -> torch.Tensor:
    """class_labels (B, T): the embedding path's output, zero for dropped (zero) rows, as at inference."""
    dropped = (e.abs().sum(-1, keepdim=True) == 0)
    out = embed(torch.where(dropped, torch.ones_like(e), e))
    return torch.where(dropped, torch.zeros(1, time_dim, dtype=out.dtype), out)


def _tracked(path: Path) -> bool:
    """Whether git tracks files under `path` (a shipped model folder); False outside a git checkout."""
    import subprocess

    if not path.is_dir():
        return False
    try:
        got = subprocess.run(["git", "ls-files", "--", str(path.resolve())], cwd=path.resolve(),
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return got.returncode == 0 and bool(got.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    cfg, _, timer = start(Config, argv, smoke)
    if not cfg.out:
        log.error("upsampler_embed is a trial: pass --out DIR (a new folder, or a copy of the bundle)")
        return 2
    out, init = Path(cfg.out), Path(cfg.init)
    if out.resolve() == SHIPPED.resolve() and not cfg.ship:
        log.error("upsampler_embed is a trial and would rewrite the shipped upsampler: pass --out DIR, or "
                  "--ship true to train it into %s", SHIPPED)
        return 2
    if out.resolve() != SHIPPED.resolve() and _tracked(out / "super_res_first"):
        log.error("%s holds a shipped upsampler (git tracks it); train into a new folder or a copy", out)
        return 2
    if (out / "super_res_last").is_dir():
        log.error("%s has super_res_last/, which would not take the embedding: remove it, or use another --out", out)
        return 2
    ds = shapes_data.load(cfg.data_seed, cfg.n_data)
    clip = load_clip_frozen(init)
    emb = image_embeddings(clip, ds.images64)  # (N, D): the 64 px renders', as the decoder was trained on
    log.info("image embeddings %s in %.0f s", tuple(emb.shape), timer())
    decoded, pairs_record, extra_seconds = None, {}, 0.0
    if cfg.n_decoded > 0:  # upsampler_decoded's pairs of the same scenes, generated with its defaults
        dcfg = upsampler_decoded.Config(out=str(init), n_decoded=cfg.n_decoded, data_seed=cfg.data_seed,
                                        n_data=cfg.n_data, cache=cfg.cache, threads=cfg.threads)
        t0 = timer()
        rows, images, gen_seconds = upsampler_decoded.decoded_pairs(dcfg, ds, timer)
        extra_seconds = gen_seconds - (timer() - t0)  # a cache read: count the generation's time instead
        decoded = (rows, images)
        pairs_record = {"kept": int(len(rows)), "strength": [dcfg.min_strength, dcfg.max_strength],
                        "generation_seconds": round(gen_seconds, 1)}
    base = UNet2DModel.from_pretrained(init / "super_res_first").float()
    if base.config.class_embed_type == "identity":  # an upsampler that already sees the embedding: continue it
        unet = base
        embed = UpsamplerEmbedding.from_pretrained(init / "super_res_embed").float()
    else:
        unet, embed = with_embedding(base, emb.shape[1])
    del base
    time_dim = embed.config.time_embed_dim
    ema_unet = copy.deepcopy(unet).eval().requires_grad_(False)
    ema_embed = copy.deepcopy(embed).eval().requires_grad_(False)
    params = [*unet.parameters(), *embed.parameters()]
    opt = torch.optim.AdamW([{"params": list(unet.parameters()), "lr": cfg.lr},
                             {"params": list(embed.parameters()), "lr": cfg.embed_lr}], weight_decay=0.01)
    lr_sched = cosine_lr(opt, cfg.warmup, cfg.steps)
    abar = scheduler().alphas_cumprod
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    unet.train()
    embed.train()
    run_loss = None
    for step in range(cfg.steps):
        idx = rng.choice(len(ds), size=cfg.batch, replace=False)
        low = conditioning(ds, idx, decoded, cfg.p_decoded, rng)  # decoded rows first, idx changed to match
        hr = shapes_data.to_tensor(ds.images64[idx]) * 2 - 1  # (B, 3, 64, 64)
        lr = corrupt(shapes_data.to_tensor(low) * 2 - 1, cfg.max_aug_noise, cfg.p_blur, cfg.max_blur)
        up = upscale_condition(lr, 64)
        y, x = (int(v) for v in rng.integers(0, 64 - cfg.crop + 1, size=2))
        hr, up = hr[..., y:y + cfg.crop, x:x + cfg.crop], up[..., y:y + cfg.crop, x:x + cfg.crop]
        e = augment_embeddings(emb[torch.from_numpy(idx)], cfg.p_drop_embed, cfg.embed_noise, gen)
        t = torch.randint(0, len(abar), (cfg.batch,))
        a = abar[t].view(-1, 1, 1, 1)
        noise = torch.randn_like(hr)
        xt = a.sqrt() * hr + (1 - a).sqrt() * noise
        pred = unet(torch.cat([xt, up], dim=1), t, class_labels=labels_for(embed, e, time_dim)).sample
        if cfg.edge_weight > 0:  # where the conditioning lacks what the render has: the outline
            w = 1 + cfg.edge_weight * (hr - up).abs().mean(1, keepdim=True)
            loss = ((pred - noise) ** 2 * (w / w.mean())).mean()
        else:
            loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, model in ((ema_unet, unet), (ema_embed, embed)):
                for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                    pe.lerp_(pm, 1 - decay)
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("step %d loss %.4f (ema %.4f)  embed out %.3f  %.0f s", step, loss.item(), run_loss,
                     float(embed.proj.linear_2.weight.detach().abs().mean()), timer())
    ema_unet.save_pretrained(out / "super_res_first", safe_serialization=True)
    ema_embed.save_pretrained(out / "super_res_embed", safe_serialization=True)
    scheduler().save_pretrained(out / "super_res_scheduler")
    write_model_index(out)
    record_time(out, "upsampler_embed", timer() + extra_seconds, {
        k: v for k, v in asdict(cfg).items() if k not in ("out", "threads", "log_every", "ship", "cache")}
        | pairs_record
        | {"init": str(init.resolve().relative_to(SHIPPED.parent.parent)) if init.resolve().is_relative_to(
            SHIPPED.parent.parent) else str(init)})
    log.info("saved %s in %.0f s", out, timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
