"""Conversions between torch tensors (B, 3, H, W) and the IMAGE link type (numpy (B, H, W, 3))."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any


def to_torch(images: Any):
    """IMAGE → float32 torch tensor (B, 3, H, W) in [0, 1]."""
    import torch

    import nodegraph

    arr = nodegraph.as_image_batch(images)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def to_image(tensor: Any):
    """torch (B, 3, H, W) in [0, 1] → IMAGE."""
    return tensor.detach().clamp(0, 1).permute(0, 2, 3, 1).contiguous().cpu().numpy().astype("float32")


def generator(seed: int):
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed))


def progress(ctx: Any, every_preview: int = 1):
    """A library callback `(step, total, preview)` that reports to the node context."""

    def callback(step: int, total: int, preview: Any = None) -> None:
        ctx.progress(step, total, preview=to_image(preview) if preview is not None else None)

    return callback


@contextmanager
def library_errors():
    """The model library's input errors (ValueError, FileNotFoundError) as node errors: the message
    already names the problem and the fix, so the user sees it without a traceback."""
    from nodegraph import NodeExecutionError

    try:
        yield
    except (ValueError, FileNotFoundError) as exc:
        raise NodeExecutionError(str(exc)) from None
