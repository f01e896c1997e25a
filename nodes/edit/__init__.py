"""The edit pack: editing and exploring images with the unCLIP decoder.

Prompt-to-Prompt attention edits (word swap, refinement, attention re-weighting) by injecting the
source run's attention maps, mask-guided inpainting that keeps every pixel outside the mask, an
interpolation strip along slerp paths in CLIP space, and recolouring of CLIP image embeddings along a
fitted linear colour map, and factoring the colour out of an encoded prompt (for colour–shape pairs
the prior never saw). Public API only; the unCLIP pack's link types and model library, and the
Shapes pack's renderer (Recolour fits its map on Shapes renders). Torch is imported only when a node
runs.
"""

import nodegraph

from .inpaint import Inpaint
from .interpolate import InterpolationStrip
from .prompt2prompt import PromptToPrompt
from .recolor import EmbeddingRecolor
from .textcolor import FactorColor

PACK = nodegraph.Pack(
    name="edit",
    version="1.0.0",
    description="Image editing with the unCLIP decoder: Prompt-to-Prompt, mask-guided inpainting, "
    "interpolation strips, recolouring CLIP image embeddings, factoring the colour out of a prompt.",
    nodes=[PromptToPrompt, Inpaint, InterpolationStrip, EmbeddingRecolor, FactorColor],
    evaluations={"edit": "nodes.edit.evaluate:main"},
)
