"""The WebSocket hub: connected clients, what each subscribed to, and ordered delivery.

Each client has a bounded queue and one writer task, so a message is serialised once, every client
gets messages in the order they were published, and a slow client never blocks the others: one
that falls ``ws_queue`` messages behind is disconnected (it can reconnect and re-read the state
over HTTP). Clients may send ``{"type": "subscribe", "job_id": ID}`` to receive only the events of
the jobs they name (``"job_id": null`` goes back to every job) and ``{"type": "unsubscribe", ...}``;
each is answered with the current ``status`` message, from which on it is in effect. ``status``
messages go to everyone. Listeners (:meth:`Hub.listen`) see every published message, e.g. to speak
another protocol to their own clients; a message may be binary (``bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

__all__ = ["Client", "Hub"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Client:
    ws: web.WebSocketResponse
    client_id: str | None
    queue: asyncio.Queue[str | bytes | None]
    jobs: set[str] | None = None  # None: every job
    writer: asyncio.Task[None] | None = field(default=None, repr=False)
    dropped: bool = False

    def wants(self, job_id: str | None) -> bool:
        return job_id is None or self.jobs is None or job_id in self.jobs


class Hub:
    """Publishes serialised messages to the connected WebSocket clients."""

    def __init__(self, queue_size: int = 2000) -> None:
        self.queue_size = queue_size
        self.clients: set[Client] = set()
        self.status_text: str | None = None  # the last status message, sent first to a new client
        self.listeners: list[Callable[[str | bytes, str | None], None]] = []

    def listen(self, listener: Callable[[str | bytes, str | None], None]) -> None:
        """Call ``listener(text, job_id)`` with every message published from now on."""
        self.listeners.append(listener)

    # -- publishing (event loop thread only) -----------------------------------------------------
    def publish(self, text: str | bytes, job_id: str | None = None) -> None:
        """Send to every client interested in ``job_id`` (``None``: to everyone)."""
        for client in list(self.clients):
            if client.wants(job_id):
                self._put(client, text)
        for listener in self.listeners:
            try:
                listener(text, job_id)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the messages
                log.exception("a WebSocket listener failed")

    def publish_status(self, text: str) -> None:
        self.status_text = text
        self.publish(text)

    def send_to(self, client_id: str, text: str | bytes) -> int:
        """Send to the clients that connected with ``client_id``; returns how many."""
        n = 0
        for client in list(self.clients):
            if client.client_id == client_id:
                self._put(client, text)
                n += 1
        return n

    def _put(self, client: Client, text: str | bytes) -> None:
        if client.dropped:
            return
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("WebSocket client %s fell %d messages behind; disconnecting it",
                        client.client_id or "?", self.queue_size)
            client.dropped = True
            self.clients.discard(client)
            # Drain so the writer sees the stop marker at once.
            while not client.queue.empty():
                client.queue.get_nowait()
            client.queue.put_nowait(None)

    # -- connections -----------------------------------------------------------------------------
    async def handle(self, request: web.Request, client_id: str | None, *,
                     hello: str | None = None) -> web.WebSocketResponse:
        """Serve one WebSocket; its first message is ``hello`` when given, else the last status."""
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024, timeout=2.0)
        await ws.prepare(request)
        client = Client(ws, client_id, asyncio.Queue(self.queue_size))
        first = hello if hello is not None else self.status_text
        if first is not None:
            client.queue.put_nowait(first)
        self.clients.add(client)  # no await since the snapshot: no message is lost or doubled
        client.writer = asyncio.create_task(self._write(client))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and self._command(client, msg.data) and self.status_text:
                    self._put(client, self.status_text)  # the reply: the subscription is in effect from here
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.clients.discard(client)
            client.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.writer
        return ws

    @staticmethod
    def _command(client: Client, text: str) -> bool:
        """Apply a client's (un)subscribe; returns whether it was one. Anything else is ignored."""
        try:
            msg = json.loads(text)
        except json.JSONDecodeError:
            return False
        if not isinstance(msg, dict):
            return False
        kind, job_id = msg.get("type"), msg.get("job_id")
        if kind == "subscribe":
            if job_id is None:
                client.jobs = None
                return True
            if isinstance(job_id, str) and len(job_id) <= 64:
                if client.jobs is None:
                    client.jobs = set()
                if len(client.jobs) < 10_000:
                    client.jobs.add(job_id)
                    return True
        elif kind == "unsubscribe" and isinstance(job_id, str) and len(job_id) <= 64:
            if client.jobs is not None:
                client.jobs.discard(job_id)
            return True
        return False

    @staticmethod
    async def _write(client: Client) -> None:
        try:
            while True:
                text = await client.queue.get()
                if text is None:
                    break
                if isinstance(text, bytes):
                    await client.ws.send_bytes(text)
                else:
                    await client.ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:  # the peer went away mid-send
            log.debug("WebSocket send failed: %s", exc)
        finally:
            if client.dropped:
                with contextlib.suppress(Exception):
                    await client.ws.close(code=1013, message=b"too slow: reconnect and reload the state")

    async def close(self) -> None:
        """Tell every client the server is going away (each gets 2 s to answer the close)."""
        clients, self.clients = list(self.clients), set()
        await asyncio.gather(*(c.ws.close(code=1001, message=b"server shutting down") for c in clients),
                             return_exceptions=True)
