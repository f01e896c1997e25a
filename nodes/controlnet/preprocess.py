"""Control images from any image: the pixel analyser's object mask, filled or as an outline."""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Bool mask (S, S) → bool (size, size): area average, then ≥ 0.5 (as the domain's exact masks)."""
    if mask.shape == (size, size):
        return mask.astype(bool)
    img = Image.fromarray(mask.astype(np.float32))
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.float32) >= 0.5


def outline(mask: np.ndarray) -> np.ndarray:
    """The mask's inner boundary: pixels of the mask with a 4-neighbour outside it."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def control_masks(images: np.ndarray, size: int, mode: str = "silhouette") -> tuple[np.ndarray, list[int]]:
    """Images (B, H, W, 3) in [0, 1] → float32 masks (B, size, size) and the indices with no object."""
    from ..shapes.api import analyse

    out = np.zeros((len(images), size, size), dtype=np.float32)
    empty = []
    for i, image in enumerate(images):
        result = analyse(image)
        if not result.found:
            empty.append(i)
            continue
        mask = resize_mask(result.mask, size)
        out[i] = outline(mask) if mode == "edges" else mask
    return out, empty
