"""Link types of the unCLIP pack. Values are the library's objects and torch tensors."""

from __future__ import annotations

import nodegraph


def _example_embedding():
    import torch

    from .models.tiny import TEXT_DIM

    g = torch.Generator().manual_seed(0)
    return torch.randn(16, TEXT_DIM, generator=g)  # enough rows for a 16-component PCA


def _tiny(kind: str):
    def build():
        from .models import tiny  # the library's tiny seeded models, for tests

        return getattr(tiny, kind)()

    return build


CLIP = nodegraph.link_type("unclip.CLIP", "A loaded CLIP model (text and image encoders, tokenizer).",
                           _tiny("clip"))
PRIOR = nodegraph.link_type("unclip.PRIOR", "A loaded diffusion prior (text embedding → image embedding).",
                            _tiny("prior"))
AR_PRIOR = nodegraph.link_type("unclip.AR_PRIOR", "A loaded autoregressive prior (text embedding → codes of a "
                                "quantised PCA of the image embedding → image embedding).", _tiny("ar_prior"))
DECODER = nodegraph.link_type("unclip.DECODER", "A loaded diffusion decoder (image embedding → image).",
                              _tiny("decoder"))
UPSAMPLER = nodegraph.link_type("unclip.UPSAMPLER", "A loaded diffusion super-resolution model.",
                                _tiny("upsampler"))
CONDITIONING = nodegraph.link_type(
    "unclip.CONDITIONING",
    "Encoded prompt for the prior and decoder: pooled embedding (B, D), token states (B, L, W), mask (B, L), "
    "and the same for the negative (unconditional) prompt.",
    _tiny("conditioning"))
EMBEDDING = nodegraph.link_type("unclip.EMBEDDING", "CLIP-space embeddings, torch float32 (B, D).",
                                _example_embedding)
