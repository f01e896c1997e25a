"""Nodes of the Shapes domain: render a scene (image + exact mask + caption), analyse images."""

from __future__ import annotations

from typing import Literal

import nodegraph
from nodegraph import IMAGE, MASK, Node, NodeContext, Port

Color = Literal["red", "orange", "yellow", "green", "blue", "purple", "white", "black"]
Shape = Literal["circle", "square", "triangle", "star"]
Size = Literal["small", "large"]
Position = Literal["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom",
                   "bottom right"]


class ShapeScene(Node):
    """Render a Shapes scene: one anti-aliased object on a solid background, with its exact mask.

    The seed draws the colour jitter and the object's exact centre and radius within the named
    position and size, as the training data does.
    """

    name = "scene"
    title = "Shapes Scene"
    category = "shapes"

    class Inputs(nodegraph.Inputs):
        color: Color = Port("red", description="Object colour.")
        shape: Shape = Port("circle", description="Object shape.")
        size: Size = Port("large", description="Object size.")
        position: Position = Port("center", description="Where the object's centre is (3×3 grid).")
        background: Color = Port("white", description="Background colour (must differ from the object's).")
        resolution: int = Port(64, ge=8, le=1024, description="Image side in pixels.")
        seed: nodegraph.Seed = Port(0, description="Seed of the jitter.")

    class Outputs(nodegraph.Outputs):
        image: IMAGE = Port(description="The rendered scene, (1, S, S, 3).",
                            shape=(1, "resolution", "resolution", 3))
        mask: MASK = Port(description="The object's exact coverage, (1, S, S).", shape=(1, "resolution", "resolution"))
        caption: str = Port(description="A canonical caption naming every attribute.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np

        from . import domain

        if inputs.color == inputs.background:
            raise nodegraph.NodeExecutionError(
                f"object and background are both {inputs.color}; choose a different background colour")
        scene = domain.make_scene(np.random.default_rng(inputs.seed), inputs.color, inputs.background,
                                  inputs.shape, inputs.size, inputs.position)
        image = domain.render(scene, inputs.resolution).astype(np.float32) / 255.0
        mask = domain.coverage(scene, inputs.resolution).astype(np.float32)
        return self.Outputs(image=image[None], mask=mask[None], caption=domain.canonical_caption(scene.attributes()))


class AnalyseShapes(Node):
    """Measure generated images with the pixel analyser: colour, shape, size, position, background.

    Independent of every model: it segments the object from the background colour and matches
    shape templates. The report has one line per image; the mask is the object it found.
    """

    name = "analyse"
    title = "Analyse Shapes"
    category = "shapes"

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="Images to analyse.")

    class Outputs(nodegraph.Outputs):
        report: str = Port(description="One line per image: the measured attributes.")
        mask: MASK = Port(description="The object the analyser found in each image, (B, H, W).")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np

        from . import analyse

        lines, masks = [], []
        images = nodegraph.as_image_batch(inputs.images)
        for i, img in enumerate(images):
            a = analyse.analyse(img)
            if a.found:
                lines.append(f"{i}: {a.color} {a.shape}, {a.size}, {a.position}, on {a.background}")
            else:
                lines.append(f"{i}: no object found (background {a.background})")
            m = a.mask.astype(np.float32)
            if m.shape != img.shape[:2]:
                m = np.zeros(img.shape[:2], np.float32)
            masks.append(m)
        report = "\n".join(lines)
        ctx.show(text=report)
        return self.Outputs(report=report, mask=np.stack(masks))


class ShapesVocabulary(Node):
    """The Shapes domain's word lists and caption template, for the CLIP Interrogator: every colour,
    shape, size, position and background the domain can name; and reference renders of training-split
    scenes, the domain's typical images the interrogator calibrates against, with what each shows
    (its phrase per slot) for the interrogator's reference cache."""

    name = "vocabulary"
    title = "Shapes Vocabulary"
    category = "shapes"

    class Inputs(nodegraph.Inputs):
        references: int = Port(64, ge=1, le=1024, description="How many reference scenes to render.")
        resolution: int = Port(64, ge=8, le=1024, description="Reference image side in pixels.")
        seed: nodegraph.Seed = Port(0, description="Seed drawing the reference scenes.")

    class Outputs(nodegraph.Outputs):
        vocabulary: str = Port(description="Word lists, 'slot: phrase, ...' per line.")
        template: str = Port(description="The caption template naming the slots.")
        reference: IMAGE = Port(description="Renders of random training-split scenes, (M, S, S, 3).",
                                shape=("references", "resolution", "resolution", 3))
        labels: str = Port(description="Each reference's phrase per slot, a JSON list of {slot: phrase}.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import json

        import numpy as np

        from . import domain

        lines = [f"{slot}: {', '.join(words)}" for slot, words in domain.vocabulary().items()]
        scenes = domain.sample_scenes(inputs.seed, inputs.references, "train")
        reference = np.stack([domain.render(s, inputs.resolution) for s in scenes]).astype(np.float32) / 255.0
        labels = json.dumps([domain.choices_of(s.attributes()) for s in scenes])
        return self.Outputs(vocabulary="\n".join(lines), template=domain.VOCABULARY_TEMPLATE, reference=reference,
                            labels=labels)
