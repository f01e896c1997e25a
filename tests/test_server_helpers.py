"""Shared fixtures and helpers of the server tests (no tests here).

The server runs in-process (aiohttp's pytest client) on a real engine: the built-in packs, the toy
pack (tests/packs/toy), the sample pack (tests/sample_pack, with a front-end folder) and a small
``srvtest`` pack registered here: ``srvtest.gate`` blocks until the test opens its gate (so a test
can look at a running job, queue behind it, or stop the server under it), ``srvtest.pictures``
reports progress with preview images, and ``srvtest.scale`` is at version 2 with a migration from
version 1. Tests wait on WebSocket messages, never on time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import TypeAdapter

import nodegraph
from nodegraph import IMAGE, Engine, Node, NodeContext, NodeExecutionError, Port, Settings
from nodegraph.server import ServerConfig, create_app
from nodegraph.server.messages import WsMessage

TESTS = Path(__file__).resolve().parent
WS_ADAPTER = TypeAdapter(WsMessage)
GATES: dict[str, threading.Event] = {}
_GATES_LOCK = threading.Lock()


def gate(name: str) -> threading.Event:
    with _GATES_LOCK:
        return GATES.setdefault(name, threading.Event())


class Gate(Node):
    """Waits until the test opens the gate `name` (checking for cancellation), then passes `value` on."""

    name = "gate"
    category = "testing"

    class Inputs(nodegraph.Inputs):
        name: str = Port("g", description="Gate name.")
        value: float = Port(0.0, description="Passed through.")

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="The input.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        event = gate(inputs.name)
        deadline = time.monotonic() + 30
        ctx.progress(0, 1)
        while not event.wait(0.005):  # cooperative: an interrupt stops the node here
            ctx.check_cancelled()
            if time.monotonic() > deadline:
                raise NodeExecutionError(f"gate {inputs.name!r} was never opened")
        return self.Outputs(value=inputs.value)


class Pictures(Node):
    """Reports `steps` progress steps, each with a preview image of `red` (0..1) red."""

    name = "pictures"
    category = "testing"

    class Inputs(nodegraph.Inputs):
        steps: int = Port(5, ge=1, description="Progress steps.")
        red: float = Port(1.0, ge=0, le=1, description="Red level of the previews.")
        size: int = Port(600, ge=1, description="Side of the preview images.")

    class Outputs(nodegraph.Outputs):
        images: IMAGE = Port(description="The last preview.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        import numpy as np

        image = np.zeros((2, inputs.size, inputs.size, 3), dtype=np.float32)
        image[..., 0] = inputs.red
        for step in range(1, inputs.steps + 1):
            ctx.progress(step, inputs.steps, preview=image)
        return self.Outputs(images=image)


class Scale(Node):
    """Multiply a number (version 1 called its input `x`)."""

    name = "scale"
    version = 2

    class Inputs(nodegraph.Inputs):
        value: float = Port(0.0, description="The number.")
        factor: float = Port(2.0, description="The factor.")

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="value × factor.")

    def run(self, inputs: Inputs, ctx: NodeContext) -> Outputs:
        return self.Outputs(value=inputs.value * inputs.factor)

    @classmethod
    def migrate(cls, from_version: int, inputs: dict[str, Any]) -> dict[str, Any] | None:
        if from_version != 1:
            return None
        inputs = dict(inputs)
        if "x" in inputs:
            inputs["value"] = inputs.pop("x")
        return inputs


SRVTEST = nodegraph.Pack("srvtest", nodes=[Gate, Pictures, Scale])


def make_engine(tmp: Path, **overrides: Any) -> Engine:
    """An engine on the test folders under ``tmp`` (the same folders on every call: a restart)."""
    (tmp / "input").mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = dict(
        model_dirs=[tmp / "models"], input_dir=tmp / "input", output_dir=tmp / "output", temp_dir=tmp / "temp",
        nodes_dirs=[TESTS / "packs", TESTS / "sample_pack"], entry_point_packs=False,
        cache_bytes=64 * 1024 * 1024, allow_model_paths=False)
    values.update(overrides)
    engine = Engine.from_settings(Settings(**values))
    engine.registry.add_pack(SRVTEST, "test:server")
    assert not engine.registry.failures, [f.message for f in engine.registry.failures]
    return engine


def wf(**nodes: dict[str, Any]) -> dict[str, Any]:
    return {"format": "nodegraph/1", "nodes": nodes, "ui": {}, "meta": {}}


def node(type_: str, **inputs: Any) -> dict[str, Any]:
    return {"type": type_, "inputs": inputs}


def link(src: str, output: str = "value") -> dict[str, str]:
    return {"from": src, "output": output}


def trivial(value: float = 1.0) -> dict[str, Any]:
    return wf(c=node("toy.const", value=value), s=node("toy.sink", value=link("c")))


def gated(name: str, value: float = 1.0) -> dict[str, Any]:
    return wf(g=node("srvtest.gate", name=name, value=value), s=node("toy.sink", value=link("g")))


class Server:
    """A running in-process server: its test client, app and folders."""

    def __init__(self, client: Any, tmp: Path) -> None:
        self.client = client
        self.tmp = tmp

    @property
    def app(self) -> Any:
        return self.client.server.app

    async def json(self, method: str, path: str, status: int | None = 200, **kw: Any) -> Any:
        res = await self.client.request(method, path, **kw)
        body = await res.text()
        if status is not None:
            assert res.status == status, f"{method} {path}: {res.status} {body}"
        return json.loads(body) if body else None

    async def queue(self, workflow: dict[str, Any], status: int = 201, **extra: Any) -> str:
        data = await self.json("POST", "/api/jobs", status, json={"workflow": workflow, **extra})
        return data["job_id"] if status == 201 else data

    async def ws(self, client_id: str = "tester") -> Any:
        ws = await self.client.ws_connect(f"/ws?client_id={client_id}")
        first = await receive(ws)
        assert first["type"] == "status"
        return ws


async def receive(ws: Any, timeout: float = 20) -> dict[str, Any]:
    """The next message, checked against the v1 message schema."""
    msg = await ws.receive_json(timeout=timeout)
    WS_ADAPTER.validate_python(msg)
    assert msg["v"] == 1
    return msg


async def until(ws: Any, pred: Callable[[dict[str, Any]], bool], timeout: float = 20) -> list[dict[str, Any]]:
    """Messages up to and including the first one matching ``pred``."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            msg = await receive(ws, timeout)
            seen.append(msg)
            if pred(msg):
                return seen


