"""Server benchmark (run by hand, never as a test): the real `nodegraph serve` in a subprocess.

Measures, for a trivial workflow (``core.float`` → ``core.show``, a new value each job so both nodes
execute) queued over HTTP and followed over the WebSocket:

- jobs per second, one job at a time (POST, wait for its ``job_finished``, next) and pipelined
  (up to ``--window`` jobs in flight);
- event latency: receive time on the client minus the ``t`` the executor stamped on the event
  (same machine, same clock), over every run message;
- the server's RSS when idle and after ``--jobs`` jobs (1,000 by default).

    .venv/bin/python bench/server_bench.py [--jobs 1000] [--window 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]


def workflow(value: float) -> dict:
    return {"format": "nodegraph/1", "ui": {}, "meta": {},
            "nodes": {"v": {"type": "core.float", "inputs": {"value": value}},
                      "show": {"type": "core.show", "inputs": {"value": {"from": "v", "output": "value"}}}}}


async def start_server(tmp: Path) -> tuple[asyncio.subprocess.Process, str]:
    env = dict(os.environ, NODEGRAPH_OUTPUT_DIR=str(tmp / "out"), NODEGRAPH_INPUT_DIR=str(tmp / "in"))
    env.pop("NODEGRAPH_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodegraph", "serve", "--port", "0", "--data-dir", str(tmp / "data"),
        cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(120):
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise RuntimeError("the server exited before listening")
            m = re.search(r"serving the editor and API on (http://\S+/)", line)
            if m:
                break

    async def drain() -> None:  # keep reading its log so the pipe never fills
        while await proc.stderr.readline():
            pass

    asyncio.get_running_loop().create_task(drain())
    return proc, m.group(1)


class Listener:
    """Reads the WebSocket: records each run message's latency and wakes whoever waits for a job."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.latencies: list[float] = []
        self.done: dict[str, asyncio.Event] = {}
        self.statuses: dict[str, str] = {}
        self.messages = 0

    def event(self, job_id: str) -> asyncio.Event:
        return self.done.setdefault(job_id, asyncio.Event())

    async def run(self) -> None:
        async for msg in self.ws:
            received = time.time()
            data = json.loads(msg.data)
            self.messages += 1
            if data["type"] == "status":
                continue
            if data.get("t") is not None:
                self.latencies.append(received - data["t"])
            if data["type"] == "job_finished":
                self.statuses[data["data"]["job_id"]] = data["data"]["status"]
                self.event(data["data"]["job_id"]).set()


async def one_job(session: aiohttp.ClientSession, url: str, listener: Listener, value: float) -> None:
    async with session.post(url + "api/jobs", json={"workflow": workflow(value)}) as res:
        assert res.status == 201, await res.text()
        job_id = (await res.json())["job_id"]
    await listener.event(job_id).wait()
    assert listener.statuses[job_id] == "success", listener.statuses[job_id]


def summary(samples: list[float]) -> dict:
    s = sorted(samples)
    return {"n": len(s), "median_ms": statistics.median(s) * 1e3, "p95_ms": s[int(0.95 * (len(s) - 1))] * 1e3,
            "p99_ms": s[int(0.99 * (len(s) - 1))] * 1e3, "max_ms": s[-1] * 1e3}


async def bench(jobs: int, window: int) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc, url = await start_server(Path(tmp))
        out["startup_s"] = time.perf_counter() - t0
        server = psutil.Process(proc.pid)
        try:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(url + "ws?client_id=bench")
                listener = Listener(ws)
                reader = asyncio.create_task(listener.run())
                out["rss_idle_mb"] = server.memory_info().rss / 2**20
                value = 0.0
                for _ in range(20):  # warm-up
                    value += 1
                    await one_job(session, url, listener, value)

                n_seq = max(1, jobs // 4)
                listener.latencies.clear()
                t0 = time.perf_counter()
                for _ in range(n_seq):
                    value += 1
                    await one_job(session, url, listener, value)
                dt = time.perf_counter() - t0
                out["sequential"] = {"jobs": n_seq, "jobs_per_s": n_seq / dt, "ms_per_job": dt / n_seq * 1e3}
                out["latency_sequential"] = summary(listener.latencies)

                n_pipe = jobs - n_seq - 20
                listener.latencies.clear()
                gate = asyncio.Semaphore(window)

                async def limited(v: float) -> None:
                    async with gate:
                        await one_job(session, url, listener, v)

                t0 = time.perf_counter()
                await asyncio.gather(*(limited(value + 1 + i) for i in range(n_pipe)))
                dt = time.perf_counter() - t0
                out["pipelined"] = {"jobs": n_pipe, "window": window, "jobs_per_s": n_pipe / dt}
                out["latency_pipelined"] = summary(listener.latencies)
                out["jobs_total"] = 20 + n_seq + n_pipe
                out["rss_after_mb"] = server.memory_info().rss / 2**20
                out["ws_messages"] = listener.messages
                async with session.get(url + "api/history?limit=1") as res:
                    out["history_total"] = (await res.json())["total"]
                async with session.get(url + "api/system") as res:
                    out["cache_entries"] = (await res.json())["cache"]["entries"]
                await ws.close()
                reader.cancel()
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000, help="jobs in all (warm-up 20, a quarter one by one, "
                   "the rest pipelined)")
    p.add_argument("--window", type=int, default=32, help="jobs in flight in the pipelined phase")
    args = p.parse_args()
    r = asyncio.run(bench(args.jobs, args.window))
    print(f"server start-up (spawn → listening): {r['startup_s']:.2f} s")
    s = r["sequential"]
    print(f"one job at a time: {s['jobs']} jobs, {s['jobs_per_s']:.0f} jobs/s ({s['ms_per_job']:.2f} ms per job "
          "POST → job_finished)")
    pl = r["pipelined"]
    print(f"pipelined ({pl['window']} in flight): {pl['jobs']} jobs, {pl['jobs_per_s']:.0f} jobs/s")
    for key, label in (("latency_sequential", "one at a time"), ("latency_pipelined", "pipelined")):
        lat = r[key]
        print(f"event latency, {label}: {lat['n']} messages, median {lat['median_ms']:.2f} ms, p95 "
              f"{lat['p95_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms")
    print(f"server RSS: {r['rss_idle_mb']:.1f} MB idle, {r['rss_after_mb']:.1f} MB after {r['jobs_total']} jobs "
          f"(history holds {r['history_total']}, the output cache {r['cache_entries']} entries; "
          f"{r['ws_messages']} WebSocket messages received)")


if __name__ == "__main__":
    main()
