"""Running queued jobs: one at a time, off the event loop, with the shared engine.

:class:`JobRunner` is an asyncio task that claims the next queued job from the store, runs it on a
single worker thread (so the engine's cache and model store persist from job to job), records the
result and publishes the WebSocket messages. A failing node fails that job only; an engine error
(a bug) fails the job with its traceback; the runner keeps going either way.

Engine events arrive in the worker thread. :class:`JobSink` turns each into its v1 message right
there (previews are PNG-encoded there too, throttled per node) and hands the text to the event loop
with ``loop.call_soon_threadsafe``, which keeps their order. ``job_finished`` is sent by the runner
only after the job's record is written, so a client that reacts to it reads the final state.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from ..context import CancelToken
from ..engine import Engine
from ..errors import WorkflowInvalid
from ..events import Progress, RunFinished
from .config import ServerConfig
from .hub import Hub
from .messages import (
    EVENT_MESSAGES,
    JobFinishedData,
    JobFinishedMessage,
    PreviewMessage,
    StatusData,
    StatusMessage,
)
from .schemas import JobError
from .store import AsyncJobStore

__all__ = ["JobRunner", "JobSink", "WorkerThread", "encode_preview", "with_urls"]

log = logging.getLogger(__name__)

SHUTDOWN = "server shutting down"


def with_urls(ui: dict[str, Any]) -> dict[str, Any]:
    """A copy of a node's ``ui`` whose images carry the ``url`` to fetch them (``/api/view?...``)."""
    images = ui.get("images")
    if not isinstance(images, list):
        return ui
    out = []
    for item in images:
        if isinstance(item, dict) and isinstance(item.get("filename"), str) and "url" not in item:
            query = {"filename": item["filename"], "subfolder": str(item.get("subfolder") or ""),
                     "type": str(item.get("type") or "output")}
            item = {**item, "url": "/api/view?" + urlencode(query)}
        out.append(item)
    return {**ui, "images": out}


