"""LCM-LoRA: latent-consistency distillation of the shipped Shapes decoder into a few-step LoRA.

Latent-consistency distillation (Luo et al., "Latent Consistency Models"; the LoRA form of
"LCM-LoRA"), not consistency training: the shipped decoder is a good teacher, so distilling its
probability-flow ODE converges in far fewer steps than learning consistency from data alone, which
is what a 2-core CPU budget allows. (The decoder works in pixel space, so "latent" is only the name.)

- Teacher: the frozen shipped decoder with classifier-free guidance at the Decoder node's default
  scale (1.5) folded into the target, so the student needs one UNet pass per step and no guidance.
- ODE solver: one DDIM step on the teacher from t to t − 20 on the 50-step grid (19, 39, …, 999)
  that diffusers' `LCMScheduler` samples from (`original_inference_steps = 50`).
- Consistency function f(x, t) = c_skip(t) x + c_out(t) x̂₀(x, t), with the boundary scalings of
  `LCMScheduler.get_scalings_for_boundary_condition_discrete` (the ones `LCMScheduler.step` applies
  when sampling); target f(x̂_{t−20}, t − 20) from an EMA copy of the student (decay 0.95, as the
  consistency-distillation papers and diffusers' full-model LCM script do) without gradients;
  pseudo-Huber loss (c = 0.001); gradients clipped to norm 1.
- Guidance is folded (the decoder UNet has no guidance-scale embedding to condition on).
- Student: peft LoRA on the decoder UNet's attention projections, resnet convolutions and time
  embedding projections; everything else frozen.
- Data: Shapes training-split scenes rendered from a seed (never stored), their CLIP image
  embeddings, fresh captions (30 % empty, as the variation workflow decodes with an empty prompt).

Output: `<out>/loras/<name>.safetensors` in the layout of `train/lora.py` (peft keys prefixed
`unet.`, the LoraConfig as diffusers' metadata), applied with the Load LoRA node; sample with the
Decoder node's `scheduler = "lcm"`, 2–4 steps, guidance 1. Checkpoints every `save_every` steps and
stops cleanly after `max_minutes` of wall time, so a cut-short run still ships.

With the student as its own target (no EMA, as diffusers' LCM-LoRA script) an earlier run diverged
after ~100 steps at lr 2e-4, batch 16 (by step 50 at 1e-3): the target moves with every update and
chases itself. With the EMA target, lr 1e-4 and batch 4, 151 steps (42 min on one core of a machine
at load 13–20) kept the loss at 0.005–0.007 and the samples intact; the checkpoints at steps 50, 100
and 151 sample as well as the plain LCM schedule without a LoRA (tuning prompts, within one image of
16). The default of 100 steps is the shipped file. `<out>/checkpoints/` keeps every checkpoint.

    python -m train lcm [--steps N] [--max-minutes M] [--threads T]
    python -m train.lcm --smoke --out /tmp/x
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from nodes.lora.api import save_lora
from nodes.unclip.models.clip import TextEncoding
from nodes.unclip.models.decoder import conditioning
from train import data as shapes_data
from train.common import image_embeddings
from train.finetune import MODELS, alphas_cumprod, start

log = logging.getLogger("train.lcm")


@dataclass
class Config:
    out: str = str(MODELS)  # a models folder: writes <out>/loras/<name>.safetensors
    bundle: str = ""  # the frozen teacher bundle (default: <out>/shapes-unclip)
    name: str = "shapes-lcm"
    steps: int = 100  # the shipped file
    max_minutes: float = 60.0  # > 0: stop (and save) after this much wall time (the budget on 2 cores)
    batch: int = 4  # small, for more steps in the CPU budget (16 was ~1 step/min on the busy machine)
    lr: float = 1e-4
    ema_decay: float = 0.95  # the target network's EMA of the student's LoRA weights
    warmup: int = 10
    rank: int = 16
    alpha: float = 16.0
    targets: str = "to_q,to_k,to_v,to_out.0,add_k_proj,add_v_proj,conv1,conv2,time_emb_proj"
    guidance: float = 1.5  # the teacher's classifier-free guidance, folded into the student
    ddim_steps: int = 50  # the teacher's ODE grid = LCMScheduler's original_inference_steps
    huber_c: float = 0.001
    p_empty: float = 0.3  # empty captions (variations decode with an empty prompt)
    n_scenes: int = 3000
    seed: int = 11
    threads: int = 1
    log_every: int = 10
    save_every: int = 25


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=2, batch=4, n_scenes=16, log_every=1, max_minutes=0.0)


def lcm_scheduler(dec, ddim_steps: int):
    """diffusers' LCMScheduler on the decoder's own noise schedule (as the Decoder node builds it)."""
    from diffusers import LCMScheduler

    return LCMScheduler.from_config(dec.scheduler.config, original_inference_steps=ddim_steps)


def main(argv: list[str] | None = None) -> int:
    from peft import LoraConfig

    cfg, out, timer, bundle, (clip, dec) = start(Config, argv, smoke)
    data = shapes_data.generate(cfg.seed, cfg.n_scenes)
    emb_all = image_embeddings(clip, data.images64)
    x0_all = shapes_data.to_tensor(data.images32) * 2 - 1
    rng = np.random.default_rng(cfg.seed)
    uncond = clip.encode_text([""])
    log.info("data: %d scenes + CLIP embeddings in %.0f s", len(data), timer())

    teacher = copy.deepcopy(dec.unet).requires_grad_(False).eval()
    unet = dec.unet
    targets = [t.strip() for t in cfg.targets.split(",") if t.strip()]
    lora_cfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=targets, init_lora_weights="gaussian")
    unet.add_adapter(lora_cfg)
    trained = [name for name, p in unet.named_parameters() if p.requires_grad]
    params = [p for p in unet.parameters() if p.requires_grad]
    # the target network: the student with an EMA of its LoRA weights, never trained directly
    target_unet = copy.deepcopy(unet).requires_grad_(False).eval()
    ema_params = [dict(target_unet.named_parameters())[name] for name in trained]
    n_params = sum(p.numel() for p in params)
    log.info("LoRA rank %d on %s: %.1f k trainable params", cfg.rank, targets, n_params / 1e3)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup))

    abar = alphas_cumprod(dec)
    lcm = lcm_scheduler(dec, cfg.ddim_steps)
    k = lcm.config.num_train_timesteps // cfg.ddim_steps
    grid = torch.arange(1, cfg.ddim_steps + 1) * k - 1  # 19, 39, …, 999: LCMScheduler's training grid
    gen = torch.Generator().manual_seed(cfg.seed)
    path = out / "loras" / f"{cfg.name}.safetensors"

    def x0_of(v: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = abar[t].view(-1, 1, 1, 1)
        return a.sqrt() * x - (1 - a).sqrt() * v

    def consistency(model, x: torch.Tensor, t: torch.Tensor, hidden, additive, mask) -> torch.Tensor:
        v = model(x, t, encoder_hidden_states=hidden, class_labels=additive, attention_mask=mask).sample[:, :3]
        c_skip, c_out = lcm.get_scalings_for_boundary_condition_discrete(t)
        return c_skip.view(-1, 1, 1, 1) * x + c_out.view(-1, 1, 1, 1) * x0_of(v, x, t)

    def save(steps_done: int) -> None:
        info = {"config": asdict(cfg), "steps_done": steps_done, "wall_seconds": round(timer(), 1),
                "cpu_seconds": round(time.process_time(), 1), "threads": torch.get_num_threads(),
                "trainable_params": n_params, "bundle": str(bundle), "method": "latent consistency distillation"}
        save_lora(path, unet, lora_cfg.to_dict(), info)
        keep = out / "checkpoints" / f"{cfg.name}-step{steps_done}.safetensors"
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_bytes(path.read_bytes())

    unet.train()
    run_loss = None
    steps_done = 0
    for step in range(cfg.steps):
        idx = rng.choice(len(data), size=cfg.batch, replace=False)
        x0 = x0_all[torch.from_numpy(idx)]
        emb = emb_all[torch.from_numpy(idx)]
        with torch.no_grad():
            text = clip.encode_text(data.captions(idx, rng, p_empty=cfg.p_empty))
            both = TextEncoding.cat([uncond.expand(cfg.batch), text])
            h2, a2, m2 = conditioning(dec, emb, both, do_cfg=True)  # [uncond; cond] rows
            hidden, additive, mask = h2[cfg.batch:], a2[cfg.batch:], m2[cfg.batch:]
            i = torch.randint(0, cfg.ddim_steps, (cfg.batch,), generator=gen)
            t = grid[i]
            t_prev = (t - k).clamp(min=0)
            a = abar[t].view(-1, 1, 1, 1)
            noise = torch.randn(x0.shape, generator=gen)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            # teacher: guided v, one DDIM step t → t_prev
            v2 = teacher(torch.cat([xt, xt]), torch.cat([t, t]), encoder_hidden_states=h2, class_labels=a2,
                         attention_mask=m2).sample[:, :3]
            v_u, v_c = v2.chunk(2)
            v = v_u + cfg.guidance * (v_c - v_u)
            x0_t = x0_of(v, xt, t)
            eps_t = (1 - a).sqrt() * xt + a.sqrt() * v
            a_prev = abar[t_prev].view(-1, 1, 1, 1)
            x_prev = a_prev.sqrt() * x0_t + (1 - a_prev).sqrt() * eps_t
            target = consistency(target_unet, x_prev, t_prev, hidden, additive, mask)
        pred = consistency(unet, xt, t, hidden, additive, mask)
        loss = (((pred - target) ** 2 + cfg.huber_c ** 2).sqrt() - cfg.huber_c).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - cfg.ema_decay)
        steps_done = step + 1
        run_loss = loss.item() if run_loss is None else 0.95 * run_loss + 0.05 * loss.item()
        if step % cfg.log_every == 0:
            log.info("step %d loss %.4f (avg %.4f)  %.0f s", step, loss.item(), run_loss, timer())
        if steps_done % cfg.save_every == 0:
            save(steps_done)
            log.info("checkpoint at step %d", steps_done)
        if cfg.max_minutes > 0 and timer() > cfg.max_minutes * 60:
            log.info("wall-time budget of %.0f min reached at step %d", cfg.max_minutes, steps_done)
            break
    unet.eval()
    save(steps_done)
    log.info("saved %s (%.0f KB) after %d steps in %.0f s", path, path.stat().st_size / 1024, steps_done, timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
