"""The Kandinsky 2.2 prior folder: its CLIP (ViT-bigG text and image towers) and its diffusion prior.

The prior is the unclip pack's `PriorModel` and samples with its `sample_prior`, which is the
`KandinskyV22PriorPipeline` loop (same text encoding, guidance, UnCLIPScheduler stepping and
`post_process_latents`). What Kandinsky adds is the *negative image embedding* its decoder guides
against: without a negative prompt it is the image tower's embedding of an all-zero input
(`get_zero_embed`); with one, the prior's sample for the negative prompt, drawn in the same batch
after the prompts (the pipeline appends the negative prompt to the prompts and splits the result).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import nodegraph

from ...unclip.api import PriorModel, TextEncoding, TransformersClipEncoder, sample_prior, schedulers
from .layout import check_prior_folder
from .weights import from_pretrained


class KandinskyClip(TransformersClipEncoder):
    """Kandinsky's CLIP: images are prepared by the folder's `CLIPImageProcessor`, as the pipeline does."""

    def __init__(self, text_encoder, tokenizer, image_encoder, processor):
        super().__init__(text_encoder, tokenizer, image_encoder, image_encoder.config.image_size,
                         processor.image_mean, processor.image_std)
        self.processor = processor

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] → (B, D): 8-bit RGB through the image processor (resize, crop,
        normalise), exactly what the pipeline does with a PIL image."""
        pil = nodegraph.to_pil(images.detach().float().permute(0, 2, 3, 1).cpu().numpy())
        pixels = self.processor(pil, return_tensors="pt").pixel_values
        enc = self.image_encoder
        return enc(pixels.to(enc.device, enc.dtype)).image_embeds

    def zero_embed(self) -> torch.Tensor:
        """(1, D): the image tower on an all-zero input (the pipeline's `get_zero_embed`)."""
        enc = self.image_encoder
        size = enc.config.image_size
        return enc(torch.zeros(1, 3, size, size, device=enc.device, dtype=enc.dtype)).image_embeds


def zero_embed(clip: Any) -> torch.Tensor:
    """The zero-image embedding of any loaded CLIP (1, D)."""
    if isinstance(clip, KandinskyClip):
        return clip.zero_embed()
    if getattr(clip, "image_encoder", None) is not None:
        size = clip.image_size
        enc = clip.image_encoder
        return enc(torch.zeros(1, 3, size, size, device=enc.device, dtype=enc.dtype)).image_embeds
    if hasattr(clip, "model") and hasattr(clip.model, "encode_image"):  # open_clip
        return clip.model.encode_image(torch.zeros(1, 3, clip.image_size, clip.image_size, device=clip.mean.device))
    raise ValueError("this CLIP has no image encoder, so it has no zero-image embedding; load the CLIP of a "
                     "Kandinsky 2.2 prior folder (it has image_encoder/)")


def load_clip(root: Path, dtype: torch.dtype, device: str) -> KandinskyClip:
    from transformers import (
        CLIPImageProcessor,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        CLIPVisionModelWithProjection,
    )

    check_prior_folder(root)
    text = from_pretrained(CLIPTextModelWithProjection, root, "text_encoder", dtype, device)
    image = from_pretrained(CLIPVisionModelWithProjection, root, "image_encoder", dtype, device)
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
    processor = CLIPImageProcessor.from_pretrained(root / "image_processor")
    return KandinskyClip(text, tokenizer, image, processor).to(device)


def load_prior(root: Path, dtype: torch.dtype, device: str) -> PriorModel:
    from diffusers import PriorTransformer

    check_prior_folder(root)
    prior = from_pretrained(PriorTransformer, root, "prior", dtype, device)
    return PriorModel(prior, schedulers.load_scheduler(root / "scheduler"))


def _pipeline_batches(clip: Any, texts: tuple[str, ...], negative: str, cond: TextEncoding,
                      uncond: TextEncoding) -> tuple[TextEncoding, TextEncoding] | None:
    """The prompts and the negative prompt encoded in the batches the pipeline uses ([prompts; negative]
    and [negative] × the same), when `cond` and `uncond` are this CLIP's own encodings of those texts.

    A text encoder's kernels round differently with the batch size (~1e-7), which the prior and the
    decoder amplify; encoding as the pipeline does keeps the result equal to it. Encodings that were
    edited (they differ from a fresh encoding) are used as given.
    """
    if not texts or len(texts) != cond.embeds.shape[0] or not hasattr(clip, "encode_text"):
        return None
    both = clip.encode_text([*texts, negative])
    unc = clip.encode_text([negative] * len(both))
    own = torch.allclose(both.embeds[:-1], cond.embeds, atol=1e-4) and torch.allclose(
        both.embeds[-1:], uncond.embeds, atol=1e-4) and torch.allclose(both.hidden[:-1], cond.hidden, atol=1e-4)
    return (both, unc) if own else None


def sample_with_negative(prior: PriorModel, clip: Any, cond: TextEncoding, uncond: TextEncoding, negative: str,
                         guidance: float, steps: int, generator: torch.Generator, count: int = 1,
                         callback: Callable | None = None,
                         texts: tuple[str, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(image embeddings (B·count, D), negative image embeddings (B·count, D)), as
    `KandinskyV22PriorPipeline` returns them: guidance only above 1; an empty `negative` prompt gives
    the zero-image embedding, another the prior's sample for it (drawn after the prompts' rows).
    `texts` are the prompts `cond` encodes (to batch them as the pipeline does)."""
    guidance = guidance if guidance > 1 else 1.0  # the pipeline guides only when the scale is > 1
    batch = cond.embeds.shape[0] * count
    if not negative:
        emb = sample_prior(prior, cond, uncond, guidance=guidance, steps=steps, generator=generator,
                           num_per_prompt=count, callback=callback)
        return emb, zero_embed(clip).to(emb.dtype).expand(batch, -1)
    both, unc = _pipeline_batches(clip, texts, negative, cond, uncond) or (TextEncoding.cat([cond, uncond]), uncond)
    out = sample_prior(prior, both, unc, guidance=guidance, steps=steps, generator=generator, num_per_prompt=count,
                       callback=callback)
    emb, neg = out[:batch], out[batch:]
    return emb, neg.repeat(cond.embeds.shape[0], 1)
