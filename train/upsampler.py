"""Stage 4: the super-resolution upsampler 32 → 64 px (a Karlo-style `UNet2DModel`, 6 input channels).

Input: [noisy 64 px image, bicubic-upsampled 32 px image]; as in the paper, the low-resolution
conditioning is corrupted during training (Gaussian noise, sometimes a slight blur) so that the
imperfect images of the decoder upsample cleanly. The network is fully convolutional, so it trains
on random 32 × 32 crops of the 64 px images (4× cheaper than full frames) and runs on full frames.
Epsilon prediction under the cosine schedule with Karlo's super-res scheduler (UnCLIPScheduler,
fixed_small_log). Only `super_res_first/` is shipped: the loader uses it for every step.

    python -m train.upsampler [--smoke] [--steps N] [--threads T] [--out DIR]
    python -m train upsampler_tune      # continue the bundle's upsampler on softer conditioning

`upsampler_tune` continues `super_res_first/` in place with a Gaussian blur of the conditioning
(σ up to `max_blur` 32 px pixels, in `p_blur` of the samples): the decoder's 32 px images are
softer than the 3-tap blur of the base run, and an upsampler that has only seen that mild blur
keeps their rounded corners (docs/unclip.md, "Short prompts' outlines").
"""

from __future__ import annotations

import copy
import logging
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UnCLIPScheduler, UNet2DModel

from nodes.unclip.models.upsampler import upscale_condition
from train import data as shapes_data
from train.common import SHIPPED, cosine_lr, parse, record_time, start, write_model_index

log = logging.getLogger("train.upsampler")


@dataclass
class Config:
    out: str = str(SHIPPED)
    steps: int = 2500
    batch: int = 32
    crop: int = 32
    lr: float = 5e-4
    warmup: int = 100
    channels: str = "32,64,96"
    max_aug_noise: float = 0.1
    p_blur: float = 0.3  # share of conditioning images blurred
    max_blur: float = 0.0  # > 0: Gaussian blur, σ uniform in [0.3, max_blur] 32 px pixels; 0: the 3-tap half blur
    init: str = ""  # a bundle whose super_res_first/ to continue
    ema: float = 0.995
    n_data: int = 60_000
    data_seed: int = 0
    seed: int = 3
    threads: int = 1
    log_every: int = 100
    save_every: int = 500


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=2, batch=4, channels="16,16", n_data=256, log_every=1,
                  save_every=1000)


def scheduler() -> UnCLIPScheduler:
    # Karlo's super-res scheduler
    return UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="epsilon", num_train_timesteps=1000,
                           clip_sample=True, clip_sample_range=1.0, beta_schedule="squaredcos_cap_v2")


def build(cfg: Config, size: int = 64) -> UNet2DModel:
    ch = tuple(int(c) for c in cfg.channels.split(","))
    return UNet2DModel(sample_size=size, in_channels=6, out_channels=3, layers_per_block=1, block_out_channels=ch,
                       down_block_types=("ResnetDownsampleBlock2D",) * len(ch),
                       up_block_types=("ResnetUpsampleBlock2D",) * len(ch),
                       resnet_time_scale_shift="scale_shift", norm_num_groups=16 if ch[0] % 16 == 0 else 8)


