"""Engine overhead on synthetic graphs of trivial core nodes. Run by hand; not a test.

    .venv/bin/python bench/engine_bench.py            # full table (chain + fan, 10..10,000 nodes)
    .venv/bin/python bench/engine_bench.py --quick    # fewer repeats

Graphs: a *chain* (float → math → math → … → show) and a *fan* (one float fanned out to N/2 math
nodes, reduced pairwise by a binary tree of math nodes into one show). For each size, in a fresh
process so peak RSS is per size, it reports medians of several runs of:

- plan: validation + planning (ms)
- first: first run on an empty cache, planning included (ms)
- exec/node: executor time per node on an empty cache, planning excluded (µs)
- overhead/node: (T(N) − T(1)) / N of the first run, with T(1) the smallest graph's time (µs)
- cached: fully cached re-run, planning included (ms)
- widget: re-run after changing one widget near the root (ms)
- rss: peak resident memory of the process (MB)

Then start-up: `nodegraph validate` versus `python -c pass` (medians of 10).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = [10, 100, 1000, 10000]


def link(n: str, out: str = "value") -> dict[str, str]:
    return {"from": n, "output": out}


def chain(n: int, root_value: float = 1.0) -> dict:
    nodes = {"n0": {"type": "core.float", "inputs": {"value": root_value}}}
    for i in range(1, n - 1):
        nodes[f"n{i}"] = {"type": "core.math", "inputs": {"a": link(f"n{i - 1}"), "b": 1.0, "op": "add"}}
    nodes["out"] = {"type": "core.show", "inputs": {"value": link(f"n{n - 2}")}}
    return {"format": "nodegraph/1", "nodes": nodes}


def fan(n: int, root_value: float = 1.0) -> dict:
    width = max(1, (n - 2) // 2)
    nodes = {"root": {"type": "core.float", "inputs": {"value": root_value}}}
    level = []
    for i in range(width):
        nodes[f"w{i}"] = {"type": "core.math", "inputs": {"a": link("root"), "b": float(i), "op": "add"}}
        level.append(f"w{i}")
    k = 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level) - 1, 2):
            nodes[f"r{k}"] = {"type": "core.math", "inputs": {"a": link(level[j]), "b": link(level[j + 1])}}
            nxt.append(f"r{k}")
            k += 1
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    nodes["out"] = {"type": "core.show", "inputs": {"value": link(level[0])}}
    return {"format": "nodegraph/1", "nodes": nodes}


def measure(shape: str, n: int, repeats: int) -> dict:
    """Runs in a child process: one shape and size."""
    from nodegraph import Engine, Settings

    build = chain if shape == "chain" else fan
    wf = build(n)
    changed = build(n, root_value=2.0)
    settings = Settings(builtin_packs=True, entry_point_packs=False, output_dir=Path("/tmp/ng-bench"))
    plan_t, first_t, exec_t, cached_t, widget_t = [], [], [], [], []
    for _ in range(repeats):
        engine = Engine.from_settings(settings)
        t0 = time.perf_counter()
        plan = engine.plan(wf)
        plan_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.executor.execute(plan)
        exec_t.append(time.perf_counter() - t0)

        engine = Engine.from_settings(settings)
        t0 = time.perf_counter()
        result = engine.run(wf)
        first_t.append(time.perf_counter() - t0)
        assert result.ok, result.error
        assert len(result.executed) == len(plan.order)
        t0 = time.perf_counter()
        result = engine.run(wf)
        cached_t.append(time.perf_counter() - t0)
        assert not result.executed
        t0 = time.perf_counter()
        result = engine.run(changed)
        widget_t.append(time.perf_counter() - t0)
        assert result.ok
        engine.run(wf)  # back to the original for the next repeat's cached re-run
    nodes = len(wf["nodes"])
    return {
        "shape": shape, "n": nodes,
        "plan_ms": statistics.median(plan_t) * 1e3,
        "first_ms": statistics.median(first_t) * 1e3,
        "exec_us_per_node": statistics.median(exec_t) / nodes * 1e6,
        "cached_ms": statistics.median(cached_t) * 1e3,
        "widget_ms": statistics.median(widget_t) * 1e3,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def startup(repeats: int = 10) -> dict:
    wf = ROOT / "bench" / ".startup.json"
    wf.write_text(json.dumps(chain(10)))
    exe = Path(sys.executable)

    def timed(cmd: list[str]) -> float:
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples) * 1e3

    out = {
        "python -c pass": timed([str(exe), "-c", "pass"]),
        "nodegraph --help": timed([str(exe), "-m", "nodegraph", "--help"]),
        "nodegraph validate": timed([str(exe), "-m", "nodegraph", "validate", str(wf)]),
        "import torch": timed([str(exe), "-c", "import torch"]) if repeats > 3 else float("nan"),
    }
    check = subprocess.run([str(exe), "-c", f"import sys, nodegraph.cli as c; c.main(['validate', {str(wf)!r}]);"
                            "print('torch' in sys.modules)"], capture_output=True, text=True)
    out["validate imports torch"] = check.stdout.strip().splitlines()[-1]
    wf.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=3, metavar=("SHAPE", "N", "REPEATS"))
    args = ap.parse_args()
    if args.child:
        shape, n, repeats = args.child
        print(json.dumps(measure(shape, int(n), int(repeats))))
        return
    rows = []
    for shape in ("chain", "fan"):
        for n in SIZES:
            repeats = 3 if args.quick or n >= 10000 else 5
            proc = subprocess.run([sys.executable, __file__, "--child", shape, str(n), str(repeats)],
                                  capture_output=True, text=True, check=True)
            rows.append(json.loads(proc.stdout))
    base = {r["shape"]: r for r in rows if r["n"] == min(x["n"] for x in rows if x["shape"] == r["shape"])}
    print(f"{'graph':<7}{'nodes':>7}{'plan ms':>10}{'first ms':>10}{'exec µs/node':>14}"
          f"{'overhead µs/node':>18}{'cached ms':>11}{'widget ms':>11}{'RSS MB':>8}")
    for r in rows:
        b = base[r["shape"]]
        overhead = (r["first_ms"] - b["first_ms"]) * 1e3 / max(1, r["n"] - b["n"]) if r["n"] > b["n"] else float("nan")
        print(f"{r['shape']:<7}{r['n']:>7}{r['plan_ms']:>10.2f}{r['first_ms']:>10.2f}{r['exec_us_per_node']:>14.1f}"
              f"{overhead:>18.1f}{r['cached_ms']:>11.2f}{r['widget_ms']:>11.2f}{r['rss_mb']:>8.0f}")
    print()
    for k, v in startup(3 if args.quick else 10).items():
        print(f"{k:<24} {v if isinstance(v, str) else f'{v:.0f} ms'}")


if __name__ == "__main__":
    main()
