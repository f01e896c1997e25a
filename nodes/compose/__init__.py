"""The compose pack: one image from several prompts with any unCLIP decoder.

MultiDiffusion fuses diffusion paths over decoder-sized windows, so a canvas holds several prompted
regions (boxes or masks) and can be wider than the decoder was trained on (panoramas). Uses the
unCLIP pack through its `api`.
"""

import nodegraph

from .regions import MultiDiffusion

PACK = nodegraph.Pack(
    name="compose",
    version="1.0.0",
    description="Composition with an unCLIP decoder: MultiDiffusion region prompts (boxes, masks) and panoramas.",
    nodes=[MultiDiffusion],
)
