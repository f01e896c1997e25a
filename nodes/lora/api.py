"""The LoRA pack's public API: what other packs may import from it (``from nodes.lora.api import ...``).

Reading and merging LoRA files (`read_lora`, `patch`, `subset` of some components, `patch_clip` for
text-encoder weights and bundled embeddings, `LoraError`), writing them (`save_lora`), the
model kind of `<models>/loras/` (`MODELS`, `KIND`) and name resolution (`resolve_lora`). torch, peft
and safetensors load on first use of a name. Everything else in the pack is private.
"""

from __future__ import annotations

import nodegraph

from . import KIND, MODELS, resolve_lora

_LAZY = {"LoraError": ".lora:LoraError", "patch": ".lora:patch", "read_lora": ".lora:read_lora",
         "patch_clip": ".lora:patch_clip", "subset": ".lora:subset",
         "save_lora": ".save:save_lora"}
__getattr__ = nodegraph.lazy_exports(__name__, _LAZY)

__all__ = ["KIND", "MODELS", "resolve_lora", *_LAZY]
