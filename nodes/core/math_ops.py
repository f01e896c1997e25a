"""Arithmetic on numbers."""

import math
from typing import Literal

import nodegraph
from nodegraph import Node, NodeContext, NodeExecutionError, Port

_OPS = {
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a / b,
    "power": lambda a, b: a**b,
    "min": min,
    "max": max,
    "modulo": lambda a, b: math.fmod(a, b),
}


class Math(Node):
    """Combine two numbers: add, subtract, multiply, divide, power, min, max, modulo."""

    name = "math"
    search_aliases = ("calculate", "arithmetic", "add", "multiply")
    category = "math"

    class Inputs(nodegraph.Inputs):
        a: float = Port(0.0, description="Left operand.")
        b: float = Port(0.0, description="Right operand.")
        op: Literal["add", "subtract", "multiply", "divide", "power", "min", "max", "modulo"] = Port(
            "add", description="The operation.")

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="The result.")
        integer: int = Port(description="The result rounded to the nearest integer.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        if inputs.op in ("divide", "modulo") and inputs.b == 0:
            raise NodeExecutionError(f"{inputs.op} by zero: set b to a non-zero number")
        try:
            value = float(_OPS[inputs.op](inputs.a, inputs.b))
        except (OverflowError, ValueError) as exc:
            raise NodeExecutionError(f"{inputs.a} {inputs.op} {inputs.b}: {exc}") from None
        if not math.isfinite(value):
            raise NodeExecutionError(f"{inputs.a} {inputs.op} {inputs.b} is not a finite number")
        return self.Outputs(value=value, integer=round(value))
