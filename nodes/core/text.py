"""Text manipulation: concatenate, format a template, replace."""

import nodegraph
from nodegraph import Node, NodeContext, NodeExecutionError, Port


class Concat(Node):
    """Join two strings with a separator."""

    name = "concat"
    search_aliases = ("join text", "concatenate")
    category = "text"

    class Inputs(nodegraph.Inputs):
        a: str = Port("", description="First string.")
        b: str = Port("", description="Second string.")
        separator: str = Port(" ", description="Put between a and b (skipped when either is empty).")

    class Outputs(nodegraph.Outputs):
        value: str = Port(description="a + separator + b.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        parts = [p for p in (inputs.a, inputs.b) if p]
        return self.Outputs(value=inputs.separator.join(parts))


class FormatText(Node):
    """Fill a template such as 'a {colour} {shape}' with the values a, b, c."""

    name = "format"
    search_aliases = ("template", "f-string")
    category = "text"

    class Inputs(nodegraph.Inputs):
        template: nodegraph.Text = Port("{a} {b}", description="Template with {a}, {b} and {c} fields.")
        a: str = Port("", description="Value of {a}.")
        b: str = Port("", description="Value of {b}.")
        c: str = Port("", description="Value of {c}.")

    class Outputs(nodegraph.Outputs):
        value: str = Port(description="The filled template.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        try:
            return self.Outputs(value=inputs.template.format(a=inputs.a, b=inputs.b, c=inputs.c))
        except (KeyError, IndexError, ValueError) as exc:
            raise NodeExecutionError(f"template {inputs.template!r}: {exc!r}; only {{a}}, {{b}} and {{c}} "
                                     "are available (write {{ and }} for literal braces)") from None


class Replace(Node):
    """Replace every occurrence of one substring with another."""

    name = "replace"
    search_aliases = ("substitute", "find and replace")
    category = "text"

    class Inputs(nodegraph.Inputs):
        text: str = Port("", description="The text.")
        old: str = Port("", description="Substring to find (empty: the text is passed on unchanged).")
        new: str = Port("", description="Replacement.")

    class Outputs(nodegraph.Outputs):
        value: str = Port(description="The text with replacements.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        if not inputs.old:
            return self.Outputs(value=inputs.text)
        return self.Outputs(value=inputs.text.replace(inputs.old, inputs.new))
