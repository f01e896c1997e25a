"""Helpers of the browser tests: start `nodegraph serve` on a free port, and drive one editor page."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKS = Path(__file__).parent / "packs"
ARTIFACTS = Path(__file__).parent / "artifacts"
# Longest wait for any one state (ms). Waits end as soon as the state is there, so a generous bound
# costs nothing when all is well; it only keeps a machine busy with other work (training on the same
# cores) from failing the tests. NODEGRAPH_TEST_TIMEOUT (seconds) changes it.
TIMEOUT_MS = float(os.environ.get("NODEGRAPH_TEST_TIMEOUT", "60")) * 1000
SCREENSHOTS: list[Path] = []  # written by this run, listed in the terminal summary (conftest.py)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
# How to start the server; NODEGRAPH_TEST_SERVE_CMD replaces it (to test another build of the server).
SERVE = shlex.split(os.environ.get("NODEGRAPH_TEST_SERVE_CMD", "")) or [sys.executable, "-m", "nodegraph", "serve"]


def chromium_path() -> str:
    path = os.environ.get("NODEGRAPH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("the browser tests need Debian's Chromium: `apt-get install chromium` (make test installs it), "
                    "or NODEGRAPH_CHROMIUM=/path/to/chromium", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    root: Path
    token: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def gate_dir(self) -> Path:
        return self.root / "gates"

    def open_gate(self, name: str) -> None:
        (self.gate_dir / name).write_text("open")

    def get(self, path: str):
        req = urllib.request.Request(self.url.rstrip("/") + path)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.loads(res.read())


def start_server(root: Path, token: str | None = None, models_dir: Path | None = None) -> Server:
    """`nodegraph serve` on a free port with its folders under `root` (and `models_dir` searched first)."""
    for sub in ("input", "output", "gates", "data"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if not (ROOT / "web" / "node_modules" / "@comfyorg" / "litegraph").is_dir():
        pytest.fail("web/node_modules is missing: run `make web` (npm ci in web/; make test does it)", pytrace=False)
    port = free_port()
    env = dict(os.environ,
               NODEGRAPH_OUTPUT_DIR=str(root / "output"), NODEGRAPH_INPUT_DIR=str(root / "input"),
               NODEGRAPH_NODES_DIRS=str(PACKS), NODEGRAPH_TEST_GATE_DIR=str(root / "gates"))
    if models_dir is not None:
        env["NODEGRAPH_MODELS_DIR"] = str(models_dir)
    cmd = [*SERVE, "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(root / "data")]
    if token:
        cmd += ["--token", token]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}/", root, token, proc)
    deadline = time.monotonic() + 60
    while True:  # wait until it answers (bounded); nothing else polls
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{(root / 'server.log').read_text()[-3000:]}",
                        pytrace=False)
        try:
            server.get("/api/nodes")
            return server
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the server did not answer within 60 s", pytrace=False)
            time.sleep(0.05)


def stop_server(server: Server) -> None:
    if server.proc and server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()


class Editor:
    """One editor page, with helpers that act as a user would (palette, mouse, keyboard)."""

    def __init__(self, page, server: Server):
        self.page = page
        self.server = server

    # --- state ---------------------------------------------------------------------------------
    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def workflow(self) -> dict:
        return self.js("app.exportWorkflow()")

    def node_ids(self) -> list[str]:
        return self.js("app.graph.nodes.map(n => String(n.id))")

    def links(self) -> int:
        return self.js("app.graph.links.size")

    def wait(self, expression: str, arg=None, timeout: float = TIMEOUT_MS):
        """Wait until a JS expression (over window.app, the DOM; `arg` is `arg`) is truthy.

        Passed to Playwright as a function, which it compiles through the DevTools protocol: a bare
        expression string would be `eval`-ed inside the page, which the editor's CSP forbids.
        """
        self.page.wait_for_function(f"(arg) => ({expression})", arg=arg, timeout=timeout)

    # --- actions --------------------------------------------------------------------------------
    def new_workflow(self) -> None:
        self.page.click("#new-button")
        self.wait("app.graph.nodes.length === 0")

    def add_node(self, query: str, type_id: str) -> str:
        """Add a node from the palette: search it, click it. Returns its id."""
        before = set(self.node_ids())
        self.page.fill(".ng-palette-search", query)
        self.page.click(f'.ng-palette-item[data-type="{type_id}"]')
        self.page.fill(".ng-palette-search", "")
        (new,) = set(self.node_ids()) - before
        return new

    def search_node(self, client_xy, query: str, type_id: str) -> str:
        """Add a node with the search box: double-click empty canvas, type, Enter. Returns its id."""
        before = set(self.node_ids())
        self.page.mouse.dblclick(*client_xy)
        self.page.fill(".ng-search-input", query)
        self.page.wait_for_selector(f'.ng-search-results li.selected[data-type="{type_id}"]')
        self.page.keyboard.press("Enter")
        (new,) = set(self.node_ids()) - before
        return new

    def widget_pos(self, node_id: str, name: str, where: str = "middle") -> list[float]:
        """Client position on a widget row: its `middle`, or its `left`/`right` arrow (numbers, choices).

        `name` is the port name; `name mode` is a seed port's randomize/fixed control.
        """
        return self.js(
            """([id, name, where]) => {
                const n = app.nodeById(id);
                const w = name.endsWith(" mode") ? n.widgets.find((w) => w.name === name) : n.ngWidgets.get(name);
                if (!w) throw new Error(`no widget ${name} on ${id}`);
                const x = where === "left" ? 20 : where === "right" ? n.size[0] - 20 : n.size[0] / 2;
                return app.graphToClient([n.pos[0] + x, n.pos[1] + w.y + app.LiteGraph.NODE_WIDGET_HEIGHT / 2]);
            }""",
            [node_id, name, where],
        )

    def type_in_widget(self, node_id: str, name: str, text: str) -> None:
        """Click a text or number widget and type `text` into its Value prompt, then Enter."""
        self.page.mouse.click(*self.widget_pos(node_id, name))
        self.page.fill(".graphdialog input", text)
        self.page.keyboard.press("Enter")
        self.page.wait_for_selector(".graphdialog", state="detached")

    def choose_in_widget(self, node_id: str, name: str, choice: str) -> None:
        """Click a choice widget and pick `choice` from its menu."""
        self.page.mouse.click(*self.widget_pos(node_id, name))
        self.page.locator(".litecontextmenu .litemenu-entry", has_text=choice).first.click()

    def move_node(self, node_id: str, graph_pos: tuple[float, float]) -> None:
        """Drag a node by its title bar to a graph position."""
        start = self.js(f"app.graphToClient([app.nodeById({json.dumps(node_id)}).pos[0] + 40, "
                        f"app.nodeById({json.dumps(node_id)}).pos[1] - 15])")
        end = self.js(f"app.graphToClient([{graph_pos[0] + 40}, {graph_pos[1] - 15}])")
        self.drag(start, end)

    def slot(self, node_id: str, kind: str, name: str) -> list[float]:
        """Client position of a node's input or output socket, by port name."""
        return self.js(
            """([id, kind, name]) => {
                const node = app.nodeById(id);
                const list = kind === "input" ? node.inputs : node.outputs;
                const i = list.findIndex((s) => s.name === name);
                if (i < 0) throw new Error(`no ${kind} ${name} on ${id}`);
                return app.slotClientPos(id, kind, i);
            }""",
            [node_id, kind, name],
        )

    def drag(self, start, end) -> None:
        m = self.page.mouse
        m.move(*start)
        m.down()
        m.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=4)
        m.move(*end, steps=4)
        m.up()

    def empty_spot(self) -> list[float]:
        """Client position of an empty spot of the canvas: near a corner where the canvas itself (not the
        minimap or a panel over it) is under the mouse and no node is."""
        return self.js("""(() => { const r = app.el.canvas.getBoundingClientRect();
            for (const [x, y] of [[r.width - 30, 30], [r.width - 30, r.height - 30], [30, 30], [30, r.height - 30]]) {
              const g = app.canvas.ds.convertCanvasToOffset([x, y]);
              if (document.elementFromPoint(r.left + x, r.top + y) === app.el.canvas && !app.graph.getNodeOnPos(g[0], g[1]))
                return [r.left + x, r.top + y];
            }
            throw new Error("no empty corner on the canvas"); })()""")

    def connect(self, src: str, output: str, dst: str, input_name: str) -> None:
        self.drag(self.slot(src, "output", output), self.slot(dst, "input", input_name))

    def screenshot(self, name: str) -> Path:
        """Save a screenshot of the page in tests/browser/artifacts/ (git-ignored), listed after the run."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        SCREENSHOTS.append(path)
        print(f"screenshot: {path}")
        return path
