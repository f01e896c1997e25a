"""The edit pack: editing and exploring images with any unCLIP decoder.

Prompt-to-Prompt attention edits (word swap, refinement, attention re-weighting) by injecting the
source run's attention maps, mask-guided inpainting that keeps every pixel outside the mask, and an
interpolation strip along slerp paths in CLIP space. Methods fitted to one domain live with that
domain's pack (the Shapes colour nodes are in `shapes`). Uses the unCLIP pack through its `api`.
"""

import nodegraph

from .inpaint import Inpaint
from .interpolate import InterpolationStrip
from .prompt2prompt import PromptToPrompt

PACK = nodegraph.Pack(
    name="edit",
    version="1.0.0",
    description="Image editing with the unCLIP decoder: Prompt-to-Prompt, mask-guided inpainting, "
    "interpolation strips.",
    nodes=[PromptToPrompt, Inpaint, InterpolationStrip],
)
