"""Input checks shared by the edit nodes: embeddings of the decoder's width, batch sizes that broadcast."""

from __future__ import annotations

from typing import Any

from nodegraph import NodeExecutionError


def check_embedding(emb: Any, decoder: Any, what: str):
    """An EMBEDDING as float32 (B, D) of the decoder's width, or a NodeExecutionError saying the fix."""
    import torch

    if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[0] == 0:
        shape = tuple(emb.shape) if hasattr(emb, "shape") else type(emb).__name__
        raise NodeExecutionError(f"{what}: expected CLIP embeddings of shape (B, D), got {shape}; connect a "
                                 "prior, CLIP Image Encode or an embedding operation")
    width = decoder.embedding_dim
    if emb.shape[-1] != width:
        raise NodeExecutionError(f"{what}: this decoder expects CLIP embeddings of width {width}, got "
                                 f"{emb.shape[-1]}; use the CLIP and prior of the decoder's bundle")
    if not torch.isfinite(emb).all():
        raise NodeExecutionError(f"{what}: the embeddings contain NaN or infinite values")
    return emb.float()


def batch_size(what: dict[str, int]) -> int:
    """The common batch of several inputs, each of which may be 1 (broadcast) or B."""
    sizes = {n for n in what.values() if n != 1}
    if len(sizes) > 1:
        listed = ", ".join(f"{k}: {v}" for k, v in what.items())
        raise NodeExecutionError(f"batch sizes do not match ({listed}); give 1 or the same number for each")
    return sizes.pop() if sizes else 1


def expand_rows(x: Any, batch: int):
    """Broadcast a (1, ...) torch tensor or numpy array to `batch` rows."""
    if x.shape[0] == batch:
        return x
    if hasattr(x, "expand"):
        return x.expand(batch, *x.shape[1:])
    import numpy as np

    return np.broadcast_to(x, (batch, *x.shape[1:]))
