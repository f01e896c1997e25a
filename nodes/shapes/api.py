"""The Shapes pack's public API: what other packs may import from it (``from nodes.shapes.api import ...``).

The pixel analyser (`analyse(image) -> Analysis`, `mask_iou`), the domain library (`domain`:
palette, scenes, rendering, captions, splits) and the second training caption writer (`captions`).
numpy and PIL load on first use of a name, so importing this module stays light. Everything else in the pack is private and may change.
"""

from __future__ import annotations

import nodegraph

_LAZY = {"Analysis": ".analyse:Analysis", "analyse": ".analyse:analyse", "mask_iou": ".analyse:mask_iou",
         "domain": ".domain", "captions": ".captions"}
__getattr__ = nodegraph.lazy_exports(__name__, _LAZY)

__all__ = [*_LAZY]
