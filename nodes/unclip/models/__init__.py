"""The unCLIP model library: loaders and sampling for shipped Shapes models and Karlo checkpoints.

No dependency on the engine. Everything is plain torch / diffusers / open_clip / transformers:

- `load_clip(path)` → encoder with `encode_text(list[str]) -> TextEncoding` and
  `encode_image((B, 3, H, W) in [0, 1]) -> (B, D)`;
- `load_prior`, `load_decoder`, `load_upsampler` accept a shapes-unclip bundle or a Karlo root;
- `sample_prior`, `sample_decoder`, `upsample` reproduce `UnCLIPPipeline`'s math stage by stage,
  each stage with its own generator.
"""

from .clip import TextEncoding, load_clip
from .prior import PriorModel, load_prior, sample_prior
from .schedulers import SCHEDULERS

__all__ = ["SCHEDULERS", "PriorModel", "TextEncoding", "load_clip", "load_prior", "sample_prior"]
