"""A pack for the browser tests, loaded by the test server from this folder (like a custom-nodes dir).

`browsertest.gated_steps` reports progress with preview images, then waits for a gate file before it
finishes, so a test can look at the editor while the node runs (progress bar, running highlight,
in-progress preview, queue panel) and then let it finish — waiting on state, never on time.
`browsertest.fail` fails with a message that contains HTML (shown as text by the editor).
The `web/` folder is its front-end extension.
"""

import os
import time
from pathlib import Path

import nodegraph
from nodegraph import IMAGE, Node, NodeContext, NodeExecutionError, Port

GATE_DIR_ENV = "NODEGRAPH_TEST_GATE_DIR"


def _solid(hex_colour: str, size: int, fraction: float):
    import numpy as np

    rgb = [int(hex_colour[i:i + 2], 16) / 255.0 for i in (1, 3, 5)]
    image = np.zeros((1, size, size, 3), dtype=np.float32)
    rows = max(1, round(size * fraction))
    image[:, :rows, :, :] = rgb  # the preview fills from the top as the steps go
    return image


class GatedSteps(Node):
    """Count steps with progress and previews; after the first step, wait for the gate file `gate`."""

    name = "gated_steps"
    category = "testing"

    class Inputs(nodegraph.Inputs):
        gate: str = Port("gate", min_length=1, max_length=64, pattern=r"^[\w-]+$",
                         description="Name of the file (in $NODEGRAPH_TEST_GATE_DIR) to wait for.")
        steps: int = Port(4, ge=2, le=50, description="Number of progress steps.")
        color: str = Port("#20a040", pattern=r"^#[0-9a-fA-F]{6}$", description="Colour of the image.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="A 32x32 image of the colour.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        ctx.progress(1, inputs.steps, preview=_solid(inputs.color, 32, 1 / inputs.steps))
        gate = Path(os.environ.get(GATE_DIR_ENV, ".")) / inputs.gate
        deadline = time.monotonic() + 60
        while not gate.exists():  # the test opens the gate when it has seen what it wants
            ctx.check_cancelled()
            if time.monotonic() > deadline:
                raise NodeExecutionError(f"gate {gate} was not opened within 60 s")
            time.sleep(0.01)
        for step in range(2, inputs.steps + 1):
            ctx.progress(step, inputs.steps, preview=_solid(inputs.color, 32, step / inputs.steps))
        return self.Outputs(images=_solid(inputs.color, 32, 1.0))


class Fail(Node):
    """Always fail, with `message` as the error."""

    name = "fail"
    category = "testing"

    class Inputs(nodegraph.Inputs):
        images: IMAGE = Port(description="Ignored.")
        message: str = Port("it failed", description="The error message.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="Never produced.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        raise NodeExecutionError(inputs.message)


PACK = nodegraph.Pack("browsertest", nodes=[GatedSteps, Fail], version="0.1.0", web="web",
                      description="Nodes and a front-end extension for the browser tests.")
