"""The Shapes pack: the synthetic domain the shipped models are trained on, as nodes.

`domain` (scenes, rendering, masks, captions, held-out splits) and `analyse` (a pixel analyser
independent of every model) are plain libraries; `evaluate` is `nodegraph eval shapes`.
"""

import nodegraph

from .nodes import AnalyseShapes, ShapeScene

PACK = nodegraph.Pack(
    name="shapes",
    version="1.0.0",
    description="The synthetic Shapes domain: render scenes with exact masks, analyse generated images.",
    nodes=[ShapeScene, AnalyseShapes],
    evaluations={"shapes": "nodes.shapes.evaluate:main"},
)
