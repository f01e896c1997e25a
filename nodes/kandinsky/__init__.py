"""The Kandinsky pack: Kandinsky 2.2 (an open unCLIP-family model) as nodes, equal to diffusers.

Loaders read the published folders (`kandinsky-2-2-prior`, `-decoder`, `-decoder-inpaint`,
`-controlnet-depth`) in diffusers' layout. The prior side produces the unclip pack's types (CLIP,
prior, conditioning, embeddings), so CLIP Text/Image Encode, the unclip Prior, interpolation, text
diffs, PCA and CLIP score compose with it; the decoders are latent (MoVQ) decoders with their own
types. Torch and the model libraries are imported only when a node runs.
"""

import nodegraph

from .decode import KandinskyControlNet, KandinskyDecoder, KandinskyImg2Img, KandinskyInpaint
from .loaders import LoadControlnetDecoder, LoadDecoder, LoadInpaintDecoder, LoadPrior
from .prior import EmbeddingMix, KandinskyPrior, ZeroEmbedding

PACK = nodegraph.Pack(
    name="kandinsky",
    version="1.0.0",
    description="Kandinsky 2.2: prior (CLIP ViT-bigG) and MoVQ latent decoders for text to image, image to image, "
    "inpainting and ControlNet depth, reproducing diffusers' Kandinsky 2.2 pipelines.",
    nodes=[
        LoadPrior, LoadDecoder, LoadInpaintDecoder, LoadControlnetDecoder,
        KandinskyPrior, ZeroEmbedding, EmbeddingMix,
        KandinskyDecoder, KandinskyImg2Img, KandinskyInpaint, KandinskyControlNet,
    ],
)
