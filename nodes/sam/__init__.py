"""The SAM pack: segment-anything masks from points, boxes or automatically, on the shipped small
SAM (``models/sam-shapes``, trained on Shapes by ``train/sam.py``) or Meta's ViT-B/L/H checkpoints.

Nodes: Load SAM → SAM Encode Image → SAM Mask from Point/Box, SAM Automatic Masks, Mask Overlay.
torch and segment_anything are imported inside ``run``; see docs/sam.md.
"""

import nodegraph

from .auto import SamAutoMasks
from .encode import SamEncodeImage
from .loader import LoadSam
from .overlay import MaskOverlay
from .prompt import SamPromptMask

PACK = nodegraph.Pack(
    name="sam",
    version="1.0.0",
    description="Segment Anything: masks from point/box prompts and automatic masks.",
    nodes=[LoadSam, SamEncodeImage, SamPromptMask, SamAutoMasks, MaskOverlay],
    aliases={"sam.loader": "load_sam"},
)
