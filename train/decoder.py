"""Stage 3: the decoder — Karlo's `UnCLIPTextProjModel` + a `UNet2DConditionModel` at 32 px.

The UNet (`class_embed_type="identity"`, SimpleCrossAttn blocks as in Karlo) gets the CLIP image
embedding twice: projected and added to the timestep embedding (`class_labels`), and as 4 extra
context tokens in front of the projected prompt token states it cross-attends to. Training:

- v-prediction under the cosine schedule (whose terminal SNR is ~0), so the network learns the
  global colour at the highest noise levels — the feasibility run's epsilon decoder lost the
  background colour; min-SNR-5 loss weighting;
- classifier-free-guidance dropout as in the paper: the image embedding is replaced by text_proj's
  learned null embedding 10 % of the time, the caption by the empty prompt 50 % of the time;
- an EMA of the weights is what is saved (every `save_every` steps, so a cut-short run still ships);
- options the continuation (`decoder_tune`, below) uses: `snr_floor` floors the x0-space loss weight
  at low SNR (plain min-SNR gives the noisiest steps almost no weight, and those are where the
  object's place is decided: the base run drew objects pulled towards the centre); `p_recolor`
  repaints that fraction of objects with a random RGB colour (CLIP-embedded on the fly, the caption
  then not naming a colour), so colour is learnt as a continuous direction of the image embedding
  for every shape; `init` continues from a bundle's decoder.

The shipped `decoder_scheduler` is a DDIM config (v-prediction, trailing spacing): the
UnCLIPScheduler only implements epsilon / sample prediction.

    python -m train.decoder [--smoke] [--steps N] [--threads T] [--out DIR]
    python -m train decoder_tune [--out DIR]     # the four continuation phases, on DIR's decoder
    python -m train decoder_sharp --out COPY     # a trial (not shipped): more loss on the object's outline
    python -m train decoder_long --out COPY      # the fourth phase's whole 1,500-step schedule, on a copy
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
from diffusers import DDIMScheduler, UNet2DConditionModel
from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel

from nodes.personalise.common import share_weights
from nodes.shapes import domain
from nodes.unclip.models.clip import TextEncoding
from train import data as shapes_data
from train.common import (
    SHIPPED,
    cosine_lr,
    embedded_data,
    image_embeddings,
    parse,
    record_time,
    start,
    write_model_index,
)

log = logging.getLogger("train.decoder")


@dataclass
class Config:
    out: str = str(SHIPPED)
    steps: int = 1500
    # stop after this many steps (0: all of them); the learning-rate schedule still spans `steps`, so a run
    # stopped at a checkpoint is written again exactly by the same command with --stop-at that step
    stop_at: int = 0
    batch: int = 64
    lr: float = 5e-4
    warmup: int = 100
    channels: str = "48,96,144"
    layers_per_block: int = 1
    head_dim: int = 16
    cross_dim: int = 128
    p_drop_image: float = 0.1
    p_drop_text: float = 0.5
    min_snr: float = 5.0
    # floor of the loss weight in x0 terms at low SNR (0: plain min-SNR, which gives the noisiest steps,
    # where the layout is decided, almost no weight)
    snr_floor: float = 0.0
    # fraction of each batch whose object is repainted with a random RGB colour (never one whose nearest
    # palette colour would make a held-out pair), embedded by CLIP on the fly, its caption not naming the
    # colour: the decoder learns colour as a continuous direction of the embedding, for every shape
    p_recolor: float = 0.0
    # object pixels (and a 1-pixel rim around them) weigh 1 + fg_weight in the loss: a small star is ~3 % of
    # the image, so under a plain per-pixel mean its points cost almost nothing to blur away
    fg_weight: float = 0.0
    # when above 0, replaces fg_weight: the object's pixels and their rim carry this share of each image's loss
    # whatever the object's size (as DreamBooth's `object_share`), so a small star's outline is not outweighed
    object_share: float = 0.0
    # fraction of each batch whose timestep is drawn from [t_lo, t_hi) instead of all of [0, 1000): the middle
    # noise levels (SNR ~ 0.2 .. 6 under the cosine schedule), where the outline is settled
    p_mid: float = 0.0
    t_lo: int = 250
    t_hi: int = 750
    init: str = ""  # continue from this bundle's text_proj/ and decoder/ ("" = from scratch)
    ema: float = 0.995
    n_data: int = 60_000
    data_seed: int = 0
    seed: int = 2
    threads: int = 1
    log_every: int = 50
    save_every: int = 250


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=2, batch=8, channels="16,32,32", head_dim=8, cross_dim=16,
                  n_data=256, log_every=1, save_every=1000)


def scheduler() -> DDIMScheduler:
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                         clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, timestep_spacing="trailing")


def build(cfg: Config, clip_dim: int) -> tuple[UnCLIPTextProjModel, UNet2DConditionModel]:
    ch = tuple(int(c) for c in cfg.channels.split(","))
    groups = 16 if all(c % 16 == 0 for c in ch) else 8
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=3, out_channels=3,
        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * (len(ch) - 1),
        up_block_types=("SimpleCrossAttnUpBlock2D",) * (len(ch) - 1) + ("ResnetUpsampleBlock2D",),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=ch, layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.cross_dim, attention_head_dim=cfg.head_dim, resnet_time_scale_shift="scale_shift",
        class_embed_type="identity", norm_num_groups=groups)
    # time_embed_dim of the UNet is 4 × its first block's channels
    text_proj = UnCLIPTextProjModel(clip_extra_context_tokens=4, clip_embeddings_dim=clip_dim,
                                    time_embed_dim=4 * ch[0], cross_attention_dim=cfg.cross_dim)
    return text_proj, unet


def recolored_batch(ds, idx: np.ndarray, recol: np.ndarray, rng: np.random.Generator, clip,
                    emb: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """32 px images (B, 32, 32, 3) uint8 and image embeddings (B, D) with rows `recol` repainted."""
    rows = idx[recol]
    new_fg = shapes_data.random_object_colors(rng, ds.labels[rows, 2], ds.bg_rgb[rows])
    im64 = shapes_data.recolor(ds.images64[rows], ds.bg_rgb[rows], ds.fg_rgb[rows], new_fg)
    im32 = ds.images32[idx].copy()
    im32[recol] = shapes_data.downsample(im64)
    emb = emb.clone()
    emb[torch.from_numpy(recol)] = image_embeddings(clip, im64)
    return im32, emb


def object_mask32(images: np.ndarray, bg: np.ndarray) -> torch.Tensor:
    """(B, 32, 32) float: pixels visibly off the background colour, grown by one pixel (the object's rim)."""
    diff = np.abs(images.astype(np.int16) - bg[:, None, None, :].astype(np.int16)).max(-1)
    m = torch.from_numpy(diff > 24).float()[:, None]
    return F.max_pool2d(m, 3, stride=1, padding=1)[:, 0]


def save(out: Path, text_proj, unet) -> None:
    # fp16 storage halves the file; the loader casts back to fp32
    for name, model in (("text_proj", text_proj), ("decoder", unet)):
        copy.deepcopy(model).to(torch.float16).save_pretrained(out / name, safe_serialization=True)
    scheduler().save_pretrained(out / "decoder_scheduler")
    write_model_index(out)


def main(argv: list[str] | None = None) -> int:
    cfg, out, timer = start(Config, argv, smoke)
    if not 0 <= cfg.stop_at <= cfg.steps:
        raise SystemExit(f"--stop-at {cfg.stop_at}: give a step in 0..{cfg.steps} (--steps), 0 for all of them")
    ds, clip, emb = embedded_data(cfg, out, timer)  # emb: (N, D)
    with torch.no_grad():
        empty = clip.encode_text([""])
    text_proj, unet = build(cfg, clip.embed_dim)
    if cfg.init:
        from nodes.unclip.models import load_decoder

        init = load_decoder(cfg.init)
        text_proj, unet = init.text_proj.train(), init.unet.train()
        log.info("continuing from %s", cfg.init)
    modules = torch.nn.ModuleList([text_proj, unet])
    ema = copy.deepcopy(modules).eval().requires_grad_(False)
    params = list(modules.parameters())
    log.info("decoder params: %.2f M (unet %.2f M)", sum(p.numel() for p in params) / 1e6,
             sum(p.numel() for p in unet.parameters()) / 1e6)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    lr = cosine_lr(opt, cfg.warmup, cfg.steps)
    abar = scheduler().alphas_cumprod  # (T,)
    rng = np.random.default_rng(cfg.seed)
    images_all = ds.images32
    modules.train()
    run_loss = None
    last = min(cfg.stop_at or cfg.steps, cfg.steps)
    for step in range(last):
        idx = rng.choice(len(ds), size=cfg.batch, replace=False)
        img = emb[torch.from_numpy(idx)]
        recol = rng.random(cfg.batch) < cfg.p_recolor
        if recol.any():
            x0_uint8, img = recolored_batch(ds, idx, recol, rng, clip, img)
        else:
            x0_uint8 = images_all[idx]
        x0 = shapes_data.to_tensor(x0_uint8) * 2 - 1  # (B, 3, 32, 32) in [-1, 1]
        with torch.no_grad():
            text = clip.encode_text([domain.caption(ds.attrs(int(i)), rng, include=tuple(
                a for a in domain.random_subset(rng) if not (r and a == "color"))) for i, r in zip(idx, recol, strict=True)])
        drop_t = torch.rand(cfg.batch) < cfg.p_drop_text
        text = TextEncoding(torch.where(drop_t[:, None], empty.embeds, text.embeds),
                            torch.where(drop_t[:, None, None], empty.hidden, text.hidden),
                            torch.where(drop_t[:, None], empty.mask, text.mask))
        drop_i = (torch.rand(cfg.batch) < cfg.p_drop_image)[:, None]
        img = torch.where(drop_i, text_proj.learned_classifier_free_guidance_embeddings[None], img)
        hidden, additive = text_proj(image_embeddings=img, prompt_embeds=text.embeds,
                                     text_encoder_hidden_states=text.hidden, do_classifier_free_guidance=False)
        mask = F.pad(text.mask, (text_proj.clip_extra_context_tokens, 0), value=True)
        t = torch.randint(0, len(abar), (cfg.batch,))
        if cfg.p_mid:
            mid = torch.rand(cfg.batch) < cfg.p_mid
            t = torch.where(mid, torch.randint(cfg.t_lo, cfg.t_hi, (cfg.batch,)), t)
        a = abar[t].view(-1, 1, 1, 1)
        noise = torch.randn_like(x0)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        v = a.sqrt() * noise - (1 - a).sqrt() * x0
        pred = unet(xt, t, encoder_hidden_states=hidden, class_labels=additive, attention_mask=mask).sample
        snr = (a / (1 - a)).view(-1)
        # min-SNR-γ for v-prediction: x0-space weight min(snr, γ), here floored at snr_floor
        weight = snr.clamp(max=cfg.min_snr).clamp(min=cfg.snr_floor) / (snr + 1)
        err = (pred - v).pow(2).mean(dim=1)  # (B, 32, 32)
        if cfg.object_share:
            w = share_weights(object_mask32(x0_uint8, ds.bg_rgb[idx]), cfg.object_share)
            err = err * w / w.mean(dim=(1, 2), keepdim=True)
        elif cfg.fg_weight:
            w = 1 + cfg.fg_weight * object_mask32(x0_uint8, ds.bg_rgb[idx])
            err = err * w / w.mean(dim=(1, 2), keepdim=True)
        loss = (weight * err.mean(dim=(1, 2))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), modules.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if step % cfg.log_every == 0 or step == last - 1:
            log.info("step %d loss %.4f (ema %.4f)  %.0f s  %.1f samples/s", step, loss.item(), run_loss, timer(),
                     (step + 1) * cfg.batch / timer())
        if (step + 1) % cfg.save_every == 0 and step + 1 < last:
            save(out, ema[0], ema[1])
            log.info("checkpoint at step %d", step + 1)
    save(out, ema[0], ema[1])
    extra = {"steps": cfg.steps, **({"stop_at": last} if last < cfg.steps else {}),
             "batch": cfg.batch, "lr": cfg.lr, "min_snr": cfg.min_snr,
             "snr_floor": cfg.snr_floor, "p_recolor": cfg.p_recolor, "fg_weight": cfg.fg_weight,
             "object_share": cfg.object_share, "p_mid": cfg.p_mid, "t_range": [cfg.t_lo, cfg.t_hi],
             "params_M": round(sum(p.numel() for p in params) / 1e6, 2)}
    if cfg.init:
        # a continuation: keep the record of what it continued (the shipped decoder's whole history)
        prev = Path(cfg.init) / "training_log.json"
        extra["continued_from"] = json.loads(prev.read_text()).get("decoder") if prev.is_file() else cfg.init
    record_time(out, "decoder", timer(), extra)
    log.info("saved %s in %.0f s", out / "decoder", timer())
    return 0


# The last phase: the third phase's recipe (min-SNR-20 floored at 1, 30 % recoloured, object and rim 5x) for much
# longer at a lower lr (a fresh AdamW, so a warm-up), on 30,000 training-split scenes, saving every 250 steps. The
# shipped decoder is this schedule stopped at its step-1,250 save (`--stop-at`; the cosine still spans 1,500 steps):
# short prompts' clean scenes 0.85 -> 0.91 on the tuning set (docs/unclip.md, "Short prompts: a longer-trained
# decoder"). `python -m train decoder_long --out COPY` runs the whole schedule on a copy of a bundle.
LONG = ["--steps", "1500", "--batch", "32", "--lr", "1.5e-4", "--warmup", "50", "--snr-floor", "1",
        "--p-recolor", "0.3", "--min-snr", "20", "--fg-weight", "4", "--save-every", "250", "--n-data", "30000"]
LONG_STOP = 1250

# The continuation that the shipped decoder got after the base run above (the base run's 1,500 × 64
# samples under plain min-SNR-5 left the position half-learnt: min-SNR gives the noisiest steps, where
# the layout is decided, almost no weight). `python -m train decoder_tune` runs these phases in
# order, each from the bundle's current decoder.
TUNE_PHASES: list[list[str]] = [
    ["--steps", "600", "--batch", "32", "--lr", "2e-4", "--warmup", "20", "--snr-floor", "1", "--p-recolor", "0.3"],
    # then min-SNR-20: more weight on the low-noise steps, where a small star's points are drawn
    ["--steps", "600", "--batch", "32", "--lr", "2e-4", "--warmup", "20", "--snr-floor", "1", "--p-recolor", "0.3",
     "--min-snr", "20"],
    # then object pixels and their rim weigh 5x: the generated small stars were soft and thin (unseen shape .89 -> .93)
    ["--steps", "600", "--batch", "32", "--lr", "2e-4", "--warmup", "20", "--snr-floor", "1", "--p-recolor", "0.3",
     "--min-snr", "20", "--fg-weight", "4"],
    # then the same for 1,250 steps at 1.5e-4 (LONG above, stopped at its step-1,250 save)
    [*LONG, "--stop-at", str(LONG_STOP)],
]


def tune(argv: list[str] | None = None) -> int:
    """Run TUNE_PHASES on the bundle given by --out (default models/shapes-unclip); --smoke: 2 steps. A phase's
    own options win over the same options given here (--n-data, --save-every, --stop-at of the fourth phase);
    --steps other than the default (or --smoke) replaces every phase's length and drops the fourth's stop."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse(Config, argv, smoke)
    for phase in TUNE_PHASES:
        if "--smoke" in argv and "--n-data" in phase:  # the smoke preset keeps its own data
            at = phase.index("--n-data")
            phase = phase[:at] + phase[at + 2:]
        args = [*argv, *phase, "--init", cfg.out, "--out", cfg.out]
        if cfg.steps != Config.steps or "--smoke" in argv:
            args += ["--steps", str(cfg.steps), "--stop-at", "0"]  # an explicit --steps (or the smoke preset) wins
        code = main(args)
        if code:
            return code
    return 0


# A trial, not shipped (docs/unclip.md, "Short prompts' outlines"): a short continuation that puts more of the
# loss on the object's outline, for the short prompts' rounded 32 px outlines. Object pixels and their 1-px rim
# carry 55 % of each image's loss whatever its size, half of each batch is drawn at the middle noise levels,
# a small lr; the same caption / image dropout and recolouring as the shipped phases, so guidance still works.
SHARP = ["--steps", "300", "--batch", "32", "--lr", "5e-5", "--warmup", "20", "--snr-floor", "1", "--p-recolor", "0.3",
         "--min-snr", "20", "--object-share", "0.55", "--p-mid", "0.5", "--n-data", "12000"]


def continue_in_place(preset: list[str], argv: list[str] | None = None) -> int:
    """Continue the decoder of the bundle given by --out in place with a trial's `preset` (whose last option is
    its --n-data; run it on a copy of the bundle); options in `argv` override the preset's."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse(Config, argv, smoke)
    if "--smoke" in argv:
        preset = preset[:-2]  # the smoke preset keeps its own data
    args = [*preset, *argv, "--init", cfg.out, "--out", cfg.out]
    if "--smoke" in argv:
        args += ["--steps", "2"]
    return main(args)


def sharp(argv: list[str] | None = None) -> int:
    """Continue the decoder of the bundle given by --out in place with SHARP (run it on a copy of the bundle)."""
    return continue_in_place(SHARP, argv)


def long(argv: list[str] | None = None) -> int:
    """Continue the decoder of the bundle given by --out in place with the whole LONG schedule (run it on a copy of
    the bundle; `decoder_tune`'s last phase is LONG stopped at LONG_STOP)."""
    return continue_in_place(LONG, argv)


if __name__ == "__main__":
    sys.exit(main())
