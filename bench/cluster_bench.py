"""Cluster benchmark (run by hand, never as a test): the Ray executor on a local instance.

Measures, on this machine:

- throughput of the shipped text→image workflow at batch 1 (``prior.count`` 1, ``--steps`` sampler
  steps, a new seed per job), one torch thread per worker, with 1 and with 2 workers (each worker
  warmed up first: its models loaded);
- per-job overhead of the Ray path over the local executor: a trivial workflow (``core.float`` →
  ``core.show``, a new value each job) run one job at a time, median latency of each;
- dispatch rate: the same trivial jobs submitted from as many threads as there are workers, jobs/s,
  and the head's own CPU time per job (its ceiling: 1 / that);
- memory (RSS) of one worker idle and after text→image (models loaded);
- one workflow of ``--branches`` independent text→image variations (shared loaders and prompt,
  one seed each) on the local executor vs. spread over 2 workers;
- the machine itself: text→image on the local executor in one process vs. two processes side by
  side (what a second worker can gain here at all);
- model affinity on a mixed queue: ``--mixed`` jobs, each loading one of the four shipped unCLIP
  models (random order, fixed seed), on 2 workers that keep 2 models each: the share of jobs that
  loaded no model, with the pool's choice vs. the longest-idle worker regardless of models.

Each figure is printed to stderr as it is measured, all of them as JSON on stdout at the end, with
the machine's 1-minute load average after each section (on a shared machine, others' work shows).

    .venv/bin/python bench/cluster_bench.py [--jobs 6] [--steps 10] [--trivial 300] [--branches 8] [--mixed 32]
        [--only machine,overhead,throughput,spread,dispatch,mixed]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def trivial(value: float) -> dict:
    return {"format": "nodegraph/1", "ui": {}, "meta": {},
            "nodes": {"v": {"type": "core.float", "inputs": {"value": value}},
                      "show": {"type": "core.show", "inputs": {"value": {"from": "v", "output": "value"}}}}}


def text2image(seed: int, steps: int) -> dict:
    from nodegraph import apply_overrides

    source = json.loads((ROOT / "workflows" / "text2image.json").read_text())
    wf, issues = apply_overrides(source, {"prior.count": 1, "prior.seed": seed, "decoder.seed": seed,
                                          "upsample.seed": seed, "prior.steps": steps, "decoder.steps": steps,
                                          "upsample.steps": max(1, steps // 2)})
    assert not issues, issues
    return wf


def branches(n: int, steps: int) -> dict:
    """One workflow: the loaders and the prompt once, then ``n`` independent prior→decoder→save branches."""
    wf = text2image(0, steps)
    nodes = wf["nodes"]
    proto = {k: nodes.pop(k) for k in ("prior", "decoder", "upsample", "save", "grid", "save_grid")}
    for i in range(n):
        ref = {"prior": f"prior{i}", "decoder": f"decoder{i}"}
        for name in ("prior", "decoder", "save"):
            node = json.loads(json.dumps(proto[name]))
            for port, value in node["inputs"].items():
                if isinstance(value, dict) and value.get("from") in ref:
                    node["inputs"][port] = {**value, "from": ref[value["from"]]}
                elif port == "seed":
                    node["inputs"][port] = i
            if name == "save":
                node["inputs"]["images"] = {"from": f"decoder{i}", "output": "images"}
                node["inputs"]["filename_prefix"] = f"branch{i}"
            nodes[f"{name}{i}"] = node
    return wf


def model_job(loader: str, value: float) -> dict:
    """A job that needs one model (and a new value, so that it is never entirely cached)."""
    port = loader.removeprefix("load_")
    return {"format": "nodegraph/1", "ui": {}, "meta": {},
            "nodes": {"m": {"type": f"unclip.{loader}", "inputs": {"model": "shapes-unclip"}},
                      "sm": {"type": "core.show", "inputs": {"value": {"from": "m", "output": port}}},
                      "v": {"type": "core.float", "inputs": {"value": value}},
                      "sv": {"type": "core.show", "inputs": {"value": {"from": "v", "output": "value"}}}}}


def head_engine(out: Path):
    from nodegraph import Engine, Settings

    return Engine.from_settings(Settings(model_dirs=[ROOT / "models"], output_dir=out / "output",
                                         input_dir=out / "input", temp_dir=out / "temp", threads=1))


def connect(engine, workers: int, cpus: float, **settings: Any):
    from nodegraph.cluster import ClusterOptions
    from nodegraph.cluster import connect as cluster_connect

    options = ClusterOptions(num_cpus=2, workers=workers, worker_cpus=cpus,
                             worker_settings={"model_dirs": [str(ROOT / "models")], "threads": 1, **settings})
    engine.executor = cluster_connect(options, engine)
    return engine.executor


def run_all(engine, wfs: list[dict], parallel: int) -> float:
    """Seconds to run every workflow, ``parallel`` at a time."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(lambda wf: engine.run(wf), wfs))
    elapsed = time.perf_counter() - t0
    bad = [r.error for r in results if not r.ok]
    assert not bad, bad[0]
    return elapsed


