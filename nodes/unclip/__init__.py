"""The unCLIP pack: DALL·E 2's text → CLIP image embedding → image cascade, as nodes.

Loaders (shipped models by name, or any local directory in the same layout, Karlo checkpoints
included), CLIP text/image encoding and scores, the priors (diffusion, and autoregressive as the
paper compares them), the decoder, the upsampler, and
operations in CLIP space (slerp interpolation, text diffs, PCA reconstruction). Torch and the
model libraries are imported only when a node runs.
"""

import nodegraph

from .ar_prior import ARPrior, LoadARPrior
from .embeddings import EmbeddingBatch, EmbeddingInterpolate, EmbeddingPCA, TextDiff
from .encode import CLIPScore, ImageEncode, TextEncode
from .loaders import LoadCLIP, LoadDecoder, LoadPrior, LoadUpsampler
from .sampling import Decoder, Prior, Upsample

PACK = nodegraph.Pack(
    name="unclip",
    version="1.0.0",
    description="unCLIP (DALL·E 2) text-to-image: CLIP encoders, diffusion and autoregressive priors, decoder, upsampler, "
    "and CLIP-space interpolation, text diffs and PCA.",
    nodes=[
        LoadCLIP, LoadPrior, LoadARPrior, LoadDecoder, LoadUpsampler,
        TextEncode, ImageEncode, CLIPScore,
        Prior, ARPrior, Decoder, Upsample,
        EmbeddingInterpolate, TextDiff, EmbeddingPCA, EmbeddingBatch,
    ],
    aliases={"unclip.clip_loader": "load_clip", "unclip.prior_loader": "load_prior",
             "unclip.decoder_loader": "load_decoder", "unclip.upsampler_loader": "load_upsampler"},
)
