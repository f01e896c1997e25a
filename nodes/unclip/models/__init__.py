"""The unCLIP model library: loaders and sampling for shipped Shapes models and Karlo checkpoints.

No dependency on the engine. Everything is plain torch / diffusers / open_clip / transformers:

- `load_clip(path)` → an encoder with `encode_text(list[str]) -> TextEncoding` and
  `encode_image((B, 3, H, W) in [0, 1]) -> (B, D)`;
- `load_prior`, `load_decoder`, `load_upsampler` accept a shapes-unclip bundle or a Karlo root;
- `load_ar_prior` / `sample_ar_prior`: the autoregressive prior (ours; DALL·E 2's AR prior scaled down);
- `sample_prior`, `sample_decoder`, `upsample` reproduce `UnCLIPPipeline`'s math stage by stage,
  each stage with its own generator; images are float (B, 3, H, W) in [0, 1].
"""

from .ar_prior import ARPriorModel, load_ar_prior, sample_ar_prior
from .clip import OpenClipEncoder, TextEncoding, TransformersClipEncoder, load_clip, with_token_rows
from .decoder import DecoderModel, alphas_cumprod, decoder_loss, load_decoder, sample_decoder
from .prior import PriorModel, load_prior, prior_loss, sample_prior
from .schedulers import SCHEDULERS
from .upsampler import UpsamplerModel, load_upsampler, upsample

__all__ = [
    "SCHEDULERS", "ARPriorModel", "DecoderModel", "OpenClipEncoder", "PriorModel", "TextEncoding",
    "TransformersClipEncoder", "UpsamplerModel", "alphas_cumprod", "decoder_loss", "load_ar_prior", "load_clip",
    "load_decoder", "load_prior", "load_upsampler", "prior_loss", "sample_ar_prior", "sample_decoder", "sample_prior",
    "upsample", "with_token_rows",
]
