"""The diffusion prior: CLIP text encoding → CLIP image embedding (diffusers `PriorTransformer`).

`sample_prior` is `UnCLIPPipeline`'s prior loop, stage by stage: classifier-free guidance against the
negative prompt's encoding (the empty prompt by default), `prev_timestep` for the UnCLIPScheduler,
and `post_process_latents` (un-normalise with the model's CLIP mean and std) at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import PriorTransformer
from diffusers.utils.torch_utils import randn_tensor

from . import schedulers as sch
from .clip import TextEncoding

Callback = Callable[[int, int, "torch.Tensor | None"], None]


@dataclass
class PriorModel:
    prior: PriorTransformer
    scheduler: object  # the checkpoint's scheduler; sampling works on a fresh copy

    @property
    def embedding_dim(self) -> int:
        return int(self.prior.config.embedding_dim)

    @property
    def context_length(self) -> int:
        return int(self.prior.config.num_embeddings)


SCHEDULER_DIRS = ("prior_scheduler", "scheduler")  # Karlo / shapes-unclip, Kandinsky 2.2 prior


def load_prior(path: str | Path) -> PriorModel:
    """Load `prior/` and its scheduler (`prior_scheduler/` in a shapes-unclip bundle or a Karlo root,
    `scheduler/` in a Kandinsky 2.2 prior folder)."""
    root = Path(path)
    sched = next((root / d for d in SCHEDULER_DIRS if (root / d).is_dir()), None)
    if not (root / "prior").is_dir() or sched is None:
        missing = "prior/" if not (root / "prior").is_dir() else "its scheduler folder"
        raise FileNotFoundError(f"no prior in {root}: {missing} is missing; expected prior/ with prior_scheduler/ "
                                "(Karlo layout) or with scheduler/ (Kandinsky 2.2 prior layout)")
    prior = PriorTransformer.from_pretrained(root, subfolder="prior", torch_dtype=torch.float32, low_cpu_mem_usage=False).eval()
    return PriorModel(prior, sch.load_scheduler(sched))


def _check_context(model: PriorModel, enc: TextEncoding) -> None:
    if enc.hidden.shape[1] != model.context_length or enc.embeds.shape[-1] != model.embedding_dim:
        raise ValueError(f"this prior expects text of {model.context_length} tokens × {model.embedding_dim} "
                         f"(the CLIP it was trained with) but got {tuple(enc.hidden.shape[1:])}; "
                         "encode the prompt with the CLIP of the same bundle")


def sample_prior(model: PriorModel, cond: TextEncoding, uncond: TextEncoding, guidance: float = 4.0,
                 steps: int = 25, generator: torch.Generator | None = None, num_per_prompt: int = 1,
                 callback: Callback | None = None, scheduler: str | None = None,
                 latents: torch.Tensor | None = None, init: torch.Tensor | None = None,
                 strength: float = 1.0) -> torch.Tensor:
    """Sample CLIP image embeddings, (B × num_per_prompt, D), from text encodings.

    cond: the prompts (B rows); uncond: the negative prompt (1 or B rows). Guidance is on when it is
    not 1. The initial noise is `randn_tensor((B·n, D), generator)` and the same generator drives the
    scheduler's step noise. `latents` replaces the initial noise (tests).

    `init` (image embeddings, 1 or B·n rows) starts sampling from those embeddings noised to the
    level of the last `strength` share of the steps, and runs only those steps (diffusers'
    img2img convention: strength 1 ignores nothing of the schedule, small strengths keep the init's
    layout and let the prior only refine it).
    """
    _check_context(model, cond)
    prior = model.prior
    cond = cond.repeat_interleave(num_per_prompt)
    batch = cond.embeds.shape[0]
    do_cfg = guidance != 1.0
    if do_cfg:
        unc = uncond.expand(batch) if uncond.embeds.shape[0] == 1 else uncond.repeat_interleave(num_per_prompt)
        enc = TextEncoding.cat([unc, cond])  # [uncond, cond], the pipeline's order
    else:
        enc = cond
    sched = sch.make_scheduler(model.scheduler, scheduler)
    ts = sch.timesteps(sched, steps)
    dtype = prior.dtype
    if latents is None:
        latents = randn_tensor((batch, model.embedding_dim), generator=generator, dtype=dtype)
    if init is None:
        latents = latents.to(dtype) * sched.init_noise_sigma
    else:
        if init.shape[0] not in (1, batch) or init.shape[-1] != model.embedding_dim:
            raise ValueError(f"init has shape {tuple(init.shape)}; expected (1 or {batch}, {model.embedding_dim}): "
                             "one image embedding for all samples or one per sample")
        ts = ts[len(ts) - max(1, min(len(ts), round(strength * len(ts)))):]
        x0 = (init.to(dtype) - prior.clip_mean) / prior.clip_std  # the prior's latent space
        latents = sched.add_noise(x0.expand(batch, -1), latents.to(dtype), ts[:1])
    for i, t in enumerate(ts):
        x = torch.cat([latents] * 2) if do_cfg else latents
        x = sched.scale_model_input(x, t)
        pred = prior(x, timestep=t, proj_embedding=enc.embeds.to(dtype), encoder_hidden_states=enc.hidden.to(dtype),
                     attention_mask=enc.mask).predicted_image_embedding
        if do_cfg:
            p_uncond, p_text = pred.chunk(2)
            pred = p_uncond + guidance * (p_text - p_uncond)
        latents = sch.step(sched, pred, t, latents, sch.prev_timestep(ts, i), generator).prev_sample
        if callback is not None:
            callback(i + 1, len(ts), None)
    return prior.post_process_latents(latents)


def prior_loss(model: PriorModel, image_embeds: torch.Tensor, text: TextEncoding,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The prior's training loss (x₀ objective on its own schedule) for CLIP image embeddings (B, D)
    as targets of the prompts `text` (B rows): what fine-tuning the prior on new pairs minimises."""
    prior = model.prior
    x0 = (image_embeds - prior.clip_mean) / prior.clip_std  # the prior's latent space
    abar = torch.as_tensor(model.scheduler.alphas_cumprod, dtype=torch.float32)
    t = torch.randint(0, len(abar), (len(x0),), generator=generator)
    a = abar[t][:, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=generator)
    pred = prior(xt, timestep=t, proj_embedding=text.embeds, encoder_hidden_states=text.hidden,
                 attention_mask=text.mask).predicted_image_embedding
    return torch.nn.functional.mse_loss(pred, x0)
