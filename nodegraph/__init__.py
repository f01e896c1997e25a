"""nodegraph — a node-graph workflow engine for unCLIP (DALL·E 2 family) text-to-image generation.

This module is the public API (version :data:`API_VERSION`). Packs — the built-in ones in
``nodes/`` and third-party ones alike — import only from here::

    import nodegraph
    from nodegraph import IMAGE, Node, NodeContext, Port

    class Invert(Node):
        \"\"\"Invert the colours of an image.\"\"\"
        name = "invert"
        category = "image"

        class Inputs(nodegraph.Inputs):
            image: IMAGE = Port(description="Images to invert.")

        class Outputs(nodegraph.Outputs):
            image: IMAGE = Port(description="Inverted images.")

        def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
            return self.Outputs(image=1.0 - inputs.image)

    PACK = nodegraph.Pack("mypack", nodes=[Invert])

Importing this module never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
#: Version of this public API. Bumped on any incompatible change to what is exported here.
API_VERSION = 1

# Public name -> submodule. Loaded on first use (PEP 562), so `nodegraph --help` stays instant.
_EXPORTS = {
    "OutputCache": "cache", "estimate_nbytes": "cache",
    "Settings": "config",
    "CancelToken": "context", "NodeContext": "context",
    "Engine": "engine", "apply_overrides": "engine",
    "Cancelled": "errors", "DuplicateNodeType": "errors", "NodeExecutionError": "errors",
    "NodegraphError": "errors", "PackError": "errors", "UnsafePath": "errors", "WorkflowInvalid": "errors",
    "Event": "events", "NodeCached": "events", "NodeCompleted": "events", "NodeFailed": "events",
    "NodeStarted": "events", "Progress": "events", "RunFinished": "events", "RunStarted": "events",
    "Executor": "executor", "LocalExecutor": "executor", "RunResult": "executor",
    "FingerprintContext": "fingerprint", "file_signature": "fingerprint",
    "as_image_batch": "images", "from_pil": "images", "from_tensor": "images", "to_pil": "images",
    "to_tensor": "images",
    "lazy_exports": "lazy",
    "ModelHandle": "modelstore", "ModelStore": "modelstore",
    "Inputs": "node", "Node": "node", "NodeSpec": "node", "Outputs": "node", "Port": "node",
    "safe_join": "paths",
    "preview_images": "saving", "save_images": "saving",
    "Plan": "plan", "make_plan": "plan",
    "load_packs": "plugins",
    "read_png_workflow": "png", "save_png": "png",
    "Pack": "registry", "Registry": "registry",
    "ANY": "types", "IMAGE": "types", "MASK": "types", "MAX_SEED": "types", "FileName": "types", "ImageFile": "types",
    "Seed": "types", "Text": "types", "link_type": "types",
    "Issue": "validation", "ValidationResult": "validation", "validate": "validation",
    "FORMAT": "workflow", "Workflow": "workflow", "dump_workflow": "workflow", "load_workflow": "workflow",
    "load_state_dict": "weights",
}

__all__ = [
    "API_VERSION", "__version__", "ANY", "CancelToken", "Cancelled", "DuplicateNodeType", "Engine", "Event",
    "Executor", "FORMAT", "FileName", "FingerprintContext", "IMAGE", "ImageFile", "Inputs", "Issue",
    "LocalExecutor", "MASK", "MAX_SEED", "ModelHandle", "ModelStore", "Node", "NodeCached", "NodeCompleted",
    "NodeContext", "NodeExecutionError", "NodeFailed", "NodeSpec", "NodeStarted", "NodegraphError",
    "OutputCache", "Outputs", "Pack", "PackError", "Plan", "Port", "Progress", "Registry", "RunFinished",
    "RunResult", "RunStarted", "Seed", "Settings", "Text", "UnsafePath", "ValidationResult", "Workflow",
    "WorkflowInvalid", "apply_overrides", "as_image_batch", "dump_workflow", "estimate_nbytes",
    "file_signature", "from_pil", "from_tensor", "lazy_exports", "link_type", "load_packs", "load_state_dict",
    "load_workflow", "make_plan", "read_png_workflow", "preview_images", "safe_join", "save_images",
    "save_png", "to_pil", "to_tensor", "validate",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nodegraph' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names above load lazily
    from .cache import OutputCache, estimate_nbytes
    from .config import Settings
    from .context import CancelToken, NodeContext
    from .engine import Engine, apply_overrides
    from .errors import (
        Cancelled,
        DuplicateNodeType,
        NodeExecutionError,
        NodegraphError,
        PackError,
        UnsafePath,
        WorkflowInvalid,
    )
    from .events import (
        Event,
        NodeCached,
        NodeCompleted,
        NodeFailed,
        NodeStarted,
        Progress,
        RunFinished,
        RunStarted,
    )
    from .executor import Executor, LocalExecutor, RunResult
    from .fingerprint import FingerprintContext, file_signature
    from .images import as_image_batch, from_pil, from_tensor, to_pil, to_tensor
    from .lazy import lazy_exports
    from .modelstore import ModelHandle, ModelStore
    from .node import Inputs, Node, NodeSpec, Outputs, Port
    from .paths import safe_join
    from .plan import Plan, make_plan
    from .plugins import load_packs
    from .png import read_png_workflow, save_png
    from .registry import Pack, Registry
    from .saving import preview_images, save_images
    from .types import ANY, IMAGE, MASK, MAX_SEED, FileName, ImageFile, Seed, Text, link_type
    from .validation import Issue, ValidationResult, validate
    from .weights import load_state_dict
    from .workflow import FORMAT, Workflow, dump_workflow, load_workflow
