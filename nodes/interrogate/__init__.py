"""The interrogate pack: image → caption with any CLIP, by ranking candidate phrases.

A CLIP interrogator without a captioning model: a template and word lists (the Shapes pack's
vocabulary, or the user's), each slot filled with the phrase CLIP ranks nearest the image. Uses the
unCLIP pack's CLIP through its `api`.
"""

import nodegraph

from .nodes import Interrogate

PACK = nodegraph.Pack(
    name="interrogate",
    version="1.0.0",
    description="CLIP interrogator: caption images by ranking phrases from word lists with CLIP.",
    nodes=[Interrogate],
)