def latencies(engine, n: int, start: float) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        assert engine.run(trivial(start + i)).ok
        out.append(time.perf_counter() - t0)
    return out


def worker_rss(executor) -> list[float]:
    return [psutil.Process(w.hello.pid).memory_info().rss / MIB for w in executor.pool.workers if w.hello]


class Report(dict):
    """The figures; each one is printed to stderr when it is set."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}", file=sys.stderr, flush=True)


def mixed_queue(tmp: Path, n: int, affinity: bool) -> float:
    """Share of the mixed queue's jobs that loaded no model (see the module docstring)."""
    import random

    from nodegraph.cluster.pool import WorkerPool

    loaders = ["load_clip", "load_prior", "load_decoder", "load_upsampler"]
    rng = random.Random(7)
    queue = [model_job(rng.choice(loaders), 3e6 + i) for i in range(n)]
    engine = head_engine(tmp / f"mixed{int(affinity)}")
    ex = connect(engine, 2, 1.0, model_cache_items=2)
    take = WorkerPool._take
    if not affinity:  # the longest-idle worker, whatever it holds
        def plain(self, wanted):
            return take(self, set())

        ex.pool._take = plain.__get__(ex.pool)
    try:
        run_all(engine, queue, 2)
        stats = ex.pool.stats
        return 1 - stats["jobs_loading_models"] / stats["jobs"]
    finally:
        ex.close()


def overhead(tmp: Path, report: Report, args: argparse.Namespace) -> None:
    """Trivial jobs one at a time: local executor vs. one Ray worker; the worker's RSS."""
    local = head_engine(tmp / "local")
    latencies(local, 20, 0.0)
    report["local_trivial_ms"] = statistics.median(latencies(local, args.trivial, 1e6)) * 1e3
    engine = head_engine(tmp / "ray1")
    ex = connect(engine, 1, 1.0)
    try:
        report["worker_rss_idle_mib"] = worker_rss(ex)[0]
        latencies(engine, 20, 0.0)
        ray1 = latencies(engine, args.trivial, 1e6)
        report["ray_trivial_ms"] = statistics.median(ray1) * 1e3
        report["ray_trivial_p90_ms"] = statistics.quantiles(ray1, n=10)[-1] * 1e3
        report["overhead_ms"] = report["ray_trivial_ms"] - report["local_trivial_ms"]
    finally:
        ex.close()


def throughput(tmp: Path, report: Report, args: argparse.Namespace) -> None:
    """text→image jobs/s with 1 and 2 workers (each warmed up first); a worker's RSS with models loaded."""
    seconds = {}
    for workers in (1, 2):
        engine = head_engine(tmp / f"t2i{workers}")
        ex = connect(engine, workers, 1.0)
        try:
            run_all(engine, [text2image(1000 + i, args.steps) for i in range(workers)], workers)  # models loaded
            if workers == 1:
                report["worker_rss_loaded_mib"] = worker_rss(ex)[0]
            seconds[workers] = run_all(engine, [text2image(s, args.steps) for s in range(args.jobs)], workers)
            report[f"t2i_{workers}_worker_jobs_per_s"] = args.jobs / seconds[workers]
        finally:
            ex.close()
    report["t2i_speedup"] = seconds[1] / seconds[2]


