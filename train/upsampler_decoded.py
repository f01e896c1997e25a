"""The 32 → 64 px upsampler continued on the decoder's own 32 px images (`upsampler_decoded`).

The base upsampler learnt from box-filtered 32 px renders (plus noise and a slight blur); what it
gets at inference is the decoder's 32 px output, whose outlines are softer and whose corners are
rounded, and it keeps them (docs/unclip.md, "Short prompts' outlines"). Here the conditioning is
the real degradation: for training-split scenes the true 32 px render is noised part of the way
with the decoder's schedule (`strength` in [min_strength, max_strength] of its 25 DDPM steps)
and denoised by the bundle's decoder, conditioned as `text2image.json` conditions it (the scene's
CLIP image embedding, a training caption of it, guidance 1.5, DDPM). That gives decoder-style
32 px images aligned with the scene; pairs that drifted from it (the pixel analyser's object masks
overlap with IoU below `min_iou`, or the backgrounds differ) are dropped. The upsampler is then continued on (decoder-style 32 px → true 64 px
render) for `p_decoded` of each batch and on its usual corrupted renders for the rest.

    python -m train upsampler_decoded                 # continue models/shapes-unclip's super_res_first/
    python -m train upsampler_decoded --smoke         # tiny models, a few steps

The generated pairs are cached in `cache` (default a temporary folder; never committed).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from train import data as shapes_data
from train import upsampler
from train.common import SHIPPED, Timer, load_clip_frozen, parse, setup

log = logging.getLogger("train.upsampler_decoded")


@dataclass
class Config:
    out: str = str(SHIPPED)  # the bundle: its clip/, decoder and super_res_first/ (continued in place)
    n_decoded: int = 768  # training-split scenes decoded
    data_seed: int = 0
    n_data: int = 20_000  # scenes of the mixed-in base conditioning (the first n_decoded are decoded)
    min_strength: float = 0.4
    max_strength: float = 0.7
    steps: int = 25  # the decoder's schedule (text2image.json: 25 DDPM steps, guidance 1.5)
    guidance: float = 1.5
    gen_batch: int = 32
    min_iou: float = 0.6  # drop pairs whose object mask overlaps the render's less (IoU), or on another background
    cache: str = ""  # folder of the generated pairs ("" : a temporary folder)
    # the continuation
    train_steps: int = 400
    batch: int = 32
    lr: float = 1e-4
    warmup: int = 20
    p_decoded: float = 0.6
    seed: int = 11
    threads: int = 1


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", n_decoded=8, n_data=64, steps=4, gen_batch=4, min_iou=0.0,
                  train_steps=2, batch=4)


@torch.no_grad()
def decode_partway(dec, x0: torch.Tensor, img_emb: torch.Tensor, cond, uncond, strength: float, steps: int,
                   guidance: float, gen: torch.Generator) -> torch.Tensor:
    """The decoder's DDPM sampler started from x0 (B, 3, S, S) in [-1, 1] noised to `strength` of its
    `steps`-step schedule (SDEdit); returns (B, 3, S, S) in [0, 1], as `sample_decoder` does."""
    from nodes.unclip.models import schedulers as sch
    from nodes.unclip.models.clip import TextEncoding
    from nodes.unclip.models.decoder import conditioning

    b = x0.shape[0]
    sched = sch.make_scheduler(dec.scheduler, "ddpm")
    ts = sch.timesteps(sched, steps)
    start = min(len(ts) - 1, max(0, len(ts) - round(strength * len(ts))))
    do_cfg = guidance != 1.0
    text = TextEncoding.cat([uncond.expand(b), cond]) if do_cfg else cond
    hidden, additive, mask = conditioning(dec, img_emb, text, do_cfg)
    noise = torch.randn(x0.shape, generator=gen)
    latents = sched.add_noise(x0, noise, ts[start:start + 1])
    for i in range(start, len(ts)):
        t = ts[i]
        x = sched.scale_model_input(torch.cat([latents] * 2) if do_cfg else latents, t)
        pred = dec.unet(sample=x, timestep=t, encoder_hidden_states=hidden, class_labels=additive,
                        attention_mask=mask).sample
        if do_cfg:
            p_uncond, p_text = pred.chunk(2)
            pred = p_uncond[:, :3] + guidance * (p_text[:, :3] - p_uncond[:, :3])
        latents = sch.step(sched, pred, t, latents, sch.prev_timestep(ts, i), gen).prev_sample
    return latents.clamp(-1, 1) * 0.5 + 0.5


def generate_pairs(cfg: Config, bundle: Path, ds, timer: Timer) -> np.ndarray:
    """Decoder-style 32 px images (N, 32, 32, 3) uint8 of the first n_decoded scenes."""
    from nodes.unclip.models import load_decoder
    from train.common import image_embeddings

    dec = load_decoder(bundle)
    clip = load_clip_frozen(bundle)
    n = min(cfg.n_decoded, len(ds))
    emb = image_embeddings(clip, ds.images64[:n])
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    uncond = clip.encode_text([""])
    out = np.zeros((n, *ds.images32.shape[1:]), dtype=np.uint8)
    for i in range(0, n, cfg.gen_batch):
        idx = np.arange(i, min(n, i + cfg.gen_batch))
        x0 = shapes_data.to_tensor(ds.images32[idx]) * 2 - 1
        cond = clip.encode_text(ds.captions(idx, rng))
        strength = float(rng.uniform(cfg.min_strength, cfg.max_strength))
        img = decode_partway(dec, x0, emb[idx], cond, uncond, strength, cfg.steps, cfg.guidance, gen)
        out[idx] = np.clip(np.rint(img.permute(0, 2, 3, 1).numpy() * 255), 0, 255).astype(np.uint8)
        if (i // cfg.gen_batch) % 8 == 0:
            log.info("decoded %d / %d (strength %.2f)  %.0f s", i + len(idx), n, strength, timer())
    return out


def aligned(decoded: np.ndarray, renders: np.ndarray, min_iou: float) -> np.ndarray:
    """(N,) bool: the decoded image still shows the render's scene (same background, object masks
    overlapping with IoU ≥ min_iou; the pixel analyser's masks); min_iou ≤ 0 keeps every pair."""
    from nodes.shapes import analyse

    if min_iou <= 0:
        return np.ones(len(decoded), bool)
    keep = np.zeros(len(decoded), bool)
    for i, (d, r) in enumerate(zip(decoded, renders, strict=True)):
        a, b = analyse.analyse(d), analyse.analyse(r)
        if a.found and b.found and a.background == b.background:
            keep[i] = (a.mask & b.mask).sum() / max(1, (a.mask | b.mask).sum()) >= min_iou
    return keep


