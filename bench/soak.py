"""Soak (run by hand, never as a test): fuzz rounds against the real server, kill -9 and full-disk rounds.

- **fuzz**: ``nodegraph serve`` in a subprocess gets ``--requests`` hostile requests from
  :class:`fuzz.Fuzzer` (seeded) plus ``--raw`` requests that break HTTP framing over a plain socket.
  Counted: answers by status class (any 5xx is a failure), the slowest answer to a ``GET /api/system``
  probe sent beside each request (does a huge graph stall the event loop?), the server's RSS before
  and after.
- **kill**: ``nodegraph run`` saving eight 1024² noise images is killed with SIGKILL at a random
  moment, ``--kills`` times; counted: files under a real ``.png`` name that do not decode (must be 0),
  temporary leftovers, and whether the next run removed them.
- **full disk**: the same run with ``RLIMIT_FSIZE`` below one PNG (the kernel then refuses the write
  with EFBIG, the nearest a process without root gets to a full disk), ``--full`` times; counted:
  exit codes, truncated PNGs (must be 0), leftovers.

    .venv/bin/python bench/soak.py [--requests 2000] [--raw 200] [--kills 10] [--full 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
from fuzz import Fuzzer
from server_bench import start_server

ROOT = Path(__file__).resolve().parents[1]
PACKS = ROOT / "tests" / "packs"
SAVE = {"format": "nodegraph/1", "ui": {}, "meta": {}, "nodes": {
    "n": {"type": "toy.noise", "inputs": {"size": 1024, "batch": 8}},
    "s": {"type": "core.save_image", "inputs": {"images": {"from": "n", "output": "images"},
                                                 "filename_prefix": "soak"}}}}


async def fuzz_round(requests: int, raw: int, seed: int) -> dict:
    fuzzer = Fuzzer(seed)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = await start_server(Path(tmp))
        server = psutil.Process(proc.pid)
        statuses: collections.Counter[str] = collections.Counter()
        fives: list[str] = []
        probe_worst = 0.0
        try:
            async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=300)) as http:
                await http.get("/api/system")
                rss_start = server.memory_info().rss
                started = time.perf_counter()
                for i in range(requests):
                    req = fuzzer.next()

                    async def probe() -> float:
                        t0 = time.perf_counter()
                        async with http.get("/api/system") as res:
                            await res.read()
                        return time.perf_counter() - t0

                    async def send(req=req) -> int:
                        async with http.request(req.method, req.path, data=req.body, headers=req.headers) as res:
                            await res.read()
                            return res.status

                    status, probe_time = await asyncio.gather(send(), probe())
                    probe_worst = max(probe_worst, probe_time)
                    statuses[f"{status // 100}xx"] += 1
                    if status >= 500:
                        fives.append(f"{req.kind} {req.method} {req.path} -> {status}")
                    if (i + 1) % 500 == 0:
                        print(f"  {i + 1} requests, RSS {server.memory_info().rss / 2**20:.0f} MB", file=sys.stderr)
                elapsed = time.perf_counter() - started
                host, port = base.split("//")[1].rstrip("/").split(":")
                raw_answers: collections.Counter[str] = collections.Counter()
                for _ in range(raw):
                    reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(fuzzer.raw())
                    await writer.drain()
                    writer.write_eof()  # a body shorter than its Content-Length ends here, not in a time-out
                    try:
                        line = await asyncio.wait_for(reader.readline(), 30)
                    except TimeoutError:
                        line = b""
                    writer.close()
                    parts = line.split(b" ")
                    raw_answers[parts[1].decode()[:1] + "xx" if len(parts) > 1 else "hung up"] += 1
                rss_end = server.memory_info().rss
                jobs = await (await http.get("/api/system")).json()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return {"requests": requests, "statuses": dict(statuses), "5xx": fives[:20], "seconds": round(elapsed, 1),
            "probe_worst_s": round(probe_worst, 3), "raw": dict(raw_answers),
            "rss_start_mb": round(rss_start / 2**20), "rss_end_mb": round(rss_end / 2**20),
            "queue": jobs["queue"]}


def _check_pngs(out: Path) -> tuple[int, int, int]:
    """(complete PNGs, broken files under a .png name, temporary leftovers) under ``out``."""
    from PIL import Image

    good = bad = partial = 0
    for path in out.rglob("*"):
        if path.name.endswith(".ngpart"):
            partial += 1
        elif path.suffix == ".png":
            try:
                with Image.open(path) as img:
                    img.load()
                good += 1
            except Exception:  # noqa: BLE001 - any decoding failure is a broken file
                bad += 1
    return good, bad, partial


def _run(out: Path, wf: Path, preexec=None) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "nodegraph", "run", str(wf), "--nodes-dir", str(PACKS),
                             "--output-dir", str(out)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=preexec)


def kill_rounds(kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    totals = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        out, wf = Path(tmp) / "out", Path(tmp) / "wf.json"
        wf.write_text(json.dumps(SAVE))
        for _ in range(kills):
            proc = _run(out, wf)
            while proc.poll() is None and not any(p.name.endswith(".ngpart") for p in out.rglob("*")):
                time.sleep(0.005)  # until the first save has begun
            time.sleep(rng.uniform(0.0, 2.0))  # then at a random moment of the eight saves
            proc.kill()
            proc.wait()
            good, bad, partial = _check_pngs(out)
            totals["broken_pngs"] += bad
            totals["rounds_with_leftover"] += partial > 0
            totals["complete_pngs_after_kills"] = good  # cumulative: the folder is shared by the rounds
        _run(out, wf).wait()  # a run that completes: it removes what the killed ones left
        totals["complete_pngs_at_end"], bad_after, totals["leftovers_after_next_run"] = _check_pngs(out)
        totals["broken_pngs"] += bad_after
    return {"kills": kills, **totals}


def full_rounds(full: int, seed: int) -> dict:
    rng = random.Random(seed)
    totals: collections.Counter[str] = collections.Counter()

    def small_files(limit: int):
        def apply() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG, as ENOSPC would
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        return apply

    with tempfile.TemporaryDirectory() as tmp:
        out, wf = Path(tmp) / "out", Path(tmp) / "wf.json"
        wf.write_text(json.dumps(SAVE))
        for _ in range(full):
            proc = _run(out, wf, small_files(rng.randrange(100_000, 2_000_000)))
            err = proc.communicate()[1].decode(errors="replace")
            totals[f"exit_{proc.returncode}"] += 1
            totals["message_names_folder"] += str(out) in err
        good, bad, partial = _check_pngs(out)
    return {"rounds": full, **totals, "complete_pngs": good, "broken_pngs": bad, "leftovers": partial}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--raw", type=int, default=200)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--full", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    report = {}
    if args.requests or args.raw:
        report["fuzz"] = asyncio.run(fuzz_round(args.requests, args.raw, args.seed))
        print(json.dumps(report["fuzz"]), file=sys.stderr)
    if args.kills:
        report["kill"] = kill_rounds(args.kills, args.seed)
        print(json.dumps(report["kill"]), file=sys.stderr)
    if args.full:
        report["full_disk"] = full_rounds(args.full, args.seed)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
