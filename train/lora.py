"""A LoRA that teaches the frozen Shapes decoder a colour it never saw: "pink".

The base models were trained on an 8-colour palette; the word "pink" never occurred in a caption
(CLIP's token for it is untrained) and no image had a pink object. With peft, rank-r LoRA adapters
are added to the decoder UNet's attention projections (self-attention q/k/v/out and the
cross-attention key/value projections of the text tokens), everything else frozen, and trained
with the decoder's own loss (v-prediction, min-SNR-5) on:

- pink scenes (an object of RGB ≈ (255, 105, 180) ± 12 on a palette background) with captions that
  name the colour "pink". The image embedding the decoder gets is, per row, the CLIP embedding of
  the image (40 %), what the frozen prior samples for the row's full caption (40 %: what the
  text → image pipeline will give it), or text_proj's null embedding (20 %), so that the
  colour has to come from the word;
- ordinary palette scenes (half of every batch), so that the other colours stay as they were.

With `prior_rank > 0` (the default) the same run also trains a LoRA on the frozen prior's attention and
input projections, with the prior's own x₀ objective: captions naming "pink" → the CLIP image
embedding of the pink render (palette captions keep theirs), so that text → image carries the colour
in the image embedding as well as in the decoder's text tokens. The file then holds `prior.` keys
beside the `unet.` ones, which the Load LoRA node applies with its `prior_strength`.

Output: `<out>/loras/shapes-pink.safetensors` — peft keys prefixed `unet.` (diffusers' pipeline
LoRA layout) with the LoraConfig in the safetensors metadata, so diffusers' `load_lora_adapter`
reads it too. The base bundle is read from `<out>/shapes-unclip` (or `--bundle`).

    python -m train.lora [--smoke] [--steps N] [--threads T] [--out MODELS_DIR] [--bundle DIR]
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from nodes.lora.api import save_lora
from nodes.shapes import domain
from nodes.unclip.models import prior_loss as prior_objective
from nodes.unclip.models.clip import TextEncoding
from train import data as shapes_data
from train.common import image_embeddings
from train.finetune import MODELS, alphas_cumprod, decoder_loss, render, start

log = logging.getLogger("train.lora")


@dataclass
class Config:
    out: str = str(MODELS)  # a models folder: writes <out>/loras/<name>.safetensors
    bundle: str = ""  # the frozen base bundle (default: <out>/shapes-unclip)
    name: str = "shapes-pink"
    word: str = "pink"
    rgb: str = "255,105,180"
    steps: int = 500
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 30
    rank: int = 8
    alpha: float = 8.0
    targets: str = "to_q,to_k,to_v,to_out.0,add_k_proj,add_v_proj"
    prior_rank: int = 8  # 0: no prior LoRA (decoder only)
    prior_targets: str = "to_q,to_k,to_v,to_out.0,encoder_hidden_states_proj,embedding_proj"
    prior_batch: int = 128
    prior_lr: float = 1e-3
    p_concept: float = 0.5  # fraction of each batch that is pink
    p_prior_emb: float = 0.4  # pink rows: image embedding sampled by the prior from the caption
    p_null_emb: float = 0.2  # pink rows: text_proj's null image embedding
    n_concept: int = 3000
    n_keep: int = 3000
    prior_steps: int = 10
    min_snr: float = 5.0
    init: str = ""  # continue from this LoRA file (same rank and targets), e.g. one trained on a checkpoint
    seed: int = 5
    threads: int = 1
    log_every: int = 25
    save_every: int = 50  # a cut-short run still ships


def smoke() -> Config:
    return Config(out="/tmp/nodegraph-smoke", steps=2, batch=8, prior_batch=16, n_concept=32, n_keep=32, prior_steps=2,
                  log_every=1)


def concept_scenes(rng: np.random.Generator, n: int, rgb: tuple[int, int, int]) -> list[domain.Scene]:
    """Random scenes (any split: the palette colour is replaced anyway) with a jittered `rgb` object."""
    import dataclasses

    scenes = []
    for _ in range(n):
        s = domain.sample_scene(rng, "any")
        fg = tuple(int(v) for v in np.clip(np.array(rgb) + rng.integers(-12, 13, size=3), 0, 255))
        scenes.append(dataclasses.replace(s, fg_rgb=fg))
    return scenes


def concept_caption(scene: domain.Scene, word: str, rng: np.random.Generator, full: bool = False) -> str:
    """A caption that always names the new colour word (and a random subset of the rest)."""
    attrs = {**scene.attributes(), "color": word}
    include = domain.ATTRIBUTES if full else tuple(set(domain.random_subset(rng)) | {"color"})
    return domain.caption(attrs, rng, include=include)


@torch.no_grad()
def prior_bank(pri, clip, captions: list[str], steps: int, seed: int, batch: int = 64) -> torch.Tensor:
    """What the frozen prior samples for each caption (guidance 4, as the Prior node's default)."""
    from nodes.unclip.models import sample_prior

    uncond = clip.encode_text([""])
    out = []
    for i in range(0, len(captions), batch):
        cond = clip.encode_text(captions[i:i + batch])
        out.append(sample_prior(pri, cond, uncond, guidance=4.0, steps=steps,
                                generator=torch.Generator().manual_seed(seed + i)))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> int:
    from peft import LoraConfig

    cfg, out, timer, bundle, (clip, dec, pri) = start(Config, argv, smoke, prior=True)
    rgb = tuple(int(v) for v in cfg.rgb.split(","))
    rng = np.random.default_rng(cfg.seed)

    # data: pink scenes (+ captions, CLIP and prior embeddings) and ordinary scenes to keep
    pink = concept_scenes(rng, cfg.n_concept, rgb)
    pink64, pink32 = render(pink)
    pink_emb = image_embeddings(clip, pink64)
    full_caps = [concept_caption(s, cfg.word, rng, full=True) for s in pink]
    bank = prior_bank(pri, clip, full_caps, cfg.prior_steps, cfg.seed)
    keep = shapes_data.generate(cfg.seed + 1, cfg.n_keep)
    keep_emb = image_embeddings(clip, keep.images64)
    log.info("data: %d pink + %d palette scenes, prior bank in %.0f s", len(pink), len(keep), timer())

    unet = dec.unet
    targets = [t.strip() for t in cfg.targets.split(",") if t.strip()]
    lora_cfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=targets, init_lora_weights="gaussian")
    unet.add_adapter(lora_cfg)
    prior = pri.prior
    prior_cfg = None
    if cfg.prior_rank > 0:
        prior_targets = [t.strip() for t in cfg.prior_targets.split(",") if t.strip()]
        prior_cfg = LoraConfig(r=cfg.prior_rank, lora_alpha=float(cfg.prior_rank), target_modules=prior_targets,
                               init_lora_weights="gaussian")
        prior.add_adapter(prior_cfg)
    if cfg.init:
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        init = load_file(cfg.init)
        for prefix, model in (("unet.", unet), ("prior.", prior if prior_cfg else None)):
            state = {k.removeprefix(prefix): v for k, v in init.items() if k.startswith(prefix)}
            if model is None or not state:
                continue
            result = set_peft_model_state_dict(model, state)
            if getattr(result, "unexpected_keys", None):
                raise SystemExit(f"--init {cfg.init} does not fit (unexpected {result.unexpected_keys[:3]})")
        log.info("initialised the LoRA from %s", cfg.init)
    params = [p for p in unet.parameters() if p.requires_grad]
    prior_params = [p for p in prior.parameters() if p.requires_grad] if prior_cfg else []
    n_params = sum(p.numel() for p in params) + sum(p.numel() for p in prior_params)
    log.info("LoRA: rank %d on %s (+ prior rank %d), %.1f k trainable params", cfg.rank, targets, cfg.prior_rank,
             n_params / 1e3)
    groups = [{"params": params, "lr": cfg.lr}] + ([{"params": prior_params, "lr": cfg.prior_lr}] if prior_params else [])
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + np.cos(np.pi * min(s, cfg.steps) / cfg.steps)))
    abar = alphas_cumprod(dec)
    gen = torch.Generator().manual_seed(cfg.seed)
    null = dec.text_proj.learned_classifier_free_guidance_embeddings[None]
    n_pink = max(1, round(cfg.batch * cfg.p_concept))
    path = out / "loras" / f"{cfg.name}.safetensors"

    def save(steps_done: int) -> None:
        info = {"config": asdict(cfg), "steps_done": steps_done, "wall_seconds": round(timer(), 1),
                "cpu_seconds": round(time.process_time(), 1),
                "threads": torch.get_num_threads(), "trainable_params": n_params, "bundle": str(bundle)}
        save_lora(path, unet, lora_cfg.to_dict(), info, prior if prior_cfg else None,
                  prior_cfg.to_dict() if prior_cfg else None)

    n_prior_pink = max(1, cfg.prior_batch // 2)

    def prior_loss() -> torch.Tensor:
        ip = rng.choice(len(pink), size=n_prior_pink, replace=False)
        ik = rng.choice(len(keep), size=cfg.prior_batch - n_prior_pink, replace=False)
        caps = [concept_caption(pink[i], cfg.word, rng) for i in ip] + keep.captions(ik, rng)
        emb = torch.cat([pink_emb[torch.from_numpy(ip)], keep_emb[torch.from_numpy(ik)]])
        with torch.no_grad():
            text = clip.encode_text(caps)
        return prior_objective(pri, emb, text, gen)

    unet.train()
    if prior_cfg:
        prior.train()
    run_loss = None
    for step in range(cfg.steps):
        ip = rng.choice(len(pink), size=n_pink, replace=False)
        ik = rng.choice(len(keep), size=cfg.batch - n_pink, replace=False)
        u = rng.random(n_pink)
        use_prior = u < cfg.p_prior_emb
        use_null = (u >= cfg.p_prior_emb) & (u < cfg.p_prior_emb + cfg.p_null_emb)
        emb_p = pink_emb[torch.from_numpy(ip)].clone()
        emb_p[torch.from_numpy(use_prior)] = bank[torch.from_numpy(ip[use_prior])]
        emb_p[torch.from_numpy(use_null)] = null
        caps = [full_caps[i] if use_prior[j] else concept_caption(pink[i], cfg.word, rng) for j, i in enumerate(ip)]
        caps += keep.captions(ik, rng)
        x0 = shapes_data.to_tensor(np.concatenate([pink32[ip], keep.images32[ik]])) * 2 - 1
        emb = torch.cat([emb_p, keep_emb[torch.from_numpy(ik)]])
        with torch.no_grad():
            text = clip.encode_text(caps)
        text = TextEncoding(text.embeds, text.hidden, text.mask)
        loss = decoder_loss(dec, x0, emb, text, abar, gen, cfg.min_snr)
        if prior_cfg:
            p_loss = prior_loss()
            loss_total = loss + p_loss
        else:
            loss_total = loss
        opt.zero_grad(set_to_none=True)
        loss_total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        if prior_params:
            torch.nn.utils.clip_grad_norm_(prior_params, 1.0)
        opt.step()
        sched.step()
        run_loss = loss.item() if run_loss is None else 0.95 * run_loss + 0.05 * loss.item()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("step %d loss %.4f (avg %.4f)%s  %.0f s", step, loss.item(), run_loss,
                     f"  prior loss {p_loss.item():.4f}" if prior_cfg else "", timer())
        if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            save(step + 1)
            log.info("checkpoint at step %d", step + 1)
    unet.eval()
    prior.eval()
    save(cfg.steps)
    log.info("saved %s (%.0f KB) in %.0f s", path, path.stat().st_size / 1024, timer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
