"""Running queued jobs: off the event loop, with the shared engine.

:class:`JobRunner` is an asyncio task that claims the next queued job from the store, runs it on a
worker thread (so the engine's cache and model store persist from job to job), records the result
and publishes the WebSocket messages. One job runs at a time, unless the engine's executor runs
plans on several workers (a cluster): then as many run at once as it has workers. A failing node
fails that job only; an engine error (a bug) fails the job with its traceback; the runner keeps
going either way. When the data folder's disk is full, a finished job's record is retried every
``store_retry`` seconds until it is written (the job still reads ``running`` meanwhile); a server
stopped before that marks it ``interrupted`` at its next start.

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
from ..errors import WorkflowInvalid, exit_call
from ..events import Progress, RunFinished, RunPlaced, fanout
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
from .store import AsyncJobStore, StoreFull

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
    """Claims queued jobs and runs up to ``slots`` of them at once (one unless the engine's executor
    runs plans on several workers); publishes queue status and job messages."""

    def __init__(self, engine: Engine, store: AsyncJobStore, hub: Hub, config: ServerConfig, *,
                 slots: int = 1) -> None:
        self.engine = engine
        self.store = store
        self.hub = hub
        self.config = config
        self.slots = max(1, slots)
        self._threads = [WorkerThread(f"nodegraph-worker-{i}") for i in range(self.slots)]
        self._free = list(self._threads)
        self.running: dict[str, CancelToken] = {}  # job id -> its cancel token, in start order
        self.jobs_run = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()

    @property
    def current(self) -> tuple[str, CancelToken] | None:
        """The first running job and its token, or ``None``."""
        return next(iter(self.running.items()), None)

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._task = asyncio.create_task(self._loop(), name="nodegraph-runner")

    def wake(self) -> None:
        self._wake.set()

    def interrupt(self, job_id: str | None = None) -> str | None:
        """Cancel the running job ``job_id`` (every running job when ``None``); returns the (first)
        job cancelled, or ``None``."""
        ids = [job_id] if job_id is not None else list(self.running)
        cancelled = [j for j in ids if j in self.running]
        for j in cancelled:
            self.running[j].cancel("interrupted")
        return cancelled[0] if cancelled else None

    async def stop(self) -> None:
        """Stop taking jobs; ask the running ones to stop and give them ``shutdown_timeout`` seconds."""
        self._closing = True
        self._wake.set()
        for token in self.running.values():
            token.cancel(SHUTDOWN)
        tasks = {t for t in (self._task, *self._jobs) if t is not None}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_timeout)
            if pending:
                log.warning("the running job did not stop within %.0f s; it will be marked interrupted at the "
                            "next start", self.config.shutdown_timeout)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        for thread in self._threads:
            thread.close()

    async def publish_status(self) -> None:
        counts = await self.store(lambda s: s.counts())
        running = list(self.running)
        msg = StatusMessage(t=time.time(), data=StatusData(queue_remaining=counts["queued"],
                                                          running=running[0] if running else None,
                                                          running_jobs=running))
        self.hub.publish_status(msg.model_dump_json())

    # -- the loop --------------------------------------------------------------------------------
    async def _loop(self) -> None:
        await self.publish_status()
        while not self._closing:
            self._wake.clear()  # before looking: a job queued (or a slot freed) from now on sets it again
            if not self._free:
                await self._wake.wait()
                continue
            retry = False
            try:
                job = await self.store(lambda s: s.claim_next())
            except StoreFull as exc:  # keep serving; take it once there is room again
                log.warning("could not take the next job from the queue: %s", exc)
                job, retry = None, True
            except Exception:  # noqa: BLE001 - keep serving, retry on the next queue change
                log.exception("could not take the next job from the queue")
                job = None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.store_retry if retry else None)
                continue
            if self._closing:  # claimed as we were stopping: give it back to the next start
                with contextlib.suppress(StoreFull):  # else the next start marks it interrupted
                    await self.store(lambda s, j=job["id"]: s.finish(j, "interrupted", error=_interrupted_error()))
                break
            self.running[job["id"]] = CancelToken()
            task = asyncio.create_task(self._guarded(job, self._free.pop()), name=f"nodegraph-job-{job['id']}")
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)

    async def _guarded(self, job: dict[str, Any], thread: WorkerThread) -> None:
        try:
            await self._run(job, thread)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the runner must survive anything a job does
            log.exception("recording job %s failed", job["id"])
        finally:
            self.running.pop(job["id"], None)
            self._free.append(thread)
            self._wake.set()

    async def _run(self, job: dict[str, Any], thread: WorkerThread) -> None:
        job_id = job["id"]
        token = self.running[job_id]
        await self.publish_status()
        loop = asyncio.get_running_loop()
        sink = JobSink(job_id, loop, self.hub, self.config)
        engine, workflow, targets = self.engine, job["workflow"], job["targets"]
        started = time.perf_counter()

        def placed(event: Any) -> None:
            # A cluster executor says where the job runs: record it before the sink announces it, so a
            # client that reads the job on `job_placed` sees its worker. Waits a store write, once a run.
            if isinstance(event, RunPlaced):
                with contextlib.suppress(Exception):  # the loop closed at shutdown, or a slow disk
                    asyncio.run_coroutine_threadsafe(self._placed(job_id, event.worker), loop).result(10)

        def work() -> Any:
            try:
                return engine.run(workflow, targets=targets, sink=fanout(placed, sink), cancel=token, run_id=job_id)
            except WorkflowInvalid as exc:  # e.g. a pack is gone since it was queued
                return exc
            except (Exception, SystemExit, KeyboardInterrupt) as exc:  # noqa: BLE001 - an engine bug (or an exit) fails this job only
                exc.__nodegraph_traceback__ = traceback.format_exc()  # type: ignore[attr-defined]
                return exc

        result = await thread.submit(work)
        end, outputs = _outcome(job_id, result, token, time.perf_counter() - started)
        error_json = end.error.model_dump() if end.error is not None else None
        if not await self._record(job_id, end.status, error_json, outputs):
            return  # stopping with the disk still full: the next start marks the job interrupted
        self.running.pop(job_id, None)
        self.jobs_run += 1
        finished = JobFinishedMessage(t=sink.finished.t if sink.finished is not None else time.time(), data=end)
        self.hub.publish(finished.model_dump_json(), job_id)
        await self.publish_status()
        log.info("job %s: %s in %.2f s", job_id, end.status, end.duration)

    async def _record(self, job_id: str, status: str, error: dict[str, Any] | None, outputs: dict[str, Any]) -> bool:
        """Write a finished job's record, retrying while the disk is full; ``False``: stopped first."""
        finished = time.time()
        warned = False
        while True:
            try:
                await self.store(lambda s: s.finish(job_id, status, error=error, outputs=outputs, finished=finished))
            except StoreFull as exc:
                if not warned:
                    log.error("job %s ended (%s) but cannot be recorded: %s", job_id, status, exc)
                    warned = True
            else:
                if warned:
                    log.info("job %s recorded now that the data folder has room again", job_id)
                return True
            if self._closing:
                return False
            self._wake.clear()  # the loop looks at the queue again after this job anyway
            with contextlib.suppress(TimeoutError):  # stop() sets _wake: no waiting out the interval then
                await asyncio.wait_for(self._wake.wait(), self.config.store_retry)

    async def _placed(self, job_id: str, worker: str) -> None:
        try:
            await self.store(lambda s: s.set_worker(job_id, worker))
        except Exception:  # noqa: BLE001 - where a job runs is information; never fail the job over it
            log.exception("could not record the worker of job %s", job_id)
            return
        await self.publish_status()


def _outcome(job_id: str, result: Any, token: CancelToken, elapsed: float) -> tuple[Any, dict[str, Any]]:
    """A job's ``job_finished`` data and its outputs (the nodes' ``ui``, with image URLs) from what the
    engine returned: a RunResult, or the exception that stopped it before any node ran."""
    status, error, outputs, executed, cached, duration = "failed", None, {}, 0, 0, elapsed
    if isinstance(result, WorkflowInvalid):
        error = JobError(node=result.issues[0].node if result.issues else None, type=None,
                         error_type="WorkflowInvalid", message=str(result), traceback="")
    elif isinstance(result, BaseException):
        message = str(result) or type(result).__name__
        if isinstance(result, (SystemExit, KeyboardInterrupt)):
            message = f"the job was planned and a node {exit_call(result)}; the server goes on"
        error = JobError(node=None, type=None, error_type=type(result).__name__, message=message,
                         traceback=getattr(result, "__nodegraph_traceback__", ""))
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
