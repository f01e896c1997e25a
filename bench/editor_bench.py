"""Editor frame time with a 500-node graph, in headless Chromium (run by hand, never as a test).

    .venv/bin/python bench/editor_bench.py                 # starts `nodegraph serve` on a free port
    .venv/bin/python bench/editor_bench.py --url http://127.0.0.1:8188/   # or use a running server

Loads a graph of N core nodes (chains of Solid Color → Image Blend with Text and Math nodes mixed in,
~400 links, 50 multi-line text widgets) into the editor, then pans the canvas by one pixel per
animation frame so that every frame is a full redraw, and records:

- draw: the main-thread time of litegraph's `LGraphCanvas.draw()` per frame (performance.now()
  around it) — the cost of a frame;
- frame interval: the time between requestAnimationFrame callbacks (bounded below by the display's
  ~16.7 ms; above it, frames were dropped).

Three views: the whole graph fitted in the window (every node drawn, litegraph's low-quality path at
that zoom), 100 % zoom on a region of the graph (~20 nodes drawn in full quality), and 100 % zoom in
a 3840x2160 window (many more nodes drawn in full quality).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]

BUILD_JS = """
({ n }) => {
  const nodes = {};
  const cols = 25;
  const types = (i) => (i % cols === 0 || i % 10 === 0) ? "color" : i % 10 === 5 ? "text" : i % 10 === 7 ? "math" : "blend";
  let lastImage = null;
  for (let i = 0; i < n; i++) {
    const pos = [(i % cols) * 280, Math.floor(i / cols) * 260];
    const kind = types(i);
    let entry;
    if (kind === "color") entry = { type: "core.solid_color", version: 1, inputs: { width: 32, height: 32, color: "#336699" } };
    else if (kind === "text") entry = { type: "core.text", version: 1, inputs: { value: `a prompt for node ${i}` } };
    else if (kind === "math") entry = { type: "core.math", version: 1, inputs: { a: i, b: 2, op: "add" } };
    else entry = { type: "core.image_blend", version: 1,
                   inputs: { a: { from: lastImage, output: "images" }, b: { from: String(i - (i % cols)), output: "images" }, factor: 0.5 } };
    if (kind === "color" || kind === "blend") lastImage = String(i);
    entry.ui = { pos };
    nodes[String(i)] = entry;
  }
  app.loadWorkflow({ format: "nodegraph/1", nodes, ui: {}, meta: {} }, { validate: false });
  return { nodes: app.graph.nodes.length, links: app.graph.links.size };
}
"""

MEASURE_JS = """
async ({ frames, view }) => {
  const c = app.canvas;
  if (view === "fit") app.fitView();
  else { c.ds.scale = 1; c.ds.offset[0] = -2100; c.ds.offset[1] = -1300; }
  const draws = [];
  const visible = [];
  const draw = c.draw;
  c.draw = function (a, b) {
    const t = performance.now();
    draw.call(this, a, b);
    draws.push(performance.now() - t);
    visible.push(this.visible_nodes.length);
  };
  const stamps = [];
  await new Promise((resolve) => {
    let i = 0;
    const step = (t) => {
      stamps.push(t);
      c.ds.offset[0] += (i % 120 < 60 ? 1 : -1) / c.ds.scale;
      c.setDirty(true, true);
      if (++i < frames) requestAnimationFrame(step);
      else resolve();
    };
    requestAnimationFrame(step);
  });
  c.draw = draw;
  const intervals = stamps.slice(1).map((t, i) => t - stamps[i]);
  return { draws: draws.slice(10), intervals: intervals.slice(10), visible: Math.max(...visible), scale: c.ds.scale };
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, NODEGRAPH_OUTPUT_DIR=str(tmp / "output"), NODEGRAPH_INPUT_DIR=str(tmp / "input"))
    (tmp / "input").mkdir(parents=True, exist_ok=True)
    cmd = [str(ROOT / ".venv" / "bin" / "nodegraph"), "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(tmp / "data")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"nodegraph serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "api/nodes", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("nodegraph serve did not answer within 60 s")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running nodegraph server (default: start one)")
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--chromium", default=os.environ.get("NODEGRAPH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmpdir:
        proc = None
        url = args.url
        if not url:
            proc, url = start_server(Path(tmpdir))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                rows = []
                for view, size in (("fit", (1600, 900)), ("100%", (1600, 900)), ("100%, 4K canvas", (3840, 2160))):
                    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
                    page.goto(url)
                    page.wait_for_selector("body[data-ready=true]", timeout=30000)
                    graph = page.evaluate(BUILD_JS, {"n": args.nodes})
                    page.evaluate(MEASURE_JS, {"frames": 30, "view": "fit" if view == "fit" else "100%"})  # warm-up
                    r = page.evaluate(MEASURE_JS, {"frames": args.frames, "view": "fit" if view == "fit" else "100%"})
                    rows.append((view, size, graph, r))
                    page.close()
                browser.close()
        finally:
            if proc:
                proc.terminate()
                proc.wait(timeout=10)

    cpu = os.cpu_count()
    print(f"editor frame time, {args.nodes}-node graph, headless Chromium, {cpu} CPU cores, "
          f"{args.frames} frames per view (first 10 dropped)\n")
    print("| view | window | nodes / links | nodes drawn | zoom | draw median | draw p95 | frame interval median | p95 | fps |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for view, size, graph, r in rows:
        d, iv = r["draws"], r["intervals"]
        med_iv = statistics.median(iv)
        print(f"| {view} | {size[0]}x{size[1]} | {graph['nodes']} / {graph['links']} | {r['visible']} | "
              f"{r['scale']:.2f} | {statistics.median(d):.2f} ms | {pct(d, 0.95):.2f} ms | {med_iv:.1f} ms | "
              f"{pct(iv, 0.95):.1f} ms | {1000 / statistics.mean(iv):.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
