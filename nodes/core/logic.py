"""Logic: compare numbers, switch between two branches (lazily), show a value in the editor."""

import json
from typing import Any, Literal

import nodegraph
from nodegraph import ANY, Node, NodeContext, Port


class Compare(Node):
    """Compare two numbers."""

    name = "compare"
    search_aliases = ("equals", "greater", "less", "condition")
    category = "logic"

    class Inputs(nodegraph.Inputs):
        a: float = Port(0.0, description="Left operand.")
        b: float = Port(0.0, description="Right operand.")
        op: Literal["<", "<=", "==", "!=", ">=", ">"] = Port("<", description="The comparison.")

    class Outputs(nodegraph.Outputs):
        value: bool = Port(description="The result.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        a, b = inputs.a, inputs.b
        result = {"<": a < b, "<=": a <= b, "==": a == b, "!=": a != b, ">=": a >= b, ">": a > b}[inputs.op]
        return self.Outputs(value=result)


class Switch(Node):
    """Pass on one of two inputs. Only the chosen branch is evaluated."""

    name = "switch"
    search_aliases = ("if", "select", "branch")
    category = "logic"

    class Inputs(nodegraph.Inputs):
        condition: bool = Port(True, description="Which input to pass on: true → on_true.")
        on_true: ANY = Port(None, lazy=True, description="Value when the condition is true.")
        on_false: ANY = Port(None, lazy=True, description="Value when the condition is false.")

    class Outputs(nodegraph.Outputs):
        value: ANY = Port(description="The chosen value.")

    def check_lazy(self, inputs: Inputs, ctx: NodeContext) -> list[str]:
        return ["on_true" if inputs.condition else "on_false"]

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        return self.Outputs(value=inputs.on_true if inputs.condition else inputs.on_false)


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} shape={tuple(shape)} dtype={getattr(value, 'dtype', '?')}"
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)[:2000]


class ShowValue(Node):
    """Show any value as text on the node (and in the run's output)."""

    name = "show"
    search_aliases = ("display", "print", "show text")
    category = "logic"
    output_node = True

    class Inputs(nodegraph.Inputs):
        value: ANY = Port(description="The value to show.")

    class Outputs(nodegraph.Outputs):
        text: str = Port(description="The value as text.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        text = _describe(inputs.value)
        ctx.show(text=[text])
        return self.Outputs(text=text)
