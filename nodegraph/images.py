"""Conversions of the IMAGE link type: to and from PIL images and torch tensors.

numpy, PIL and torch are imported inside the functions, so importing nodegraph stays torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["as_image_batch", "from_pil", "from_tensor", "to_pil", "to_tensor"]


def as_image_batch(value: Any, what: str = "image") -> Any:
    """Check and normalise an IMAGE value: float32 (B, H, W, 3) in [0, 1]; (H, W, 3) gets a batch axis."""
    import numpy as np

    from .errors import NodeExecutionError

    arr = np.asarray(value)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] not in (3, 4) or 0 in arr.shape:
        raise NodeExecutionError(f"{what}: expected an IMAGE of shape (B, H, W, 3), got {arr.shape}")
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr, dtype=np.float32)


def to_pil(images: Any) -> list[Any]:
    """IMAGE (B, H, W, 3) float in [0, 1] → list of RGB PIL images."""
    import numpy as np
    from PIL import Image

    arr = as_image_batch(images)
    u8 = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return [Image.fromarray(frame, "RGB") for frame in u8]


def from_pil(images: Sequence[Any]) -> Any:
    """List of PIL images of one size → IMAGE (B, H, W, 3) float32 in [0, 1]."""
    import numpy as np

    frames = [np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0 for img in images]
    sizes = {f.shape for f in frames}
    if len(sizes) != 1:
        raise ValueError(f"images of different sizes cannot form one batch: {sorted(sizes)}")
    return np.stack(frames)


def to_tensor(images: Any) -> Any:
    """IMAGE (B, H, W, 3) in [0, 1] → float32 torch tensor (B, 3, H, W), as image models take them."""
    import torch

    return torch.from_numpy(as_image_batch(images)).permute(0, 3, 1, 2).contiguous()


def from_tensor(tensor: Any) -> Any:
    """Torch tensor (B, 3, H, W) (clamped to [0, 1]) → IMAGE (B, H, W, 3) float32 numpy."""
    return tensor.detach().clamp(0, 1).permute(0, 2, 3, 1).contiguous().cpu().numpy().astype("float32")
