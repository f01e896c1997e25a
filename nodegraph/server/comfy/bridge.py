"""ComfyUI's WebSocket protocol, spoken to the clients that connect as ComfyUI clients do (``/ws?clientId=ID``).

The bridge listens to the native hub (every v1 message the runner publishes) and sends each ComfyUI
client the same events in ComfyUI's shapes: ``status`` (``{"status": {"exec_info": {"queue_remaining"}},
"sid"}`` on connect), ``execution_start``, ``execution_cached``, ``executing`` (``{"node": None}`` when a
prompt is done), ``progress`` (``value``/``max``), ``executed`` (a node's ``output``), ``execution_error``,
``execution_interrupted``, ``execution_success``, and previews as binary frames (4 bytes event type 1,
4 bytes image type 2 = PNG, the PNG). A prompt's messages go to the client that queued it (its
``client_id``); jobs queued another way, or without a client id, go to every ComfyUI client.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..hub import Hub

__all__ = ["ComfyBridge", "PREVIEW_IMAGE"]

PREVIEW_IMAGE = 1  # ComfyUI's binary event type of a preview; the image type follows (1 JPEG, 2 PNG)
_PNG = 2
_REMEMBERED = 100_000  # prompts whose client the bridge remembers at most


@dataclass
class _Run:
    """What the bridge remembers of a running job: its client, the nodes done, the node running."""

    client: str | None
    executed: list[str] = field(default_factory=list)
    node: str | None = None
    node_type: str | None = None
    error_sent: bool = False


def _strip_urls(ui: Any) -> Any:
    """A node's ``ui`` as ComfyUI shows it: image entries ``{filename, subfolder, type}`` (our ``url`` dropped)."""
    if not isinstance(ui, dict) or not isinstance(ui.get("images"), list):
        return ui
    return {**ui, "images": [{k: v for k, v in i.items() if k != "url"} if isinstance(i, dict) else i
                             for i in ui["images"]]}


