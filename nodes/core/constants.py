"""Constant nodes: a widget value on an output, so several nodes can share it."""

import nodegraph
from nodegraph import Node, NodeContext, Port


class Int(Node):
    """An integer constant."""

    name = "int"
    category = "constants"

    class Inputs(nodegraph.Inputs):
        value: int = Port(0, description="The integer.")

    class Outputs(nodegraph.Outputs):
        value: int = Port(description="The integer.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        return self.Outputs(value=inputs.value)


class Float(Node):
    """A floating-point constant."""

    name = "float"
    category = "constants"

    class Inputs(nodegraph.Inputs):
        value: float = Port(0.0, description="The number.")

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="The number.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        return self.Outputs(value=inputs.value)


class String(Node):
    """A one-line string constant."""

    name = "string"
    category = "constants"

    class Inputs(nodegraph.Inputs):
        value: str = Port("", description="The string.")

    class Outputs(nodegraph.Outputs):
        value: str = Port(description="The string.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        return self.Outputs(value=inputs.value)


class Text(Node):
    """Multi-line text, e.g. a prompt."""

    name = "text"
    category = "constants"

    class Inputs(nodegraph.Inputs):
        value: nodegraph.Text = Port("", description="The text (multi-line).")

    class Outputs(nodegraph.Outputs):
        value: str = Port(description="The text.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        return self.Outputs(value=inputs.value)


class Bool(Node):
    """A true/false constant."""

    name = "bool"
    category = "constants"

    class Inputs(nodegraph.Inputs):
        value: bool = Port(False, description="The boolean.")

    class Outputs(nodegraph.Outputs):
        value: bool = Port(description="The boolean.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        return self.Outputs(value=inputs.value)


class Seed(Node):
    """A seed shared by several sampling nodes (the editor can randomize it per run)."""

    name = "seed"
    category = "constants"

    class Inputs(nodegraph.Inputs):
        seed: nodegraph.Seed = Port(0, description="The seed.")

    class Outputs(nodegraph.Outputs):
        seed: nodegraph.Seed = Port(description="The seed.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        return self.Outputs(seed=inputs.seed)
