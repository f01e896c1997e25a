"""The cluster executor: runs plans on the workers of a :class:`~nodegraph.cluster.pool.WorkerPool`.

:class:`RayExecutor` implements the engine's ``Executor`` protocol. For each plan it takes a
worker (the idle one holding the plan's models, when there is a choice), sends the plan as a
:class:`~nodegraph.cluster.wire.JobSpec`, and forwards the worker's events to the run's sink as
they arrive: the same events, in the same order, as a local run — plus a ``RunPlaced`` naming
the worker. Files come back with the events and are written into the head's folders before the
node's ``node_completed`` is forwarded. Cancelling the run's token cancels the remote run.

With ``spread``, a plan with several targets is cut into parts (:func:`~nodegraph.cluster.split.split_plan`)
run on as many idle workers at once; outputs one part needs from another go worker to worker as
object references. A worker lost mid-run (actor killed, node gone) makes the run start again once
on another worker; files already written keep their names and are not written twice. Lost twice,
the run fails with a message naming both workers.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..context import CancelToken
from ..errors import UnsafePath
from ..events import EventSink, NodeFailed, RunPlaced
from ..executor import RunResult, RunState
from ..paths import safe_join
from ..plan import Plan
from .landing import Lander
from .options import ClusterUnavailable
from .pool import Worker, WorkerPool
from .split import Part, identities, split_plan
from .wire import Exported, FilesOut, JobSpec, PartDone
from .worker import CONTROL

__all__ = ["RayExecutor", "WorkerLost", "input_files"]

log = logging.getLogger(__name__)

POLL = 0.1  # seconds between looks at the cancel token while waiting for a worker's events


class WorkerLost(Exception):
    """The worker running (a part of) the run died."""

    def __init__(self, label: str, error: BaseException) -> None:
        super().__init__(f"{label} was lost: {type(error).__name__}")
        self.label = label
        self.error = error


@dataclass(eq=False)
class _Stream:
    index: int
    part: Part
    worker: Worker
    gen: Any = None
    done: PartDone | None = None
    finished: bool = False
    lost: bool = False
    skipped: bool = False


class RayExecutor:
    """Runs plans on a cluster's workers; ``concurrency`` plans at once (one per worker)."""

    def __init__(self, pool: WorkerPool, settings: Settings, *, spread: bool = False,
                 preview_interval: float | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.spread = spread
        self.preview_interval = preview_interval
        self.lander = Lander()

    @property
    def concurrency(self) -> int:
        return self.pool.size

    def describe(self) -> dict[str, Any]:
        return self.pool.describe()

    def close(self) -> None:
        self.pool.close()

    def execute(self, plan: Plan, *, run_id: str | None = None, sink: EventSink | None = None,
                cancel: CancelToken | None = None, output_dir: Path | None = None) -> RunResult:
        run = RunState(plan, run_id or uuid.uuid4().hex, sink if sink is not None else _ignore,
                       cancel if cancel is not None else CancelToken(),
                       Path(output_dir) if output_dir is not None else Path(self.settings.output_dir))
        try:
            self._execute(run)
        finally:
            self.lander.forget(run.run_id)
        return run.finish()

    def _execute(self, run: RunState) -> None:
        ident = identities(run.plan)
        inputs = input_files(run.plan, self.settings)
        first_loss = ""
        for attempt in (1, 2):
            _reset(run)
            try:
                self._attempt(run, ident, inputs, attempt)
                return
            except WorkerLost as lost:
                if attempt == 2:
                    _fail(run, "WorkerLost", f"this job lost its worker twice: {first_loss}, then {lost.label} "
                          f"({lost.error}); it is not run a third time")
                    return
                first_loss = f"{lost.label} ({type(lost.error).__name__})"
                log.warning("run %s: %s; running it again on another worker", run.run_id, lost)
            except ClusterUnavailable as exc:
                _fail(run, "ClusterUnavailable", str(exc))
                return

    def _attempt(self, run: RunState, ident: dict[str, str], inputs: dict[str, bytes], attempt: int) -> None:
        wanted = set(ident.values())
        worker = self.pool.acquire(wanted, run.cancel, first=attempt > 1)
        if worker is None:
            run.result.status = "cancelled"
            return
        workers = [worker]
        while self.spread and len(workers) < len(run.plan.targets):
            more = self.pool.try_acquire(wanted)
            if more is None:
                break
            workers.append(more)
        parts = split_plan(run.plan, len(workers))
        for spare in workers[len(parts):]:
            self.pool.release(spare, None, ident)
        streams = [_Stream(i, part, w) for i, (part, w) in enumerate(zip(parts, workers, strict=False))]
        try:
            _Pump(self, run, streams, inputs, attempt).run()
        finally:
            for s in streams:
                if not s.lost:
                    self.pool.release(s.worker, s.done, ident)


class _Pump:
    """One attempt of a run: submits its parts, reads their streams, merges what they report."""

    def __init__(self, executor: RayExecutor, run: RunState, streams: list[_Stream], inputs: dict[str, bytes],
                 attempt: int) -> None:
        import ray

        self.ray = ray
        self.ex = executor
        self.run_state = run
        self.streams = streams
        self.inputs = inputs
        self.attempt = attempt
        self.refs: dict[str, list[Any]] = {}
        self.owner: dict[str, int] = {}  # node -> the stream whose events for it are forwarded
        self.stopping = False
        self.cancel_sent = False
        self.failure_sent = False

    def run(self) -> None:
        try:
            self._loop()
        except WorkerLost:
            self.stopping = True
            self._drain()
            raise

    def _loop(self) -> None:
        run = self.run_state
        while True:
            self._submit_ready()
            active = [s for s in self.streams if s.gen is not None and not s.finished]
            if not active:
                break
            if (run.cancel.cancelled or self.stopping) and not self.cancel_sent:
                self._cancel(active)
            ready, _ = self.ray.wait([s.gen for s in active], num_returns=1, timeout=POLL)
            for s in active:
                if s.gen in ready:
                    self._read(s)
                    if s.done is not None and s.done.status != "success":
                        self.stopping = True  # like a local run: the first failure stops the run
        if any(s.gen is None and not s.skipped for s in self.streams):  # inputs that never came
            _fail(run, "ClusterError", "a part of the run never received the outputs it needs from another part")

    def _submit_ready(self) -> None:
        run = self.run_state
        for s in self.streams:
            if s.gen is not None or s.skipped or not all(n in self.refs for n in s.part.imports):
                continue
            if self.stopping or run.cancel.cancelled:
                s.skipped = True
                continue
            spec = JobSpec(run_id=run.run_id, workflow=run.workflow_json(), targets=s.part.walk,
                           report=s.part.targets, key_dir=str(Path(run.output_dir).resolve()),
                           run_nonce=run.plan.run_nonce, inputs=self.inputs,
                           imports={n: self.refs[n] for n in s.part.imports}, exports=s.part.exports,
                           preview_interval=self.ex.preview_interval)
            s.gen = s.worker.actor.execute.remote(spec)
            self.ex.pool.placed(s.worker, run.run_id)
            hello = s.worker.hello
            run.sink(RunPlaced(run_id=run.run_id, worker=s.worker.name, host=hello.host if hello else "",
                               attempt=self.attempt))

    def _cancel(self, active: list[_Stream]) -> None:
        self.cancel_sent = True
        for s in active:
            s.worker.actor.cancel.options(concurrency_group=CONTROL).remote(self.run_state.run_id)

    def _read(self, s: _Stream, forward: bool = True) -> None:
        ray = self.ray
        try:
            ref = next(s.gen)
        except StopIteration:
            s.finished = True
            return
        try:
            items = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            s.finished = s.lost = True
            raise WorkerLost(self.ex.pool.lost(s.worker, exc), exc) from None
        except ray.exceptions.RayError as exc:  # a bug in the worker's own code: this run fails
            s.finished = True
            s.done = PartDone(status="failed", outputs={}, ui={}, executed=[], cached=[],
                              error=_error(self.run_state, type(exc).__name__, str(exc)))
            self._merge(s, s.done)
            return
        for item in items:
            self._item(s, item, forward)

    def _item(self, s: _Stream, item: Any, forward: bool) -> None:
        run = self.run_state
        if isinstance(item, FilesOut):
            names = [] if not forward else self.ex.lander.land(run.run_id, item.node, item.files, run.output_dir,
                                                               Path(self.ex.settings.temp_dir))
            if forward:
                s.worker.actor.landed.options(concurrency_group=CONTROL).remote(run.run_id, item.node, names)
        elif isinstance(item, Exported):
            self.refs[item.node] = item.ref
        elif isinstance(item, PartDone):
            s.done = item
            if forward:
                self._merge(s, item)
        elif forward:
            node = getattr(item, "node", None)
            if isinstance(item, NodeFailed):
                if self.failure_sent:
                    return
                self.failure_sent = True
            elif node is not None and self.owner.setdefault(node, s.index) != s.index:
                return  # a shared input node another part reported already
            run.sink(item)

    def _merge(self, s: _Stream, done: PartDone) -> None:
        res = self.run_state.result
        mine = [n for n in done.executed + done.cached if self.owner.get(n, s.index) == s.index]
        res.executed += [n for n in done.executed if n in mine and n not in res.executed]
        res.cached += [n for n in done.cached if n in mine and n not in res.cached]
        res.ui.update({n: ui for n, ui in done.ui.items() if n in mine})
        self.run_state.values.update(done.outputs)
        if done.status == "failed" and res.status != "failed":
            res.status, res.error = "failed", done.error
            if done.error is not None and not self.failure_sent:
                self.failure_sent = True
                self.run_state.sink(done.error)
        elif done.status == "cancelled" and res.status == "success":
            res.status = "cancelled"

    def _drain(self) -> None:
        """After a lost worker: stop the other parts and read them to their end (nothing forwarded)."""
        active = [s for s in self.streams if s.gen is not None and not s.finished]
        if active:
            self._cancel(active)
        for s in active:
            while not s.finished:
                try:
                    self._read(s, forward=False)
                except WorkerLost:
                    pass


def input_files(plan: Plan, settings: Settings) -> dict[str, bytes]:
    """The input-folder files the plan's literal inputs name (the workers get a copy)."""
    files: dict[str, bytes] = {}
    for pn in plan.nodes.values():
        for port, value in pn.literals.items():
            pspec = pn.spec.inputs.get(port)
            widget = pspec.type.widget if pspec is not None else None
            if widget is None or widget.kind != "file" or widget.folder != "input":
                continue
            if isinstance(value, str) and value and value not in files:
                try:
                    files[value] = safe_join(settings.input_dir, value).read_bytes()
                except (OSError, UnsafePath):
                    continue  # validation said what is wrong with it; the worker's run says it again
    return files


def _reset(run: RunState) -> None:
    res = run.result
    res.status, res.error = "success", None
    res.executed, res.cached, res.ui = [], [], {}
    run.values.clear()


def _error(run: RunState, error_type: str, message: str) -> NodeFailed:
    return NodeFailed(run_id=run.run_id, node="", type="", error_type=error_type, message=message, traceback="")


def _fail(run: RunState, error_type: str, message: str) -> None:
    run.result.status = "failed"
    run.result.error = _error(run, error_type, message)
    run.sink(run.result.error)


def _ignore(_: Any) -> None:
    pass
