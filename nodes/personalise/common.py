"""Tensor glue the personalisation nodes share: images at the decoder's resolution, row selection."""

from __future__ import annotations

from typing import Any

import numpy as np


def decoder_pixels(images: np.ndarray | Any, size: int) -> Any:
    """Images (B, H, W, 3) (uint8, or float in [0, 1]) → the decoder's training target (B, 3, size, size)
    in [-1, 1], area-averaged as the training data is."""
    import torch
    import torch.nn.functional as F

    arr = np.asarray(images, dtype=np.float32)
    if np.asarray(images).dtype == np.uint8:
        arr = arr / 255.0
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x * 2 - 1


def clip_pixels(images: np.ndarray) -> Any:
    """uint8 images (B, H, W, 3) → float (B, 3, H, W) in [0, 1], as CLIP's image encoder takes them."""
    import torch

    return torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def trainable_copy(enc: Any) -> Any:
    """A TextEncoding (or tensor) made by another node under `torch.inference_mode()`, cloned so that
    autograd may save it for the backward pass."""
    if hasattr(enc, "embeds"):
        return type(enc)(enc.embeds.clone(), enc.hidden.clone(), enc.mask.clone())
    return enc.detach().clone()


def take(enc: Any, idx: Any) -> Any:
    """Rows `idx` of a TextEncoding."""
    return type(enc)(enc.embeds[idx], enc.hidden[idx], enc.mask[idx])


def object_mask(images: np.ndarray, size: int) -> Any:
    """(B, size, size) float: where uint8 images (B, H, W, 3) of one object on a plain background
    differ visibly from their background (the corner pixel's colour) at the decoder's resolution,
    grown by one pixel (the object's rim), as the shipped decoder's `--fg-weight` training weighs them."""
    import torch.nn.functional as F

    x = (decoder_pixels(images, size) + 1) * 127.5  # (B, 3, size, size) in [0, 255]
    diff = (x - x[:, :, :1, :1]).abs().amax(dim=1, keepdim=True)
    return F.max_pool2d((diff > 24).float(), 3, stride=1, padding=1)[:, 0]


def share_weights(mask: Any, share: float) -> Any:
    """Pixel weights (B, S, S) under which the masked pixels (mask (B, S, S) in {0, 1}) carry `share` of
    each image's loss, whatever the object's size (never less than the other pixels' weight)."""
    area = mask.mean(dim=(1, 2), keepdim=True).clamp(min=1e-4, max=1 - 1e-4)
    w = (share * (1 - area) / (area * (1 - share))).clamp(min=1.0)
    return 1 + (w - 1) * mask
