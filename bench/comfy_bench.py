"""ComfyUI's `execution.validate_prompt` on the graphs of `engine_bench.py`, for a side-by-side figure.
Run by hand (normally through `engine_bench.py --comfyui PATH`); not a test, not a dependency.

    PY=/path/to/comfy-venv/bin/python   # a venv that can `import execution` in the ComfyUI checkout
    $PY bench/comfy_bench.py --comfyui PATH chain 1000 5

ComfyUI (0.3.64 was measured) is imported from its checkout, on the CPU; its `nodes` module is
replaced by one holding three bench nodes, as ComfyUI's own unit tests replace it
(`patch.dict('sys.modules', {'nodes': ...})`): a float constant, a math node (`a`, `b` FLOAT, `op`
a combo) and an output node, the ports of `core.float`, `core.math` and `core.show`. The workflow of
`engine_bench.chain` / `engine_bench.fan` is translated to ComfyUI's API format (links as
`[node, 0]`), and `validate_prompt` is timed on a fresh copy of it (it converts literals in place),
best of the repeats, process CPU time. It prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_bench import chain, fan  # noqa: E402 - the same graphs as the engine's figures

OPS = ["add", "subtract", "multiply", "divide", "power", "min", "max", "modulo"]


class BenchFloat:
    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI's node protocol
        return {"required": {"value": ("FLOAT", {"default": 0.0, "min": -1e308, "max": 1e308})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "run"
    CATEGORY = "bench"

    def run(self, value):
        return (value,)


class BenchMath:
    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {"required": {"a": ("FLOAT", {"default": 0.0}), "b": ("FLOAT", {"default": 0.0})},
                "optional": {"op": (OPS, {"default": "add"})}}

    RETURN_TYPES = ("FLOAT", "INT")
    FUNCTION = "run"
    CATEGORY = "bench"

    def run(self, a, b, op="add"):
        return (a + b, round(a + b))


class BenchShow:
    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {"required": {"value": ("FLOAT", {"forceInput": True})}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"
    CATEGORY = "bench"

    def run(self, value):
        return {"ui": {"text": [str(value)]}}


CLASSES = {"core.float": "BenchFloat", "core.math": "BenchMath", "core.show": "BenchShow"}
OUTPUTS = {"value": 0, "integer": 1}


def to_prompt(workflow: dict) -> dict:
    """A nodegraph workflow of core.float/math/show nodes in ComfyUI's API format."""
    prompt = {}
    for nid, node in workflow["nodes"].items():
        inputs = {port: [v["from"], OUTPUTS[v["output"]]] if isinstance(v, dict) else v
                  for port, v in node["inputs"].items()}
        prompt[nid] = {"class_type": CLASSES[node["type"]], "inputs": inputs}
    return prompt


def load_comfyui(root: Path):
    """ComfyUI's `execution` module, CPU only, with the bench nodes as its node mappings."""
    sys.path.insert(0, str(root))
    import comfy.options

    comfy.options.enable_args_parsing()
    argv, sys.argv = sys.argv, [sys.argv[0], "--cpu"]
    try:
        sys.modules["nodes"] = types.SimpleNamespace(NODE_CLASS_MAPPINGS={
            "BenchFloat": BenchFloat, "BenchMath": BenchMath, "BenchShow": BenchShow})
        import execution
    finally:
        sys.argv = argv
    version = (root / "comfyui_version.py").read_text().split('"')[1]
    return execution, version


def measure(root: Path, shape: str, n: int, repeats: int) -> dict:
    execution, version = load_comfyui(root)
    prompt = to_prompt((chain if shape == "chain" else fan)(n))
    loop = asyncio.new_event_loop()
    best, valid, error = float("inf"), False, None
    for _ in range(repeats):
        p = copy.deepcopy(prompt)
        t0 = time.process_time()
        valid, err, _, node_errors = loop.run_until_complete(execution.validate_prompt("bench", p, None))
        best = min(best, time.process_time() - t0)
        if not valid:  # e.g. a deep chain: ComfyUI validates links recursively
            error = (err or {}).get("details", "")[:200] or str(node_errors)[:200]
            break
    return {"shape": shape, "n": len(prompt), "comfyui": version, "valid": valid, "error": error,
            "validate_ms": best * 1e3, "validate_us": best / len(prompt) * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--comfyui", type=Path, required=True, help="a ComfyUI checkout")
    ap.add_argument("shape", choices=("chain", "fan"))
    ap.add_argument("n", type=int)
    ap.add_argument("repeats", type=int)
    args = ap.parse_args()
    print(json.dumps(measure(args.comfyui.resolve(), args.shape, args.n, args.repeats)))


if __name__ == "__main__":
    main()
