"""The Shapes pack: the synthetic domain the shipped models are trained on, as nodes.

`domain` (scenes, rendering, masks, captions, held-out splits) and `analyse` (a pixel analyser
independent of every model) are plain libraries. Two nodes fitted to the Shapes palette work on the
unCLIP pack's CLIP (through its `api`): Recolour Embedding (`recolor`) and Factor Out Colour
(`textcolor`), which draw colour–shape pairs the prior never saw together; Shapes Vocabulary gives
the domain's word lists to the CLIP Interrogator.
"""

import nodegraph

from .nodes import AnalyseShapes, ShapeScene, ShapesVocabulary
from .recolor import EmbeddingRecolor
from .textcolor import FactorColor

PACK = nodegraph.Pack(
    name="shapes",
    version="1.0.0",
    description="The synthetic Shapes domain: render scenes with exact masks, analyse generated images, "
    "recolour CLIP image embeddings and factor the colour out of a prompt with maps fitted on the palette.",
    nodes=[ShapeScene, AnalyseShapes, ShapesVocabulary, EmbeddingRecolor, FactorColor],
    aliases={"edit.embedding_recolor": "embedding_recolor", "edit.factor_color": "factor_color"},
)
