"""The decoder: CLIP image embedding (+ prompt) → 64 px / 32 px image, Karlo style.

`UnCLIPTextProjModel` turns the image embedding and the prompt into (a) an additive time embedding
passed as `class_labels` to a `UNet2DConditionModel(class_embed_type="identity")` and (b) the
cross-attention context: 4 extra tokens projected from the image embedding followed by the
projected, layer-normed prompt token states. With guidance, `text_proj` itself substitutes its
learned null image embedding in the unconditional half, and the unconditional text is the negative
prompt's encoding. `sample_decoder` is `UnCLIPPipeline`'s decoder loop: the text mask is padded
by the extra tokens, the learned variance (when the model predicts one) is split off before
guidance and re-attached for the UnCLIPScheduler, and the result is clamped to [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
from diffusers.utils.torch_utils import randn_tensor

from . import schedulers as sch
from .clip import TextEncoding

Callback = Callable[[int, int, "torch.Tensor | None"], None]
ExtraKwargs = Callable[..., dict]
LatentHook = Callable[..., torch.Tensor]


@dataclass
class DecoderModel:
    text_proj: UnCLIPTextProjModel
    unet: UNet2DConditionModel
    scheduler: object

    @property
    def sample_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def embedding_dim(self) -> int:
        return int(self.text_proj.config.clip_embeddings_dim)


def load_decoder(path: str | Path) -> DecoderModel:
    """Load `text_proj/`, `decoder/` and `decoder_scheduler/` from a shapes-unclip bundle or a Karlo root."""
    root = Path(path)
    for sub in ("text_proj", "decoder", "decoder_scheduler"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"no decoder in {root}: expected text_proj/, decoder/ and decoder_scheduler/ "
                                    f"(Karlo layout); {sub}/ is missing")
    text_proj = UnCLIPTextProjModel.from_pretrained(root, subfolder="text_proj", torch_dtype=torch.float32, low_cpu_mem_usage=False).eval()
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="decoder", torch_dtype=torch.float32, low_cpu_mem_usage=False).eval()
    return DecoderModel(text_proj, unet, sch.load_scheduler(root / "decoder_scheduler"))


def conditioning(model: DecoderModel, image_embeds: torch.Tensor, text: TextEncoding,
                 do_cfg: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """text_proj outputs: (context (B', 4+L, C), additive time embedding (B', T), context mask (B', 4+L)).

    With do_cfg, `text` must already be [uncond; cond] (2B rows) and B' = 2B.
    """
    hidden, additive = model.text_proj(image_embeddings=image_embeds, prompt_embeds=text.embeds,
                                       text_encoder_hidden_states=text.hidden, do_classifier_free_guidance=do_cfg)
    mask = F.pad(text.mask, (model.text_proj.clip_extra_context_tokens, 0), value=True)
    return hidden, additive, mask


def sample_decoder(model: DecoderModel, image_embeds: torch.Tensor, cond: TextEncoding, uncond: TextEncoding,
                   guidance: float = 8.0, steps: int = 25, generator: torch.Generator | None = None,
                   scheduler: str | None = None, callback: Callback | None = None,
                   latents: torch.Tensor | None = None, extra_unet_kwargs: ExtraKwargs | None = None,
                   latent_hook: LatentHook | None = None) -> torch.Tensor:
    """Decode image embeddings (B, D) into images (B, 3, S, S) in [0, 1].

    cond: the prompt (1 or B rows; an empty prompt for pure variations); uncond: the negative prompt
    (1 or B rows). Guidance is on when it is not 1. Initial noise: `randn_tensor((B, 3, S, S),
    generator)`; the same generator drives the scheduler's step noise.

    Hooks for editing methods (both optional; without them this is exactly the pipeline's loop):
    `extra_unet_kwargs(i, t, x, hidden, additive, mask) -> dict` adds keyword arguments to each UNet
    call (ControlNet residuals, `cross_attention_kwargs`); x is the UNet input, [uncond; cond] under
    guidance. `latent_hook(i, t, prev_t, latents) -> latents` replaces the latents after each step
    (mask-guided inpainting re-noises the known pixels there).
    """
    unet = model.unet
    dtype = unet.dtype
    batch = image_embeds.shape[0]
    if image_embeds.shape[-1] != model.embedding_dim:
        raise ValueError(f"this decoder expects CLIP embeddings of width {model.embedding_dim}, got "
                         f"{image_embeds.shape[-1]}; use the CLIP and prior of the same bundle")
    cond = cond.expand(batch)
    do_cfg = guidance != 1.0
    text = TextEncoding.cat([uncond.expand(batch), cond]) if do_cfg else cond
    text = TextEncoding(text.embeds.to(dtype), text.hidden.to(dtype), text.mask)
    hidden, additive, mask = conditioning(model, image_embeds.to(dtype), text, do_cfg)
    sched = sch.make_scheduler(model.scheduler, scheduler)
    ts = sch.timesteps(sched, steps)
    channels, size = unet.config.in_channels, model.sample_size
    if latents is None:
        latents = randn_tensor((batch, channels, size, size), generator=generator, dtype=dtype)
    latents = latents.to(dtype) * sched.init_noise_sigma
    for i, t in enumerate(ts):
        x = torch.cat([latents] * 2) if do_cfg else latents
        x = sched.scale_model_input(x, t)
        extra = extra_unet_kwargs(i, t, x, hidden, additive, mask) if extra_unet_kwargs is not None else {}
        pred = unet(sample=x, timestep=t, encoder_hidden_states=hidden, class_labels=additive,
                    attention_mask=mask, **extra).sample
        if do_cfg:
            p_uncond, p_text = pred.chunk(2)
            p_uncond = p_uncond[:, :channels]
            p_mean, p_var = p_text[:, :channels], p_text[:, channels:]
            pred = p_uncond + guidance * (p_mean - p_uncond)
            if p_var.shape[1]:
                pred = torch.cat([pred, p_var], dim=1)
        out = sch.step(sched, pred, t, latents, sch.prev_timestep(ts, i), generator)
        latents = out.prev_sample
        if latent_hook is not None:
            latents = latent_hook(i, t, sch.prev_timestep(ts, i), latents)
        if callback is not None:
            callback(i + 1, len(ts), sch.preview(out, latents))
    return latents.clamp(-1, 1) * 0.5 + 0.5


def decoder_loss(dec: DecoderModel, x0: torch.Tensor, img_emb: torch.Tensor, text: TextEncoding, abar: torch.Tensor,
                 gen: torch.Generator, min_snr: float = 5.0, unet=None, unet_kwargs=None, snr_floor: float = 0.0,
                 pixel_weight: torch.Tensor | None = None, timesteps: torch.Tensor | None = None,
                 reduce: bool = True) -> torch.Tensor:
    """The decoder's training loss on clean images x0 (B, 3, 32, 32) in [-1, 1].

    `unet` replaces the decoder's UNet (e.g. a controlled one); `unet_kwargs(xt, t, hidden, additive,
    mask) -> dict` adds keyword arguments to the UNet call. `snr_floor` floors the loss weight in x0
    terms (as `decoder_tune` trained: the noisiest steps, where the outline is decided, count too);
    `pixel_weight` (B, 32, 32) weighs each image's pixels (normalised to mean 1 per image).
    `timesteps` (B,) replaces the uniform draw of each row's noise level; `reduce` False returns the
    per-row losses (B,) instead of their mean.
    """
    hidden, additive = dec.text_proj(image_embeddings=img_emb, prompt_embeds=text.embeds,
                                     text_encoder_hidden_states=text.hidden, do_classifier_free_guidance=False)
    mask = F.pad(text.mask, (dec.text_proj.clip_extra_context_tokens, 0), value=True)
    b = x0.shape[0]
    t = torch.randint(0, len(abar), (b,), generator=gen) if timesteps is None else timesteps
    a = abar[t].view(-1, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=gen)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    v = a.sqrt() * noise - (1 - a).sqrt() * x0
    extra = unet_kwargs(xt, t, hidden, additive, mask) if unet_kwargs is not None else {}
    pred = (unet or dec.unet)(xt, t, encoder_hidden_states=hidden, class_labels=additive, attention_mask=mask,
                              **extra).sample
    snr = (a / (1 - a)).view(-1)
    # min-SNR-γ for v-prediction; 0: the plain v-loss, every noise level alike (min-SNR all but ignores the
    # noisiest steps, where an image-conditioned model learns to follow its input image)
    weight = snr.clamp(max=min_snr).clamp(min=snr_floor) / (snr + 1) if min_snr > 0 else torch.ones_like(snr)
    if pixel_weight is None:
        rows = weight * (pred[:, :3] - v).pow(2).mean(dim=(1, 2, 3))
    else:
        err = (pred[:, :3] - v).pow(2).mean(dim=1) * pixel_weight / pixel_weight.mean(dim=(1, 2), keepdim=True)
        rows = weight * err.mean(dim=(1, 2))
    return rows.mean() if reduce else rows


def alphas_cumprod(model: DecoderModel) -> torch.Tensor:
    """ᾱ_t of the decoder's own noise schedule, (T,)."""
    return torch.as_tensor(model.scheduler.alphas_cumprod, dtype=torch.float32)
