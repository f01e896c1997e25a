"""A toy pack for engine tests: loaded through the real plugin loader (as a directory pack)."""

import sys
import time
from typing import Any, Literal

import nodegraph
from nodegraph import ANY, Node, NodeContext, NodeExecutionError, Port

CALLS: dict[str, int] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


class Const(Node):
    """A number."""

    name = "const"

    class Inputs(nodegraph.Inputs):
        value: float = Port(0.0, description="The number.")

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="The number.")

    def run(self, inputs, ctx):
        _count("const")
        return self.Outputs(value=inputs.value)


class Add(Node):
    """a + b."""

    name = "add"

    class Inputs(nodegraph.Inputs):
        a: float = Port(0.0, description="Left.")
        b: float = Port(0.0, description="Right.", ge=-1e9, le=1e9)

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="Sum.")

    def run(self, inputs, ctx):
        _count("add")
        return self.Outputs(value=inputs.a + inputs.b)


class Fail(Node):
    """Fails when `fail` is true, else passes its input through."""

    name = "fail"

    class Inputs(nodegraph.Inputs):
        value: float = Port(0.0, description="Passed through.")
        fail: bool = Port(True, description="Whether to raise.")

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="The input.")

    def run(self, inputs, ctx):
        _count("fail")
        if inputs.fail:
            raise NodeExecutionError("toy failure requested")
        return self.Outputs(value=inputs.value)


class Steps(Node):
    """Reports `steps` progress steps, sleeping `delay` seconds per step."""

    name = "steps"

    class Inputs(nodegraph.Inputs):
        value: float = Port(0.0, description="Passed through.")
        steps: int = Port(3, ge=1, description="Progress steps.")
        delay: float = Port(0.0, ge=0, description="Seconds per step.")

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="The input.")

    def run(self, inputs, ctx: NodeContext):
        _count("steps")
        for i in range(inputs.steps):
            time.sleep(inputs.delay)
            ctx.progress(i + 1, inputs.steps)
        return self.Outputs(value=inputs.value)


class Blob(Node):
    """Outputs `nbytes` bytes (for cache-bound tests)."""

    name = "blob"

    class Inputs(nodegraph.Inputs):
        nbytes: int = Port(1000, ge=0, description="Size.")
        tag: str = Port("", description="Makes distinct keys.")

    class Outputs(nodegraph.Outputs):
        data: ANY = Port(description="The bytes.")

    def run(self, inputs, ctx):
        _count("blob")
        return self.Outputs(data=bytes(inputs.nbytes))


class Noise(Node):
    """Random RGB images (slow to encode as PNG: for tests that interrupt a save)."""

    name = "noise"

    class Inputs(nodegraph.Inputs):
        size: int = Port(16, ge=1, le=8192, description="Width and height.")
        batch: int = Port(1, ge=1, le=4096, description="Number of images.")
        seed: int = Port(0, ge=0, description="Seed.")

    class Outputs(nodegraph.Outputs):
        images: nodegraph.IMAGE = Port(description="The images, (batch, size, size, 3).",
                                       shape=("batch", "size", "size", 3))

    def run(self, inputs, ctx):
        import numpy as np

        _count("noise")
        rng = np.random.default_rng(inputs.seed)
        return self.Outputs(images=rng.random((inputs.batch, inputs.size, inputs.size, 3), dtype=np.float32))


class Clock(Node):
    """Volatile: returns a new value every run."""

    name = "clock"
    volatile = True

    class Inputs(nodegraph.Inputs):
        pass

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="time.perf_counter().")

    def run(self, inputs, ctx):
        _count("clock")
        return self.Outputs(value=time.perf_counter())


class Sink(Node):
    """Output node: shows its value."""

    name = "sink"
    output_node = True

    class Inputs(nodegraph.Inputs):
        value: ANY = Port(description="Anything.")

    class Outputs(nodegraph.Outputs):
        value: ANY = Port(description="The same value.")

    def run(self, inputs, ctx):
        _count("sink")
        ctx.show(value=[repr(inputs.value)[:100]])
        return self.Outputs(value=inputs.value)


class Exit(Node):
    """Ends the process as a node must not (as a library's command-line code may): ``sys.exit(code)``
    (``sys.exit()`` when `bare`), or a KeyboardInterrupt, in `run`, `check` or `fingerprint` (`at`)."""

    name = "exit"
    output_node = True
    volatile = True  # so that planning asks its fingerprint

    class Inputs(nodegraph.Inputs):
        at: Literal["run", "check", "fingerprint", "nowhere"] = Port("run", description="Where it exits.")
        code: int = Port(3, description="The exit code.")
        bare: bool = Port(False, description="sys.exit() without a code.")
        interrupt: bool = Port(False, description="Raise KeyboardInterrupt (Ctrl-C) instead of exiting.")

    class Outputs(nodegraph.Outputs):
        pass

    @staticmethod
    def _exit(inputs: dict[str, Any], at: str) -> None:
        if inputs.get("at", "run") != at:
            return
        if inputs.get("interrupt"):
            raise KeyboardInterrupt
        if inputs.get("bare"):
            sys.exit()
        sys.exit(inputs.get("code", 3))

    def fingerprint(self, inputs, ctx):
        self._exit(inputs, "fingerprint")
        return "same"

    def check(self, inputs, ctx):
        self._exit(inputs, "check")
        return []

    def run(self, inputs, ctx):
        _count("exit")
        self._exit(inputs.model_dump(), "run")
        return self.Outputs()


def calls() -> dict[str, Any]:
    return dict(CALLS)


PACK = nodegraph.Pack("toy", nodes=[Const, Add, Fail, Steps, Blob, Noise, Clock, Sink, Exit])
