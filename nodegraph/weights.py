"""Loading model weights without running code: safetensors, or ``torch.load(weights_only=True)``.

Pickle-based checkpoints (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) can execute arbitrary code when
unpickled. :func:`load_state_dict` reads them only with PyTorch's restricted ``weights_only``
unpickler, which refuses any object that is not tensors and plain containers; ``.safetensors``
files hold no code at all and are preferred. torch is imported inside the function.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import NodeExecutionError

__all__ = ["PICKLE_SUFFIXES", "load_state_dict"]

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def load_state_dict(path: str | os.PathLike[str], *, device: str = "cpu") -> dict[str, Any]:
    """The tensors of a weights file: ``.safetensors``, or a pickle checkpoint read with ``weights_only=True``.

    Raises :class:`~nodegraph.NodeExecutionError` for other file types and for checkpoints that hold
    anything but tensors (such a file is refused, never executed).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device=device)
    if suffix in PICKLE_SUFFIXES:
        import pickle

        import torch

        try:
            return torch.load(path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NodeExecutionError(
                f"{path.name} holds more than tensors (a pickle that could run code); refused. Convert it "
                f"to .safetensors with a trusted tool, or get the weights from a trusted source ({first})") from None
    raise NodeExecutionError(f"{path.name}: unsupported weights file; use .safetensors (or a "
                             f"{'/'.join(PICKLE_SUFFIXES)} state dict)")
