"""Glue between the nodes and the model library: seeded generators, progress callbacks, errors."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import nodegraph


def generator(seed: int):
    """The CPU torch generator every sampling node draws its noise from."""
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed))


def progress(ctx: Any, offset: int = 0, total: int | None = None):
    """A library callback `(step, n, preview)` that reports step `offset + step` of `total` (default n)
    to the node context, with the preview (B, 3, H, W) as an IMAGE; offsets chain several runs."""

    def callback(step: int, n: int, preview: Any = None) -> None:
        ctx.progress(offset + step, n if total is None else total,
                     preview=nodegraph.from_tensor(preview) if preview is not None else None)

    return callback


@contextmanager
def library_errors():
    """The model library's input errors (ValueError, FileNotFoundError) as node errors: the message
    already names the problem and the fix, so the user sees it without a traceback."""
    try:
        yield
    except (ValueError, FileNotFoundError) as exc:
        raise nodegraph.NodeExecutionError(str(exc)) from None