def pairs_key(cfg: Config) -> str:
    """The cache key of the generated pairs: what they depend on (the scenes are a prefix of data seed
    `data_seed`'s, so `n_data` counts only where it cuts them short)."""
    gen = asdict(cfg) | {"n_data": min(cfg.n_data, cfg.n_decoded)}
    keys = ("out", "n_decoded", "data_seed", "n_data", "min_strength", "max_strength", "steps", "guidance",
            "gen_batch", "seed")
    return hashlib.sha256(repr([gen[k] for k in keys]).encode()).hexdigest()[:12]


def decoded_pairs(cfg: Config, ds, timer: Timer) -> tuple[np.ndarray, np.ndarray, float]:
    """(rows (M,), their decoder-style 32 px images (M, 32, 32, 3) uint8, generation seconds): the first
    `n_decoded` scenes of `ds` decoded by the bundle `cfg.out`'s decoder, those still showing their
    render's scene kept; read from `cfg.cache` when generated before, else generated and stored there."""
    cache = Path(cfg.cache or tempfile.mkdtemp(prefix="nodegraph-upsampler-decoded-"))
    path = cache / f"decoded-{pairs_key(cfg)}.npz"
    if path.exists():  # the wall time recorded stays the generation's, not the cache read's
        z = np.load(path)
        decoded, gen_seconds = z["decoded"], float(z["seconds"])
        log.info("decoded pairs from %s (generated in %.0f s)", path, gen_seconds)
    else:
        t0 = timer()
        decoded = generate_pairs(cfg, Path(cfg.out), ds, timer)
        gen_seconds = timer() - t0
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, decoded=decoded, seconds=gen_seconds)
    keep = aligned(decoded, ds.images32[:len(decoded)], cfg.min_iou)
    log.info("%d of %d decoded scenes still show their render's scene", keep.sum(), len(keep))
    rows = np.flatnonzero(keep)
    return rows, decoded[rows], gen_seconds


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse(Config, argv, smoke)
    setup(cfg.seed, cfg.threads)
    timer = Timer()
    bundle = Path(cfg.out)
    ds = shapes_data.load(cfg.data_seed, cfg.n_data)
    rows, images, gen_seconds = decoded_pairs(cfg, ds, timer)
    return upsampler.main([
        "--init", str(bundle), "--out", str(bundle), "--steps", str(cfg.train_steps), "--batch", str(cfg.batch),
        "--lr", str(cfg.lr), "--warmup", str(cfg.warmup), "--n-data", str(cfg.n_data),
        "--data-seed", str(cfg.data_seed), "--threads", str(cfg.threads), "--seed", str(cfg.seed),
    ], decoded=(rows, images), p_decoded=cfg.p_decoded, stage="upsampler_decoded",
        extra_seconds=gen_seconds, extra_record={"n_decoded": int(min(cfg.n_decoded, len(ds))), "kept": int(len(rows)),
                                                  "strength": [cfg.min_strength, cfg.max_strength],
                                                  "p_decoded": cfg.p_decoded, "generation_seconds": round(gen_seconds, 1)})


if __name__ == "__main__":
    sys.exit(main())
