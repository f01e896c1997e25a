"""The autoregressive prior (DALL·E 2's AR prior, scaled down), beside the diffusion prior.

CLIP image embeddings of training scenes → PCA (the first `components` directions) → equal-mass
bins per component (`nodes.unclip.models.ar_prior.CodeBook`, fitted on the same embeddings); a
small causal transformer learns the codes given the caption's CLIP text encoding as a prefix
(teacher forcing, cross-entropy). `p_uncond` of the captions are empty: the unconditional branch of
classifier-free guidance. It reads the bundle's `clip/` and writes `<bundle>/prior_ar/` (config,
safetensors, and `training_log.json` with the wall time and the CLIP weights' sha256 it was trained
on; retrain whenever the CLIP changes). `init` continues a trained AR prior (its codebook and weights,
so the codes keep their meaning); a checkpoint goes to `<bundle>/prior_ar/step-N/` every `save_every`
steps, so a cut-short run can still be evaluated and shipped.

    python -m train arprior [--smoke] [--steps N] [--threads T] [--out BUNDLE] [--init FOLDER] [--save-every N]
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from train import data as shapes_data
from train.common import SHIPPED, cosine_lr, embedded_data, image_embeddings, record_time, start

log = logging.getLogger("train.arprior")


@dataclass
class Config:
    out: str = str(SHIPPED)  # the bundle: reads clip/, writes prior_ar/
    steps: int = 600
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 100
    components: int = 24
    bins: int = 32
    width: int = 96
    layers: int = 3
    heads: int = 4
    p_uncond: float = 0.1
    n_data: int = 16_000
    n_val: int = 512  # training-split scenes held out of the optimisation, for the logged validation loss
    data_seed: int = 0
    seed: int = 1
    threads: int = 1
    log_every: int = 100
    init: str = ""  # continue from this AR prior (a bundle or its prior_ar/ folder; "" = from scratch)
    save_every: int = 0  # checkpoint every N steps to prior_ar/step-N/ (0 = only at the end)


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=3, batch=8, components=4, bins=8, width=16, layers=1, heads=2,
                  n_data=256, n_val=32, log_every=1)


def clip_sha256(bundle: Path) -> str:
    """The hash of the CLIP weights the prior is trained on (the AR prior must be retrained when it changes)."""
    files = sorted((bundle / "clip").glob("*.safetensors"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def cached_image_embeddings(clip, ds, bundle: Path, cfg: Config) -> torch.Tensor:
    """The CLIP image embeddings of the dataset, cached under data/ per (data seed, size, CLIP weights)."""
    path = shapes_data.DATA_DIR / f"clip-emb-s{cfg.data_seed}-n{cfg.n_data}-{clip_sha256(bundle)[:16]}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    emb = image_embeddings(clip, ds.images64)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(emb, path)
    return emb


def main(argv: list[str] | None = None) -> int:
    from nodes.unclip.models.ar_prior import SUBFOLDER, ARPrior, ARPriorConfig, load_ar_prior

    cfg, out, timer = start(Config, argv, smoke)
    ds, clip, emb = embedded_data(cfg, out, timer, lambda c, d: cached_image_embeddings(c, d, out, cfg))  # (N, D)
    with torch.no_grad():
        probe = clip.encode_text([""])
    train_idx = np.arange(cfg.n_val, len(ds))
    if cfg.init:
        # the architecture and codebook come from the checkpoint: refitting the codebook would change the codes
        model = load_ar_prior(cfg.init).prior.train()
        model.check_text(probe)
        log.info("continuing from %s", cfg.init)
    else:
        model = ARPrior(ARPriorConfig(embedding_dim=emb.shape[1], text_width=probe.hidden.shape[-1],
                                      context_length=probe.hidden.shape[1], components=cfg.components,
                                      bins=cfg.bins, width=cfg.width, layers=cfg.layers, heads=cfg.heads))
        model.codebook.fit(emb[train_idx])
    codes = model.codebook.encode(emb)  # (N, K)
    recon = model.codebook.decode(codes)
    cos = torch.nn.functional.cosine_similarity(recon, emb, dim=-1)
    kept = model.codebook.project(emb).var(0).sum() / (emb - emb.mean(0)).var(0).sum()
    log.info("codebook: %d components keep %.4f of the variance; decoded codes vs embeddings: cosine %.4f "
             "(min %.4f)", model.config.components, kept, cos.mean(), cos.min())
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    log.info("AR prior params: %.2f M", n_params / 1e6)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    lr = cosine_lr(opt, cfg.warmup, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    val_idx = np.arange(cfg.n_val)
    with torch.no_grad():
        val_text = clip.encode_text(ds.captions(val_idx, np.random.default_rng(cfg.seed + 1)))
    model.train()
    ema = None
    val_loss = float("nan")
    for step in range(cfg.steps):
        idx = rng.choice(train_idx, size=cfg.batch, replace=False)
        with torch.no_grad():
            text = clip.encode_text(ds.captions(idx, rng, p_empty=cfg.p_uncond))
        loss = model.loss(text, codes[torch.from_numpy(idx)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            model.eval()
            with torch.no_grad():
                lg = model.logits(val_text, codes[torch.from_numpy(val_idx)][:, :-1])
                per_code = F.cross_entropy(lg.transpose(1, 2), codes[torch.from_numpy(val_idx)], reduction="none").mean(0)
            val_loss = per_code.mean().item()
            model.train()
            log.info("step %d loss %.4f (ema %.4f) val %.4f (codes 0-3: %s; uniform %.2f)  %.0f s", step, loss.item(),
                     ema, val_loss, " ".join(f"{v:.2f}" for v in per_code[:4].tolist()),
                     np.log(model.config.bins), timer())
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            model.eval()
            model.save(out / SUBFOLDER / f"step-{step + 1}")
            model.train()
            log.info("checkpoint at step %d", step + 1)
    model.eval()
    folder = out / SUBFOLDER
    model.save(folder)
    extra = {"steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr, "n_data": cfg.n_data,
             "components": model.config.components, "bins": model.config.bins, "params_M": round(n_params / 1e6, 3),
             "variance_kept": round(float(kept), 4), "codebook_cosine": round(float(cos.mean()), 4),
             "final_loss_ema": round(ema or 0.0, 4), "val_loss": round(val_loss, 4), "clip_sha256": clip_sha256(out)}
    if cfg.init:
        prev = Path(cfg.init) / "training_log.json"
        extra["continued_from"] = json.loads(prev.read_text()).get("arprior") if prev.is_file() else cfg.init
    record_time(folder, "arprior", timer(), extra)
    log.info("saved %s in %.0f s", folder, timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
