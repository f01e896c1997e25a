"""The unCLIP pack's public API: what other packs may import from it (``from nodes.unclip.api import ...``).

Link types and the conditioning they carry, the glue every sampling node uses (seeded generator,
progress callback, library errors as node errors), CLIP-space operations, and the model library
(loaders and samplers, imported with torch on first use, so importing this module stays light).
Everything else in the pack is private and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .convert import generator, library_errors, progress
from .embeddings import slerp, text_diff
from .encode import Conditioning
from .sampling import Scheduler
from .types import CLIP, CONDITIONING, DECODER, EMBEDDING, PRIOR, UPSAMPLER

__all__ = [
    "CLIP", "CONDITIONING", "DECODER", "EMBEDDING", "PRIOR", "UPSAMPLER", "Conditioning", "Scheduler",
    "TextEncoding", "generator", "library_errors", "load_clip", "load_decoder", "load_prior", "load_upsampler",
    "progress", "sample_decoder", "sample_prior", "slerp", "text_diff", "tiny", "upsample",
]

# name -> module of the model library (torch, diffusers) that defines it; loaded on first use
_LAZY = {
    "TextEncoding": ".models", "load_clip": ".models", "load_decoder": ".models", "load_prior": ".models",
    "load_upsampler": ".models", "sample_decoder": ".models", "sample_prior": ".models", "upsample": ".models",
}


def __getattr__(name: str) -> Any:
    if name == "tiny":  # tiny seeded models of the library, for tests and link-type examples
        return importlib.import_module(".models.tiny", __package__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __package__), name)


if TYPE_CHECKING:  # for type checkers; at run time these load on first use
    from .models import (
        TextEncoding,
        load_clip,
        load_decoder,
        load_prior,
        load_upsampler,
        sample_decoder,
        sample_prior,
        tiny,
        upsample,
    )
