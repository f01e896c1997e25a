"""A sample third-party pack: one node, one front-end extension file."""

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, Port

from .ops import invert


class Invert(Node):
    """Invert the colours of images."""

    name = "invert"
    category = "sample"

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="Images to invert.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="Inverted images.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        return self.Outputs(images=invert(inputs.images))


PACK = nodegraph.Pack("sample", nodes=[Invert], version="0.1.0", web="web",
                      description="Sample third-party pack.")
