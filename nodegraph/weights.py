"""Loading model weights without running code: safetensors, or ``torch.load(weights_only=True)``.

Pickle-based checkpoints (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) can execute arbitrary code when
unpickled. :func:`load_state_dict` reads them only with PyTorch's restricted ``weights_only``
unpickler, which refuses any object that is not tensors and plain containers; ``.safetensors``
files hold no code at all and are preferred. torch is imported inside the function.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import NodeExecutionError

__all__ = ["PICKLE_SUFFIXES", "load_state_dict", "refuse_pickles"]

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _refused(message: str) -> str:
    return (f"{message} holds more than tensors (a pickle that could run code); refused. Convert it to "
            ".safetensors with a trusted tool, or get the weights from a trusted source")


def _is_pickle_refusal(exc: BaseException) -> bool:
    import pickle

    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 20:
        if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


@contextmanager
def refuse_pickles(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a model library's refusal of a pickle checkpoint under ``folder`` (torch's ``weights_only``
    unpickler, used by diffusers and transformers for ``.bin`` files) into a
    :class:`~nodegraph.NodeExecutionError` naming the file, instead of the library's raw error."""
    try:
        yield
    except Exception as exc:
        if not _is_pickle_refusal(exc):
            raise
        root = Path(folder)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES) if root.is_dir() else []
        raise NodeExecutionError(_refused(", ".join(str(p) for p in files) or str(root))) from None


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
            raise NodeExecutionError(f"{_refused(path.name)} ({first})") from None
    raise NodeExecutionError(f"{path.name}: unsupported weights file; use .safetensors (or a "
                             f"{'/'.join(PICKLE_SUFFIXES)} state dict)")
