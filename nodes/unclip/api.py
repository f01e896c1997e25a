"""The unCLIP pack's public API: what other packs may import from it (``from nodes.unclip.api import ...``).

Link types and the conditioning they carry, the glue every sampling node uses (seeded generator,
progress callback, library errors as node errors), CLIP-space operations, and the model library
(loaders, samplers and training losses, the model classes a pack builds on, `decoder_conditioning` for
a pack's own decoder loop, and `schedulers`: choosing and stepping diffusers schedulers), imported with
torch on first use, so importing this module stays light.
Everything else in the pack is private and may change.
"""

from __future__ import annotations

import nodegraph

from .convert import generator, library_errors, progress
from .embeddings import slerp, text_diff
from .encode import Conditioning
from .sampling import Scheduler
from .types import AR_PRIOR, CLIP, CONDITIONING, DECODER, EMBEDDING, PRIOR, UPSAMPLER

# the model library (torch, diffusers), imported on first use
_LIBRARY = ("ARPriorModel", "PriorModel", "TextEncoding", "TransformersClipEncoder", "alphas_cumprod", "decoder_loss",
            "load_ar_prior", "load_clip", "load_decoder", "load_prior", "load_upsampler", "prior_loss", "sample_ar_prior",
            "sample_decoder", "sample_prior", "upsample", "with_token_rows")
_LAZY = {"schedulers": ".models.schedulers", "tiny": ".models.tiny",  # tiny: seeded test models
         "decoder_conditioning": ".models.decoder:conditioning",  # text_proj outputs for a custom loop
         "SHAPES_CLIP_CONFIG": ".models.clip:CONFIG_FILE",  # the shipped Shapes CLIP's open_clip config (JSON path)
         **{name: f".models:{name}" for name in _LIBRARY}}
__getattr__ = nodegraph.lazy_exports(__name__, _LAZY)

__all__ = ["AR_PRIOR", "CLIP", "CONDITIONING", "DECODER", "EMBEDDING", "PRIOR", "UPSAMPLER", "Conditioning", "Scheduler",
           "generator", "library_errors", "progress", "slerp", "text_diff", *_LAZY]