def encode_preview(image: Any, max_side: int) -> str:
    """The first image of an IMAGE batch as a small PNG ``data:`` URL."""
    import numpy as np

    from ..images import to_pil

    if hasattr(image, "detach"):  # a torch tensor, without importing torch
        image = image.detach().to("cpu").float().numpy()
    arr = np.asarray(image)
    if arr.ndim == 4:
        arr = arr[:1]
    pil = to_pil(arr)[0]
    pil.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class WorkerThread:
    """One daemon thread that runs submitted callables in order (a stuck node never blocks exit)."""

    def __init__(self, name: str = "nodegraph-worker") -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((fn, loop, fut))
        return fut

    def _main(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, loop, fut = item
            try:
                result, error = fn(), None
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, fut, result, error)

    def close(self) -> None:
        self._queue.put(None)

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _resolve(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class JobSink:
    """The engine's event sink for one job (called in the worker thread)."""

    def __init__(self, job_id: str, loop: asyncio.AbstractEventLoop, hub: Hub, config: ServerConfig) -> None:
        self.job_id = job_id
        self.loop = loop
        self.hub = hub
        self.config = config
        self.finished: Any = None  # the RunFinished event, sent by the runner after the record is written
        self._last_preview: dict[str, float] = {}

    def __call__(self, event: Any) -> None:
        if isinstance(event, RunFinished):
            self.finished = event
            return
        message = EVENT_MESSAGES.get(type(event))
        if message is None:  # an event kind newer than this server: not part of the v1 messages
            return
        ui = getattr(event, "ui", None)
        self._send(message.of(self.job_id, event, **({"ui": with_urls(ui)} if ui is not None else {})))
        if isinstance(event, Progress) and event.preview is not None:
            self._preview(event)

    def _send(self, msg: Any) -> None:
        text = msg.model_dump_json()
        with contextlib.suppress(RuntimeError):  # the loop closed under a job stopping at shutdown
            self.loop.call_soon_threadsafe(self.hub.publish, text, self.job_id)

    def _preview(self, event: Any) -> None:
        now = time.monotonic()
        last = self._last_preview.get(event.node)
        if last is not None and now - last < self.config.preview_interval:
            return
        self._last_preview[event.node] = now
        try:
            image = encode_preview(event.preview, self.config.preview_size)
        except Exception as exc:  # noqa: BLE001 - a preview that cannot be drawn is skipped, the run goes on
            log.debug("preview of %s not encoded: %s", event.node, exc)
            return
        self._send(PreviewMessage.of(self.job_id, event, image=image))


class JobRunner:
    """Claims queued jobs and runs them one at a time; publishes queue status and job messages."""

    def __init__(self, engine: Engine, store: AsyncJobStore, hub: Hub, config: ServerConfig) -> None:
        self.engine = engine
        self.store = store
        self.hub = hub
        self.config = config
        self.worker = WorkerThread()
        self.current: tuple[str, CancelToken] | None = None
        self.jobs_run = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.worker.start()
        self._task = asyncio.create_task(self._loop(), name="nodegraph-runner")

    def wake(self) -> None:
        self._wake.set()

    def interrupt(self, job_id: str | None = None) -> str | None:
        """Cancel the running job (only if it is ``job_id``, when given); returns its id or ``None``."""
        current = self.current
        if current is None or (job_id is not None and job_id != current[0]):
            return None
        current[1].cancel("interrupted")
        return current[0]

    async def stop(self) -> None:
        """Stop taking jobs; ask the running one to stop and give it ``shutdown_timeout`` seconds."""
        self._closing = True
        self._wake.set()
        if self.current is not None:
            self.current[1].cancel(SHUTDOWN)
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=self.config.shutdown_timeout)
            if not done:
                log.warning("the running job did not stop within %.0f s; it will be marked interrupted at the "
                            "next start", self.config.shutdown_timeout)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self.worker.close()

    async def publish_status(self) -> None:
        counts = await self.store(lambda s: s.counts())
        running = self.current[0] if self.current else None
        msg = StatusMessage(t=time.time(), data=StatusData(queue_remaining=counts["queued"], running=running))
        self.hub.publish_status(msg.model_dump_json())

    # -- the loop --------------------------------------------------------------------------------
    async def _loop(self) -> None:
        await self.publish_status()
        while not self._closing:
            self._wake.clear()  # before looking: a job queued from now on sets it again
            try:
                job = await self.store(lambda s: s.claim_next())
            except Exception:  # noqa: BLE001 - e.g. a full disk: keep serving, retry on the next queue change
                log.exception("could not take the next job from the queue")
                job = None
            if job is None:
                await self._wake.wait()
                continue
            if self._closing:  # claimed as we were stopping: give it back to the next start
                await self.store(lambda s, j=job["id"]: s.finish(j, "interrupted", error=_interrupted_error()))
                break
            try:
                await self._run(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the runner must survive anything a job does
                log.exception("recording job %s failed", job["id"])
            finally:
                self.current = None

    async def _run(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        token = CancelToken()
        self.current = (job_id, token)
        await self.publish_status()
        sink = JobSink(job_id, asyncio.get_running_loop(), self.hub, self.config)
        engine, workflow, targets = self.engine, job["workflow"], job["targets"]
        started = time.perf_counter()

        def work() -> Any:
            try:
                return engine.run(workflow, targets=targets, sink=sink, cancel=token, run_id=job_id)
            except WorkflowInvalid as exc:  # e.g. a pack is gone since it was queued
                return exc
            except Exception as exc:  # noqa: BLE001 - an engine bug fails this job only
                exc.__nodegraph_traceback__ = traceback.format_exc()  # type: ignore[attr-defined]
                return exc

        result = await self.worker.submit(work)
        end, outputs = _outcome(job_id, result, token, time.perf_counter() - started)
        error_json = end.error.model_dump() if end.error is not None else None
        await self.store(lambda s: s.finish(job_id, end.status, error=error_json, outputs=outputs))
        self.current = None
        self.jobs_run += 1
        finished = JobFinishedMessage(t=sink.finished.t if sink.finished is not None else time.time(), data=end)
        self.hub.publish(finished.model_dump_json(), job_id)
        await self.publish_status()
        log.info("job %s: %s in %.2f s", job_id, end.status, end.duration)


def _outcome(job_id: str, result: Any, token: CancelToken, elapsed: float) -> tuple[Any, dict[str, Any]]:
    """A job's ``job_finished`` data and its outputs (the nodes' ``ui``, with image URLs) from what the
    engine returned: a RunResult, or the exception that stopped it before any node ran."""
    status, error, outputs, executed, cached, duration = "failed", None, {}, 0, 0, elapsed
    if isinstance(result, WorkflowInvalid):
        error = JobError(node=result.issues[0].node if result.issues else None, type=None,
                         error_type="WorkflowInvalid", message=str(result), traceback="")
    elif isinstance(result, Exception):
        error = JobError(node=None, type=None, error_type=type(result).__name__, message=str(result) or
                         type(result).__name__, traceback=getattr(result, "__nodegraph_traceback__", ""))
    else:
        status, duration = result.status, result.duration
        outputs = {nid: with_urls(ui) for nid, ui in result.ui.items()}
        executed, cached = len(result.executed), len(result.cached)
        if result.error is not None:
            e = result.error
            error = JobError(node=e.node, type=e.type, error_type=e.error_type, message=e.message,
                             traceback=e.traceback)
    if status == "cancelled" and token.reason == SHUTDOWN:
        status, error = "interrupted", _interrupted_error()
    elif status == "cancelled":
        error = JobError(node=None, type=None, error_type="Cancelled", message="the job was interrupted by a user",
                         traceback="")
    return JobFinishedData(job_id=job_id, status=status, duration=duration, executed=executed, cached=cached,
                           error=error), outputs


def _interrupted_error() -> JobError:
    return JobError(node=None, type=None, error_type="Interrupted",
                    message="the server stopped while this job was running; re-queue it to run it again",
                    traceback="")
