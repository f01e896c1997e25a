"""Engine overhead on synthetic graphs of trivial core nodes, and `nodegraph validate` start-up.
Run by hand; not a test.

    .venv/bin/python bench/engine_bench.py               # full table, ~5 min on 2 busy cores
    .venv/bin/python bench/engine_bench.py --quick       # 1k and 10k only, fewer repeats
    .venv/bin/python bench/engine_bench.py --clock wall  # wall clock instead of CPU time
    .venv/bin/python bench/engine_bench.py --threads 1   # Settings.threads for the engines (and children)
    .venv/bin/python bench/engine_bench.py --baseline /tmp/ng-main   # + another checkout, before → after
    .venv/bin/python bench/engine_bench.py --comfyui PATH --comfyui-python PY   # + ComfyUI's validate_prompt

Graphs: a *chain* (float → math → math → … → show) and a *fan* (one float fanned out to N/2 math
nodes, reduced pairwise by a binary tree of math nodes into one show). Each size runs in a fresh
process (so peak RSS is per size) and reports the best of several repeats (the machine is shared:
the best is the least disturbed), in CPU time of the process by default:

- validate: `Engine.validate` (every check, no plan), ms and µs per node
- plan: validation + planning, uncached (`make_plan`), µs per node
- first: a first run on a new engine (empty caches, planning included), µs per node
- first+sink: the same with an event sink (a list), as the CLI and the server run, µs per node
- exec: the executor alone on a planned workflow, empty cache, µs per node
- cached: a fully cached re-run (nothing executes; the plan comes from the plan cache), ms
- re-planned: the same re-run with the plan cache emptied first (validation + planning again), ms
- widget: a re-run after changing one widget near the root, ms
- rss: peak resident memory of the process, MB

With ``--baseline DIR`` (a checkout of another version, e.g. ``git worktree add /tmp/ng-main main``)
every size and the start-up also run with that version's ``nodegraph`` and packs (``PYTHONPATH``),
interleaved with this one, and each figure is printed as ``before → after``. With ``--comfyui DIR``
(a ComfyUI checkout, run by ``--comfyui-python``, a Python that can import it) every size also times
ComfyUI's ``execution.validate_prompt`` on the same graph (``bench/comfy_bench.py``), in the same run.

Then start-up (`python -c pass`, `nodegraph --help`, `nodegraph validate` of a 10-node chain of
core nodes): best and median of several runs, in wall and CPU time, and the largest imports of
`nodegraph validate` (`-X importtime`). `nodegraph validate` imports only the packs the workflow
uses once the pack index is in the user cache folder (a first run writes it); the row "without
pack index" is the same command when no index can be kept (every pack imported). These commands run
as installed code does, with bytecode cached (``PYTHONDONTWRITEBYTECODE`` is dropped from their
environment, and a first run writes the bytecode and the index).
Every engine (and `nodegraph` child process) gets ``--threads`` as ``Settings.threads`` /
``NODEGRAPH_THREADS``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (shape, build argument) → sizes: the fan builder's argument n gives n - 2 nodes for odd n.
SIZES = [("chain", 1_000), ("chain", 10_000), ("chain", 100_000), ("fan", 1_003), ("fan", 10_003)]
QUICK = [("chain", 1_000), ("chain", 10_000), ("fan", 10_003)]


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


def measure(shape: str, n: int, repeats: int, clock_name: str, threads: int | None) -> dict:
    """Runs in a child process: one shape and size."""
    from nodegraph import Engine, Settings, make_plan

    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    build = chain if shape == "chain" else fan
    wf = build(n)
    changed = build(n, root_value=2.0)
    settings = Settings(builtin_packs=True, entry_point_packs=False, output_dir=Path("/tmp/ng-bench"),
                        threads=threads)
    out_dir = str(settings.output_dir.resolve())
    times: dict[str, list[float]] = {k: [] for k in ("validate", "plan", "first", "first_sink", "exec", "cached",
                                                      "replanned", "widget")}

    def timed(name: str, fn, *args, **kwargs):
        t0 = clock()
        value = fn(*args, **kwargs)
        times[name].append(clock() - t0)
        return value

    base = Engine.from_settings(settings)
    for _ in range(repeats):
        result = timed("validate", base.validate, wf)
        assert result.valid, result.issues
        plan = timed("plan", make_plan, wf, base.registry, output_dir=out_dir, settings=settings,
                     folders=settings.folders())
        timed("exec", Engine.from_settings(settings).executor.execute, plan)
        engine = Engine.from_settings(settings)
        result = timed("first", engine.run, wf)
        assert result.ok and len(result.executed) == len(plan.order), result.error
        events: list = []
        result = timed("first_sink", Engine.from_settings(settings).run, wf, sink=events.append)
        assert result.ok and len(events) >= 2 * len(plan.order), len(events)
        del events
        for _ in range(3):  # more samples of the cheap ones
            result = timed("cached", engine.run, wf)
            assert not result.executed
        plans = getattr(engine, "plans", None)  # absent before the plan cache existed
        if plans is not None:
            plans.clear()
            result = timed("replanned", engine.run, wf)
            assert not result.executed
        assert timed("widget", engine.run, changed).ok
        engine.run(wf)  # back to the original for the next repeat's cached re-run
        gc.collect()
    nodes = len(wf["nodes"])
    best = {k: min(v) if v else float("nan") for k, v in times.items()}
    return {
        "shape": shape, "n": nodes,
        "validate_ms": best["validate"] * 1e3, "validate_us": best["validate"] / nodes * 1e6,
        "plan_us": best["plan"] / nodes * 1e6, "first_us": best["first"] / nodes * 1e6,
        "first_sink_us": best["first_sink"] / nodes * 1e6,
        "exec_us": best["exec"] / nodes * 1e6, "cached_ms": best["cached"] * 1e3,
        "replanned_ms": best["replanned"] * 1e3, "widget_ms": best["widget"] * 1e3,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def startup(repeats: int, env: dict[str, str],
            cwd: Path = ROOT) -> tuple[dict[str, tuple[float, float, float, float]], list[str]]:
    """Best/median wall and CPU time of short commands, and the largest imports of `validate`
    (``cwd``: the checkout whose ``nodegraph`` `python -m` imports)."""
    wf = Path("/tmp") / f"ng-startup-{os.getpid()}.json"
    wf.write_text(json.dumps(chain(10)))
    no_cache = Path("/tmp") / f"ng-startup-{os.getpid()}.nocache"
    no_cache.write_text("")  # a file as XDG_CACHE_HOME: no pack index can be written or read
    exe = sys.executable
    # As installed code runs: with its bytecode cached (pip compiles it; Python writes it on first
    # import unless told not to), so no run pays for compiling the sources.
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    validate = [exe, "-m", "nodegraph", "validate", str(wf)]
    cmds = {
        "python -c pass": ([exe, "-c", "pass"], env),
        "nodegraph --help": ([exe, "-m", "nodegraph", "--help"], env),
        "nodegraph validate": (validate, env),
        "  without pack index": (validate, {**env, "XDG_CACHE_HOME": str(no_cache)}),
    }
    for cmd, cmd_env in cmds.values():  # writes the bytecode and the pack index
        subprocess.run(cmd, check=True, capture_output=True, cwd=cwd, env=cmd_env)
    samples: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in cmds}
    for _ in range(repeats):  # interleaved, so a burst of load hits every command alike
        for name, (cmd, cmd_env) in cmds.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=cwd, env=cmd_env)
            samples[name][0].append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            samples[name][1].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    out = {name: (min(w) * 1e3, statistics.median(w) * 1e3, min(c) * 1e3, statistics.median(c) * 1e3)
           for name, (w, c) in samples.items()}
    probe = subprocess.run([exe, "-X", "importtime", "-c",
                            f"import sys, nodegraph.cli as c; c.main(['validate', {str(wf)!r}]); "
                            "print(sorted(m for m in ('torch', 'numpy', 'networkx', 'aiohttp', 'PIL') "
                            "if m in sys.modules))"], capture_output=True, text=True, cwd=cwd, env=env)
    wf.unlink()
    no_cache.unlink()
    imported = probe.stdout.strip().splitlines()[-1]
    tops = []
    for line in probe.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            tops.append((int(parts[1]), parts[2].strip()))
    lines = [f"heavy modules `validate` imports: {imported}",
             "largest top-level imports of `validate` (cumulative, one run): "
             + ", ".join(f"{name} {us / 1e3:.0f} ms" for us, name in sorted(tops, reverse=True)[:8])]
    return out, lines


def child(shape: str, n: int, repeats: int, clock: str, threads: int, env: dict[str, str],
          cwd: Path = ROOT) -> dict:
    """:func:`measure` in a fresh process, with the ``nodegraph`` that ``env`` / ``cwd`` give it."""
    proc = subprocess.run([sys.executable, __file__, "--clock", clock, "--threads", str(threads),
                           "--child", shape, str(n), str(repeats)],
                          capture_output=True, text=True, check=True, cwd=cwd, env=env)
    return json.loads(proc.stdout)


def comfyui_child(python: str, root: Path, shape: str, n: int, repeats: int) -> dict:
    """ComfyUI's validate_prompt on the same graph (bench/comfy_bench.py), in a fresh process."""
    proc = subprocess.run([os.path.abspath(python), str(ROOT / "bench" / "comfy_bench.py"), "--comfyui", str(root), shape, str(n),
                           str(repeats)], capture_output=True, text=True, cwd=root)
    if proc.returncode:
        raise SystemExit(f"ComfyUI bench failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def versioned_env(env: dict[str, str], checkout: Path) -> dict[str, str]:
    """``env`` with ``checkout``'s nodegraph and packs first on the path."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH", "")]))}


def _pair(before: float | None, after: float, fmt: str) -> str:
    return f"{before:{fmt}} → {after:{fmt}}" if before is not None else f"{after:{fmt}}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="Settings.threads / NODEGRAPH_THREADS (default 1)")
    ap.add_argument("--baseline", type=Path, help="a checkout of another version, measured alongside (before)")
    ap.add_argument("--comfyui", type=Path, help="a ComfyUI checkout: time its validate_prompt on the same graphs")
    ap.add_argument("--comfyui-python", default=sys.executable, help="the Python that imports that ComfyUI")
    ap.add_argument("--child", nargs=3, metavar=("SHAPE", "N", "REPEATS"))
    args = ap.parse_args()
    if args.child:
        shape, n, repeats = args.child
        print(json.dumps(measure(shape, int(n), int(repeats), args.clock, args.threads)))
        return
    env = {**os.environ, "NODEGRAPH_THREADS": str(args.threads)}
    base = args.baseline.resolve() if args.baseline else None
    base_env = versioned_env(env, base) if base else env
    rows = []
    # ComfyUI validates links recursively and refuses chains deeper than about 980 nodes: a 500-chain too
    for shape, n in ([("chain", 500)] if args.comfyui else []) + (QUICK if args.quick else SIZES):
        repeats = 2 if n >= 100_000 else (3 if args.quick or n >= 10_000 else 5)
        row = {"after": child(shape, n, repeats, args.clock, args.threads, env)}
        if base:
            row["before"] = child(shape, n, repeats, args.clock, args.threads, base_env, cwd=base)
        if args.comfyui:
            row["comfyui"] = comfyui_child(args.comfyui_python, args.comfyui.resolve(), shape, n, repeats)
        rows.append(row)
    print(f"engine overhead, best of 2-5 repeats, {'process CPU' if args.clock == 'cpu' else 'wall'} time, "
          f"threads {args.threads}" + (f"; before = {base}" if base else ""))
    cols = [("validate ms", "validate_ms", ".1f"), ("µs/node", "validate_us", ".1f"),
            ("plan µs/node", "plan_us", ".1f"), ("first µs/node", "first_us", ".1f"),
            ("first+sink µs/node", "first_sink_us", ".1f"),
            ("exec µs/node", "exec_us", ".1f"), ("cached ms", "cached_ms", ".2f"),
            ("re-planned ms", "replanned_ms", ".1f"), ("widget ms", "widget_ms", ".1f"), ("RSS MB", "rss_mb", ".0f")]
    width = 17 if base else 10
    print(f"{'graph':<6}{'nodes':>8}" + "".join(f"{name:>{max(width, len(name) + 1)}}" for name, _, _ in cols))
    for row in rows:
        r, b = row["after"], row.get("before")
        print(f"{r['shape']:<6}{r['n']:>8,}" + "".join(
            f"{_pair(b[key] if b else None, r[key], fmt):>{max(width, len(name) + 1)}}" for name, key, fmt in cols))
    if args.comfyui:
        c = rows[0]["comfyui"]["comfyui"]
        print(f"\nvalidation side by side with ComfyUI {c} (`execution.validate_prompt`, same graphs, same run):")
        print(f"{'graph':<6}{'nodes':>8}{'ComfyUI ms':>12}{'nodegraph ms':>20}{'ComfyUI / nodegraph':>24}")
        for row in rows:
            c, r, b = row["comfyui"], row["after"], row.get("before")
            if not c["valid"]:
                print(f"{r['shape']:<6}{r['n']:>8,}{'refused':>12}{_pair(b and b['validate_ms'], r['validate_ms'], '.1f'):>20}"
                      f"   ComfyUI: {c['error'][:60]}")
                continue
            ratio = _pair(b and c["validate_ms"] / b["validate_ms"], c["validate_ms"] / r["validate_ms"], ".2f")
            print(f"{r['shape']:<6}{r['n']:>8,}{c['validate_ms']:>12.1f}"
                  f"{_pair(b and b['validate_ms'], r['validate_ms'], '.1f'):>20}{ratio:>24}")
    print()
    runs = [("", env, ROOT)] + ([("before: ", base_env, base)] if base else [])
    for label, run_env, cwd in runs:
        times, lines = startup(3 if args.quick else 10, run_env, cwd)
        print(f"{label}start-up: wall best / median, CPU best / median")
        for name, (wb, wm, cb, cm) in times.items():
            print(f"  {name:<22} {wb:6.0f} / {wm:6.0f} ms   {cb:6.0f} / {cm:6.0f} ms")
        for line in lines:
            print(line)
    print(f"load average during the run: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
