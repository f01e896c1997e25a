"""A ControlNet for the frozen Shapes decoder: the control image is the object's silhouette.

`ControlNetModel.from_unet` (our `UnCLIPControlNetModel`, which knows Karlo's SimpleCrossAttn mid
block) copies the decoder UNet's encoder half; `conditioning_embedding_out_channels=(16,)` keeps
the control image at the decoder's own 32 px. The decoder (text_proj + UNet) and CLIP are frozen;
the ControlNet trains with the decoder's loss (v-prediction, min-SNR-5) on Shapes scenes whose
control image is the exact object mask (white on black, `domain.object_mask` at 32 px).

So that the silhouette wins over the prompt: for `p_mismatch` of the rows the caption and the
CLIP image embedding come from a twin scene — same colours, shape and size at another position —
while the target image and its silhouette keep the original position. `p_uncond` of the rows get
the null image embedding and the empty prompt (the unconditional branch of guidance, which the
ControlNet also steers at sampling time).

Output: `<out>/controlnet-shapes/` in diffusers `save_pretrained` layout (config.json +
diffusion_pytorch_model.safetensors, fp16), written every `save_every` steps and at the end. The
base bundle is read from `<out>/shapes-unclip` (or `--bundle`).

    python -m train.controlnet [--smoke] [--steps N] [--threads T] [--out MODELS_DIR] [--bundle DIR]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from nodes.controlnet.model import check_compatible, controlnet_from_unet, load_controlnet, save_controlnet
from nodes.shapes import domain
from nodes.unclip.models.clip import TextEncoding
from train import data as shapes_data
from train.common import image_embeddings
from train.finetune import MODELS, alphas_cumprod, decoder_loss, render, start

log = logging.getLogger("train.controlnet")


@dataclass
class Config:
    out: str = str(MODELS)  # a models folder: writes <out>/<name>/
    bundle: str = ""  # the frozen base bundle (default: <out>/shapes-unclip)
    name: str = "controlnet-shapes"
    steps: int = 900
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 50
    p_mismatch: float = 0.5
    p_uncond: float = 0.1
    n_data: int = 6000
    min_snr: float = 5.0
    init: str = ""  # continue from this ControlNet folder (e.g. one trained on a decoder checkpoint)
    seed: int = 7
    threads: int = 1
    log_every: int = 25
    save_every: int = 150


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=2, batch=8, n_data=32, log_every=1, save_every=1000)


def twin_scenes(rng: np.random.Generator, scenes: list[domain.Scene]) -> list[domain.Scene]:
    """The same object (colours, shape, size) at another grid position."""
    out = []
    for s in scenes:
        others = [p for p in domain.POSITION_NAMES if p != s.position]
        t = domain.make_scene(rng, s.color, s.background, s.shape, s.size, others[int(rng.integers(len(others)))])
        out.append(dataclasses.replace(t, fg_rgb=s.fg_rgb, bg_rgb=s.bg_rgb))
    return out


def silhouettes(scenes: list[domain.Scene], size: int) -> torch.Tensor:
    """Control images (N, 3, size, size): 1 on the object, 0 elsewhere."""
    masks = np.stack([domain.object_mask(s, size) for s in scenes]).astype(np.float32)
    return torch.from_numpy(masks)[:, None].repeat(1, 3, 1, 1)


def main(argv: list[str] | None = None) -> int:
    cfg, out, timer, bundle, (clip, dec) = start(Config, argv, smoke)
    size = dec.sample_size
    rng = np.random.default_rng(cfg.seed)

    scenes = domain.sample_scenes(cfg.seed, cfg.n_data, split="train")
    twins = twin_scenes(rng, scenes)
    im64, im32 = render(scenes)
    tw64, _ = render(twins)
    emb, emb_twin = image_embeddings(clip, im64), image_embeddings(clip, tw64)
    control = silhouettes(scenes, size)
    log.info("data: %d scenes + twins at other positions, embeddings in %.0f s", len(scenes), timer())

    if cfg.init:
        cn = load_controlnet(cfg.init)
        check_compatible(cn, dec.unet)
        log.info("initialised the ControlNet from %s", cfg.init)
    else:
        cn = controlnet_from_unet(dec.unet)
    cn.train()
    params = list(cn.parameters())
    n_params = sum(p.numel() for p in params)
    log.info("ControlNet: %.2f M params (decoder UNet %.2f M)", n_params / 1e6,
             sum(p.numel() for p in dec.unet.parameters()) / 1e6)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(s, cfg.steps)
                                                                                       / cfg.steps))))
    abar = alphas_cumprod(dec)
    gen = torch.Generator().manual_seed(cfg.seed)
    null = dec.text_proj.learned_classifier_free_guidance_embeddings[None]
    path = out / cfg.name

    def save(step: int) -> None:
        save_controlnet(cn, path)
        info = {"config": asdict(cfg), "steps_done": step, "wall_seconds": round(timer(), 1),
                "cpu_seconds": round(time.process_time(), 1),
                "threads": torch.get_num_threads(), "params_M": round(n_params / 1e6, 3), "bundle": str(bundle)}
        (path / "training_log.json").write_text(json.dumps(info, indent=2) + "\n")

    run_loss = None
    for step in range(cfg.steps):
        idx = rng.choice(len(scenes), size=cfg.batch, replace=False)
        u = rng.random(cfg.batch)
        mismatch = u < cfg.p_mismatch
        uncond = u >= 1 - cfg.p_uncond
        cond_scenes = [twins[i] if m else scenes[i] for i, m in zip(idx, mismatch, strict=True)]
        caps = ["" if uc else domain.caption(s, rng) for s, uc in zip(cond_scenes, uncond, strict=True)]
        t_idx = torch.from_numpy(idx)
        img = torch.where(torch.from_numpy(mismatch)[:, None], emb_twin[t_idx], emb[t_idx])
        img = torch.where(torch.from_numpy(uncond)[:, None], null, img)
        with torch.no_grad():
            text = clip.encode_text(caps)
        text = TextEncoding(text.embeds, text.hidden, text.mask)
        x0 = shapes_data.to_tensor(im32[idx]) * 2 - 1
        cond_img = control[t_idx]

        def residuals(xt, t, hidden, additive, mask, cond_img=cond_img):
            down, mid = cn(xt, t, encoder_hidden_states=hidden, controlnet_cond=cond_img, class_labels=additive,
                           attention_mask=mask, return_dict=False)
            return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}

        loss = decoder_loss(dec, x0, img, text, abar, gen, cfg.min_snr, unet_kwargs=residuals)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        run_loss = loss.item() if run_loss is None else 0.95 * run_loss + 0.05 * loss.item()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("step %d loss %.4f (avg %.4f)  %.0f s  %.1f samples/s", step, loss.item(), run_loss, timer(),
                     (step + 1) * cfg.batch / timer())
        if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            save(step + 1)
            log.info("checkpoint at step %d", step + 1)
    cn.eval()
    save(cfg.steps)
    size_kb = sum(p.stat().st_size for p in path.iterdir()) / 1024
    log.info("saved %s (%.0f KB) in %.0f s", path, size_kb, timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