def spread(tmp: Path, report: Report, args: argparse.Namespace) -> None:
    """One workflow of independent branches: the local executor vs. spread over 2 workers."""
    local = head_engine(tmp / "branches-local")
    engine = head_engine(tmp / "branches-ray")
    ex = connect(engine, 2, 1.0)
    try:
        ex.spread = True
        wf = branches(args.branches, args.steps)
        run_all(local, [wf], 1)  # warm-up: models loaded, here and on both workers
        run_all(engine, [wf], 1)
        wf["nodes"]["prompt"]["inputs"]["value"] += " "  # new keys: nothing comes from the caches
        report["branches"] = args.branches
        report["branches_local_s"] = t_local = run_all(local, [wf], 1)
        report["branches_spread_s"] = t_spread = run_all(engine, [wf], 1)
        report["branches_speedup"] = t_local / t_spread
    finally:
        ex.close()


def dispatch(tmp: Path, report: Report, args: argparse.Namespace) -> None:
    """Trivial jobs from as many threads as workers: jobs/s, and the head's CPU time per job."""
    for workers, cpus in ((2, 1.0), (4, 0.5)):
        engine = head_engine(tmp / f"d{workers}")
        ex = connect(engine, workers, cpus)
        try:
            latencies(engine, 20, 0.0)
            me = psutil.Process()
            cpu0 = sum(me.cpu_times()[:2])
            elapsed = run_all(engine, [trivial(2e6 + i) for i in range(args.trivial * workers)], workers)
            cpu = sum(me.cpu_times()[:2]) - cpu0
            report[f"dispatch_{workers}_workers_jobs_per_s"] = args.trivial * workers / elapsed
            report[f"head_cpu_ms_per_job_{workers}_workers"] = cpu / (args.trivial * workers) * 1e3
        finally:
            ex.close()


def local_jobs(first_seed: int, jobs: int, steps: int) -> None:
    """(In a child process) text→image jobs on the local executor, one thread; prints seconds per job."""
    engine = head_engine(Path(tempfile.mkdtemp(prefix="cluster-bench-local-")))
    engine.run(text2image(999, steps))  # warm-up: models loaded
    t0 = time.perf_counter()
    for seed in range(first_seed, first_seed + jobs):
        assert engine.run(text2image(seed, steps)).ok
    print((time.perf_counter() - t0) / jobs)


def machine(tmp: Path, report: Report, args: argparse.Namespace) -> None:
    """Without Ray: one local process vs. two side by side (what the machine gives a second process)."""
    import subprocess

    def launch(seed: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, __file__, "--local-jobs", str(seed), "--jobs", str(args.jobs // 2),
                                 "--steps", str(args.steps)], stdout=subprocess.PIPE, text=True)

    alone = float(launch(0).communicate()[0])
    pair = [launch(100), launch(200)]
    side = statistics.mean(float(p.communicate()[0]) for p in pair)
    report["local_process_s_per_job_alone"] = alone
    report["local_processes_s_per_job_two_at_once"] = side
    report["two_processes_speedup"] = 2 * alone / side


def mixed(tmp: Path, report: Report, args: argparse.Namespace) -> None:
    report["mixed_hit_rate_affinity"] = mixed_queue(tmp, args.mixed, True)
    report["mixed_hit_rate_longest_idle"] = mixed_queue(tmp, args.mixed, False)


SECTIONS = {"machine": machine, "overhead": overhead, "throughput": throughput, "spread": spread, "dispatch": dispatch, "mixed": mixed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=6, help="text→image jobs per throughput measurement")
    p.add_argument("--steps", type=int, default=10, help="prior and decoder steps (upsampler: half)")
    p.add_argument("--trivial", type=int, default=300, help="trivial jobs per latency / dispatch measurement")
    p.add_argument("--branches", type=int, default=8, help="independent branches of the spread workflow")
    p.add_argument("--mixed", type=int, default=32, help="jobs of the mixed queue (model affinity)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    p.add_argument("--local-jobs", type=int, default=None, metavar="SEED", help=argparse.SUPPRESS)  # a child
    args = p.parse_args()
    if args.local_jobs is not None:
        import torch

        torch.set_num_threads(1)
        local_jobs(args.local_jobs, args.jobs, args.steps)
        return
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))  # token auth on, nothing written to ~/.ray
    # Ray runs its workers at nice 15; on a machine shared with other work that measures the neighbours,
    # so the workers here run at the head's priority (RAY_worker_niceness=15 measures Ray's default).
    os.environ.setdefault("RAY_worker_niceness", "0")
    import torch

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    report = Report(steps=args.steps, jobs=args.jobs)
    for name in args.only.split(","):
        SECTIONS[name](tmp, report, args)
        # the machine's load while measuring (others' work on a shared box shows in every figure)
        report[f"{name}_loadavg_1min"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
