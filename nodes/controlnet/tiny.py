"""A tiny seeded ControlNet for the unCLIP library's tiny test decoder (tests and link examples)."""

from __future__ import annotations

_CACHED: dict[str, object] = {}


def tiny_controlnet(seed: int = 0):
    """A handle on a ControlNet made from the tiny decoder, its zero convolutions randomised (so it acts)."""
    import torch

    from nodegraph import ModelHandle

    from ..unclip.api import tiny
    from .model import controlnet_from_unet

    key = f"cn{seed}"
    if key not in _CACHED:
        cn = controlnet_from_unet(tiny.decoder().model.unet)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in cn.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        _CACHED[key] = cn.eval()
    return ModelHandle(_CACHED[key], "tiny-controlnet", "controlnet.controlnet")
