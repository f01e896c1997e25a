"""The Shapes pack's public API: what other packs may import from it (``from nodes.shapes.api import ...``).

The pixel analyser (`analyse(image) -> Analysis`, `mask_iou`) and the domain library (`domain`:
palette, scenes, rendering, captions, splits). numpy and PIL load on first use of a name, so
importing this module stays light. Everything else in the pack is private and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Analysis", "analyse", "domain", "mask_iou"]

_LAZY = {"Analysis": ".analyse", "analyse": ".analyse", "mask_iou": ".analyse"}


def __getattr__(name: str) -> Any:
    if name == "domain":
        return importlib.import_module(".domain", __package__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __package__), name)


if TYPE_CHECKING:  # for type checkers; at run time these load on first use
    from . import domain
    from .analyse import Analysis, analyse, mask_iou