class ComfyBridge:
    """The ComfyUI clients' hub, fed from the native one."""

    def __init__(self, native: Hub, queue_size: int) -> None:
        self.hub = Hub(queue_size)
        self.clients_of: dict[str, str | None] = {}  # job id -> the ComfyUI client id that queued it
        self.runs: dict[str, _Run] = {}
        self.queue_remaining = 0
        native.listen(self.on_message)

    def queued(self, job_id: str, client_id: str | None) -> None:
        """A prompt was queued through the door: its messages go to ``client_id``."""
        self.clients_of[job_id] = client_id
        if len(self.clients_of) > _REMEMBERED:  # prompts deleted before they ran are never finished: forget
            del self.clients_of[next(iter(self.clients_of))]  # the oldest (the queue is bounded anyway)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws?clientId=ID``: a ComfyUI client (an id is made up when it gives none)."""
        sid = request.query.get("clientId") or uuid.uuid4().hex
        hello = self._text("status", {"status": self._exec_info(), "sid": sid})
        return await self.hub.handle(request, sid, hello=hello)

    async def close(self) -> None:
        await self.hub.close()

    # -- translation ------------------------------------------------------------------------------
    def on_message(self, text: str | bytes, job_id: str | None) -> None:
        if not isinstance(text, str) or (job_id is not None and not self.hub.clients and job_id not in self.runs):
            return  # (a job's events matter only to connected clients; the queue status always)
        msg = json.loads(text)
        kind, data = msg.get("type"), msg.get("data") or {}
        stamp = int((msg.get("t") or time.time()) * 1000)
        if kind == "status":
            self.queue_remaining = int(data.get("queue_remaining") or 0) + (1 if data.get("running") else 0)
            self.hub.publish(self._text("status", {"status": self._exec_info()}))
            return
        if job_id is None:
            return
        if kind == "job_started":
            self.runs[job_id] = _Run(self.clients_of.get(job_id))
            self._send(job_id, "execution_start", {"prompt_id": job_id, "timestamp": stamp})
            return
        run = self.runs.get(job_id)
        if run is None:
            return
        handler = getattr(self, f"_{kind}", None)
        if handler is not None:
            handler(job_id, run, data, stamp)

    def _node_started(self, job_id: str, run: _Run, data: dict[str, Any], stamp: int) -> None:
        run.node, run.node_type = data.get("node"), data.get("type")
        self._send(job_id, "executing", {"node": run.node, "display_node": run.node, "prompt_id": job_id})

    def _progress(self, job_id: str, run: _Run, data: dict[str, Any], stamp: int) -> None:
        step = data.get("step")
        self._send(job_id, "progress", {"value": step, "max": data.get("total") or step, "prompt_id": job_id,
                                        "node": data.get("node")})

    def _preview(self, job_id: str, run: _Run, data: dict[str, Any], stamp: int) -> None:
        image = data.get("image")
        if isinstance(image, str) and image.startswith("data:image/png;base64,"):
            png = base64.b64decode(image.split(",", 1)[1])
            self._deliver(run, struct.pack(">II", PREVIEW_IMAGE, _PNG) + png)

    def _node_cached(self, job_id: str, run: _Run, data: dict[str, Any], stamp: int) -> None:
        self._send(job_id, "execution_cached", {"nodes": [data.get("node")], "prompt_id": job_id, "timestamp": stamp})
        self._executed(job_id, data)

    def _node_completed(self, job_id: str, run: _Run, data: dict[str, Any], stamp: int) -> None:
        run.executed.append(data.get("node"))
        self._executed(job_id, data)

    def _executed(self, job_id: str, data: dict[str, Any]) -> None:
        if data.get("ui"):
            node = data.get("node")
            self._send(job_id, "executed", {"node": node, "display_node": node, "output": _strip_urls(data["ui"]),
                                            "prompt_id": job_id})

    def _node_failed(self, job_id: str, run: _Run, data: dict[str, Any], stamp: int) -> None:
        run.error_sent = True
        self._send(job_id, "execution_error", {
            "prompt_id": job_id, "node_id": data.get("node"), "node_type": data.get("type"),
            "executed": list(run.executed), "exception_message": data.get("message", ""),
            "exception_type": data.get("error_type", ""),
            "traceback": (data.get("traceback") or "").splitlines(keepends=True),
            "current_inputs": {}, "current_outputs": {}, "timestamp": stamp})

    def _job_finished(self, job_id: str, run: _Run, data: dict[str, Any], stamp: int) -> None:
        status = data.get("status")
        if status == "success":
            self._send(job_id, "execution_success", {"prompt_id": job_id, "timestamp": stamp})
        elif status in ("cancelled", "interrupted"):
            self._send(job_id, "execution_interrupted", {"prompt_id": job_id, "node_id": run.node,
                                                         "node_type": run.node_type, "executed": list(run.executed),
                                                         "timestamp": stamp})
        elif not run.error_sent:  # failed before any node ran (e.g. no longer valid)
            error = data.get("error") or {}
            self._send(job_id, "execution_error", {
                "prompt_id": job_id, "node_id": error.get("node"), "node_type": error.get("type"), "executed": [],
                "exception_message": error.get("message", ""), "exception_type": error.get("error_type", ""),
                "traceback": [], "current_inputs": {}, "current_outputs": {}, "timestamp": stamp})
        self._send(job_id, "executing", {"node": None, "prompt_id": job_id})
        self.runs.pop(job_id, None)
        self.clients_of.pop(job_id, None)

    # -- delivery ---------------------------------------------------------------------------------
    def _exec_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue_remaining}}

    @staticmethod
    def _text(kind: str, data: dict[str, Any]) -> str:
        return json.dumps({"type": kind, "data": data}, separators=(",", ":"))

    def _send(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        self._deliver(self.runs.get(job_id), self._text(kind, data))

    def _deliver(self, run: _Run | None, message: str | bytes) -> None:
        client = run.client if run is not None else None
        if client is None:
            self.hub.publish(message)
        else:
            self.hub.send_to(client, message)