def finished(job_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "job_finished" and m["data"]["job_id"] == job_id


def started_node(job_id: str, node_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "node_started" and m["data"]["job_id"] == job_id and m["data"]["node"] == node_id


@pytest.fixture
def web_dir(tmp_path: Path) -> Path:
    """A small editor folder: a page with an inline import map, the canvas library, another module."""
    web = tmp_path / "web"
    (web / "js").mkdir(parents=True)
    (web / "index.html").write_text('<!doctype html><script type="importmap">{"imports": {}}</script>'
                                    '<script type="module" src="js/main.js"></script>')
    (web / "js" / "main.js").write_text("export const x = 1;\n")
    lib = web / "node_modules" / "@comfyorg" / "litegraph" / "dist"
    lib.mkdir(parents=True)
    (lib / "litegraph.es.js").write_text("export class LGraph {}\n")
    other = web / "node_modules" / "leftpad"
    other.mkdir(parents=True)
    (other / "index.js").write_text("secret\n")
    (web / ".env").write_text("SECRET=1\n")
    return web


@pytest_asyncio.fixture
async def start(aiohttp_client, tmp_path: Path, web_dir: Path, open_gates_after: None):
    """start(engine=None, **options) -> Server; options are ServerConfig's (token, limits, data_dir...)."""

    async def _start(engine: Engine | None = None, **options: Any) -> Server:
        engine = engine or make_engine(tmp_path)
        options.setdefault("data_dir", tmp_path / "data")
        options.setdefault("web_dir", web_dir)
        client = await aiohttp_client(create_app(engine, ServerConfig(**options)))
        return Server(client, tmp_path)

    return _start


@pytest_asyncio.fixture
async def server(start) -> Server:
    return await start()


@pytest.fixture
def open_gates_after():
    """Open every gate after a test, so no worker thread waits for a gate nobody opens."""
    yield
    with _GATES_LOCK:
        for event in GATES.values():
            event.set()
        GATES.clear()
