"""What the add-on trainers (LoRA, ControlNet) share: finding the frozen base bundle, the decoder's
denoising loss (as `train/decoder.py` trains it: v-prediction, min-SNR-5 weighting), rendering
scenes, and saving a small weights file atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nodes.shapes import domain
from nodes.unclip.models.clip import TextEncoding
from train.common import ROOT

MODELS = ROOT / "models"


def bundle_dir(out: Path, bundle: str = "") -> Path:
    """The frozen base models: `bundle` if given; else `<out>/shapes-unclip` (out = a models folder);
    else `out` itself (`python -m train all --smoke --out DIR` puts every stage in DIR)."""
    if bundle:
        return Path(bundle)
    if (out / "shapes-unclip" / "decoder").is_dir():
        return out / "shapes-unclip"
    return out


def load_frozen(bundle: Path, prior: bool = False):
    """(clip, decoder[, prior]) of a bundle, eval mode, no gradients."""
    from nodes.unclip.models import load_decoder, load_prior
    from train.common import load_clip_frozen

    clip = load_clip_frozen(bundle)
    dec = load_decoder(bundle)
    for m in (dec.text_proj, dec.unet):
        m.requires_grad_(False).eval()
    if not prior:
        return clip, dec
    pri = load_prior(bundle)
    pri.prior.requires_grad_(False).eval()
    return clip, dec, pri


def render(scenes: list[domain.Scene]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images at 64 px (CLIP's input) and at 32 px (the decoder's), as train/data.py makes them."""
    from train.data import downsample

    im64 = np.stack([domain.render(s, 64) for s in scenes])
    return im64, downsample(im64)


def decoder_loss(dec, x0: torch.Tensor, img_emb: torch.Tensor, text: TextEncoding, abar: torch.Tensor,
                 gen: torch.Generator, min_snr: float = 5.0, unet=None, unet_kwargs=None) -> torch.Tensor:
    """The decoder's training loss on clean images x0 (B, 3, 32, 32) in [-1, 1].

    `unet` replaces the decoder's UNet (e.g. a controlled one); `unet_kwargs(xt, t, hidden, additive,
    mask) -> dict` adds keyword arguments to the UNet call. `min_snr` 0: the plain v-loss, every noise
    level weighted alike (min-SNR weighting all but ignores the noisiest steps, where an image-conditioned
    model learns to follow its input image).
    """
    hidden, additive = dec.text_proj(image_embeddings=img_emb, prompt_embeds=text.embeds,
                                     text_encoder_hidden_states=text.hidden, do_classifier_free_guidance=False)
    mask = F.pad(text.mask, (dec.text_proj.clip_extra_context_tokens, 0), value=True)
    b = x0.shape[0]
    t = torch.randint(0, len(abar), (b,), generator=gen)
    a = abar[t].view(-1, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=gen)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    v = a.sqrt() * noise - (1 - a).sqrt() * x0
    extra = unet_kwargs(xt, t, hidden, additive, mask) if unet_kwargs is not None else {}
    pred = (unet or dec.unet)(xt, t, encoder_hidden_states=hidden, class_labels=additive, attention_mask=mask,
                              **extra).sample
    snr = (a / (1 - a)).view(-1)
    weight = snr.clamp(max=min_snr) / (snr + 1) if min_snr > 0 else torch.ones_like(snr)  # min-SNR-γ for v-prediction
    return (weight * (pred[:, :3] - v).pow(2).mean(dim=(1, 2, 3))).mean()


def alphas_cumprod(dec) -> torch.Tensor:
    """ᾱ_t of the decoder's own noise schedule."""
    sched = dec.scheduler
    return torch.as_tensor(sched.alphas_cumprod, dtype=torch.float32)
