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
from .images import as_image_batch, from_pil, to_pil
from .modelstore import ModelStore
from .node import Inputs, Node, NodeSpec, Outputs, Port
from .paths import safe_join
from .plan import Plan, make_plan
from .plugins import load_packs
from .png import read_png_workflow, save_png
from .registry import Pack, Registry
from .types import ANY, IMAGE, MASK, FileName, ImageFile, Seed, Text, link_type
from .validate import Issue, ValidationResult, validate
from .workflow import FORMAT, Workflow, dump_workflow, load_workflow

__version__ = "0.1.0"
#: Version of this public API. Bumped on any incompatible change to what is exported here.
API_VERSION = 1

__all__ = [
    "ANY", "API_VERSION", "CancelToken", "Cancelled", "DuplicateNodeType", "Engine", "Event", "Executor",
    "FORMAT", "FileName", "IMAGE", "ImageFile", "Inputs", "Issue", "LocalExecutor", "MASK", "ModelStore",
    "Node", "NodeCached", "NodeCompleted", "NodeContext", "NodeExecutionError", "NodeFailed", "NodeSpec",
    "NodeStarted", "NodegraphError", "OutputCache", "Outputs", "Pack", "PackError", "Plan", "Port",
    "Progress", "Registry", "RunFinished", "RunResult", "RunStarted", "Seed", "Settings", "Text",
    "UnsafePath", "ValidationResult", "Workflow", "WorkflowInvalid", "__version__", "apply_overrides",
    "dump_workflow", "estimate_nbytes", "link_type", "load_packs", "load_workflow", "make_plan",
    "read_png_workflow", "safe_join", "save_png", "validate", "as_image_batch", "from_pil", "to_pil",
]