def corrupt(lr: torch.Tensor, max_noise: float, p_blur: float = 0.3, max_blur: float = 0.0) -> torch.Tensor:
    """Conditioning augmentation of low-res images (B, 3, h, w) in [-1, 1]: a blur in `p_blur` of them (the
    3-tap half blur, or with `max_blur` > 0 a Gaussian of σ in [0.3, max_blur] px), then Gaussian noise."""
    b = lr.shape[0]
    blur = torch.rand(b, 1, 1, 1) < p_blur
    if max_blur > 0:
        from torchvision.transforms.functional import gaussian_blur

        sigmas = 0.3 + torch.rand(b) * (max_blur - 0.3)
        k = 2 * int(np.ceil(3 * max_blur)) + 1
        blurred = torch.stack([gaussian_blur(x, k, float(s)) for x, s in zip(lr, sigmas, strict=True)])
        lr = torch.where(blur, blurred, lr)
    else:
        k = torch.tensor([0.25, 0.5, 0.25])
        kernel = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
        blurred = F.conv2d(F.pad(lr, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
        lr = torch.where(blur, 0.5 * (lr + blurred), lr)
    sigma = torch.rand(b, 1, 1, 1) * max_noise * (torch.rand(b, 1, 1, 1) < 0.5)
    return lr + sigma * torch.randn_like(lr)


def conditioning(ds, idx: np.ndarray, decoded: tuple[np.ndarray, np.ndarray] | None, p_decoded: float,
                 rng: np.random.Generator) -> np.ndarray:
    """A batch's 32 px conditioning (B, 32, 32, 3) uint8 for data rows `idx`: their renders, except that with
    `decoded` = (rows (M,), images (M, 32, 32, 3)) about `p_decoded` of the batch (the first n) become rows
    that have decoder-style images, and those images; `idx` is changed in place to match."""
    low = ds.images32[idx]
    n_dec = min(int(rng.binomial(len(idx), p_decoded)), len(decoded[0])) if decoded is not None else 0
    if n_dec:  # the first n_dec of the batch: decoder-style conditioning of their scenes
        pick = rng.choice(len(decoded[0]), size=n_dec, replace=False)
        idx[:n_dec] = decoded[0][pick]
        low = ds.images32[idx]
        low[:n_dec] = decoded[1][pick]
    return low


def main(argv: list[str] | None = None, decoded: tuple[np.ndarray, np.ndarray] | None = None, p_decoded: float = 0.0,
         stage: str = "", extra_seconds: float = 0.0, extra_record: dict | None = None) -> int:
    """Train (or with --init continue) the upsampler. `decoded` = (rows (M,), images (M, 32, 32, 3) uint8):
    other 32 px conditioning for those rows of the data (the decoder's own images of those scenes,
    `upsampler_decoded`), used for `p_decoded` of each batch; `stage` names the training_log record."""
    cfg, out, timer = start(Config, argv, smoke)
    ds = shapes_data.load(cfg.data_seed, cfg.n_data)
    if cfg.init:
        unet = UNet2DModel.from_pretrained(f"{cfg.init}/super_res_first").float()
        log.info("continuing from %s", cfg.init)
    else:
        unet = build(cfg)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    params = list(unet.parameters())
    log.info("upsampler params: %.2f M", sum(p.numel() for p in params) / 1e6)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    lr_sched = cosine_lr(opt, cfg.warmup, cfg.steps)
    abar = scheduler().alphas_cumprod
    rng = np.random.default_rng(cfg.seed)

    def save() -> None:
        copy.deepcopy(ema).save_pretrained(out / "super_res_first", safe_serialization=True)
        scheduler().save_pretrained(out / "super_res_scheduler")
        write_model_index(out)

    unet.train()
    run_loss = None
    for step in range(cfg.steps):
        idx = rng.choice(len(ds), size=cfg.batch, replace=False)
        low = conditioning(ds, idx, decoded, p_decoded, rng)
        hr = shapes_data.to_tensor(ds.images64[idx]) * 2 - 1  # (B, 3, 64, 64)
        lr = corrupt(shapes_data.to_tensor(low) * 2 - 1, cfg.max_aug_noise, cfg.p_blur, cfg.max_blur)
        up = upscale_condition(lr, 64)
        y, x = (int(v) for v in rng.integers(0, 64 - cfg.crop + 1, size=2))
        hr, up = hr[..., y:y + cfg.crop, x:x + cfg.crop], up[..., y:y + cfg.crop, x:x + cfg.crop]
        t = torch.randint(0, len(abar), (cfg.batch,))
        a = abar[t].view(-1, 1, 1, 1)
        noise = torch.randn_like(hr)
        xt = a.sqrt() * hr + (1 - a).sqrt() * noise
        pred = unet(torch.cat([xt, up], dim=1), t).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("step %d loss %.4f (ema %.4f)  %.0f s", step, loss.item(), run_loss, timer())
        if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            save()
    save()
    record_time(out, stage or ("upsampler_tune" if cfg.init else "upsampler"), timer() + extra_seconds,
                {"steps": cfg.steps, "batch": cfg.batch, "crop": cfg.crop, "lr": cfg.lr, "p_blur": cfg.p_blur,
                 "max_blur": cfg.max_blur, "params_M": round(sum(p.numel() for p in params) / 1e6, 2),
                 **(extra_record or {})})
    log.info("saved %s in %.0f s", out / "super_res_first", timer())
    return 0


# the continuation: softer conditioning, a lower learning rate, from the bundle's own upsampler
TUNE_BLUR = ["--lr", "1e-4", "--warmup", "20", "--p-blur", "0.7", "--max-blur", "1.0"]
TUNE = ["--steps", "600", "--n-data", "20000", *TUNE_BLUR]


def tune(argv: list[str] | None = None) -> int:
    """Continue the upsampler of the bundle given by --out (default models/shapes-unclip) with TUNE."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse(Config, argv, smoke)
    preset = TUNE_BLUR if "--smoke" in argv else TUNE  # the smoke preset keeps its own steps and data
    return main([*preset, *argv, "--init", cfg.out, "--out", cfg.out])


if __name__ == "__main__":
    sys.exit(main())
