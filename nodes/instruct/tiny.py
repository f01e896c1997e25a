"""A tiny seeded InstructPix2Pix model made from the unCLIP library's tiny test decoder (tests, link examples)."""

from __future__ import annotations

_CACHED: dict[str, object] = {}


def tiny_instruct(seed: int = 0):
    """A handle on a model made from the tiny decoder, its zero image channels randomised (so the image acts),
    with an untrained edit prior (the identity: it returns its input embedding)."""
    import torch

    from nodegraph import ModelHandle

    from ..unclip.api import tiny
    from .edit_prior import EditPrior
    from .model import IMAGE_CHANNELS, from_decoder

    key = f"ip2p{seed}"
    if key not in _CACHED:
        dec = tiny.decoder().model
        model = from_decoder(dec.text_proj, dec.unet, dec.scheduler)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            w = model.unet.conv_in.weight
            w[:, -IMAGE_CHANNELS:] = torch.randn(w[:, -IMAGE_CHANNELS:].shape, generator=gen) * 0.1
        model.unet.eval()
        torch.manual_seed(seed)
        model.edit_prior = EditPrior(embed_dim=tiny.TEXT_DIM, text_width=tiny.TEXT_DIM, max_tokens=tiny.CONTEXT,
                                     width=16, layers=1, heads=2).eval()
        _CACHED[key] = model
    return ModelHandle(_CACHED[key], "tiny-ip2p", "instruct.model")
