"""A worker: the body of one Ray actor, with its own engine (registry, model store, output cache).

It plans the workflow it is sent with its own packs and settings (model names resolve in its own
model folders; the head's output folder and nonce keep the cache keys of the head), runs it with
:class:`WorkerExecutor` on a thread of its own, and streams the events back in batches: whatever
accumulated while the previous batch travelled, or came within a few milliseconds of its first
event, goes in the next one, so a fast run costs few round trips and a slow one still reports
at once. Nodes write into a scratch folder; after each
node its files go home (:class:`~nodegraph.cluster.wire.FilesOut`) and the worker waits for the
names they got on the head, which is what the node's ``ui``, the event and the cache then hold.

The actor runs one plan at a time (Ray's default concurrency group); ``cancel``, ``landed``,
``status`` and ``close`` run in the ``control`` group so they reach a running plan. The scratch
folder goes with the worker: the pool calls ``close`` (which stops the running plan and waits for it)
before it kills the actor, and an actor that exits on its own removes it at exit. A worker that dies
otherwise (its node lost, the head killed, the OS) cannot; each new worker removes the scratch
folders of this host's workers whose process is gone (``OWNER`` names it).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomic import pid_alive
from ..config import Settings
from ..context import CancelToken
from ..engine import Engine
from ..errors import Cancelled, NodeExecutionError, WorkflowInvalid, exit_call
from ..events import NodeCached, NodeCompleted, NodeFailed, Progress, RunFinished, RunStarted
from ..executor import LocalExecutor, RunState
from ..modelstore import ModelHandle
from ..paths import safe_join
from ..plan import Plan, PlanNode, make_plan
from .wire import Exported, FilesOut, JobSpec, OutFile, PartDone, WorkerHello

__all__ = ["CONTROL", "NodegraphWorker", "WorkerExecutor"]

log = logging.getLogger(__name__)

CONTROL = "control"  # the actor's concurrency group for calls that must reach a running plan
CLOSE_JOIN = 4.0  # seconds `close` waits for a stopped plan's thread (the pool kills the actor after 5)
SCRATCH_PREFIX = "nodegraph-w"  # scratch folders: <temp dir>/nodegraph-<worker name>-<random>
OWNER = ".owner"  # in a scratch folder: "<host> <pid>" of the worker process that made it
LANDING_TIMEOUT = 600.0  # seconds to wait for the head to write a node's files
BATCH_LINGER = 0.02  # seconds an event may wait for others to share its trip to the head


class _Channel:
    """One run's items on their way to the head, and the head's answers (file names, cancel)."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.cancel = CancelToken()
        self.state: RunState | None = None
        self.model_nodes: list[str] = []
        self._items: list[Any] = []
        self._done = False
        self._cond = threading.Condition()
        self._names: dict[str, list[tuple[str, str]]] = {}
        self._last_preview: dict[str, float] = {}

    # -- worker side ---------------------------------------------------------------------------------
    def put(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def close(self, done: PartDone) -> None:
        with self._cond:
            self._items.append(done)
            self._done = True
            self._cond.notify_all()

    def take(self) -> tuple[list[Any], bool]:
        """Everything sent so far and whether the run is over: waits for a first item, then up to
        ``BATCH_LINGER`` for more (a short run's events then travel in one batch), unless the run ends or
        the head is waiting for what came (files to land, outputs another part imports)."""
        with self._cond:
            while not self._items and not self._done:
                self._cond.wait()
            deadline = time.monotonic() + BATCH_LINGER
            while not self._done and not any(isinstance(i, FilesOut | Exported) for i in self._items):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            items, self._items = self._items, []
            return items, self._done

    def wait_names(self, node: str) -> list[tuple[str, str]]:
        deadline = time.monotonic() + LANDING_TIMEOUT
        with self._cond:
            while node not in self._names:
                self.cancel.raise_if_cancelled()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NodeExecutionError(f"the head did not write the files of {node} within "
                                             f"{LANDING_TIMEOUT:.0f} s")
                self._cond.wait(min(left, 0.5))
            return self._names.pop(node)

    # -- head side (control calls) --------------------------------------------------------------------
    def landed(self, node: str, names: list[tuple[str, str]]) -> None:
        with self._cond:
            self._names[node] = names
            self._cond.notify_all()

    def stop(self, reason: str) -> None:
        self.cancel.cancel(reason)
        with self._cond:
            self._cond.notify_all()

    # -- the event sink ---------------------------------------------------------------------------------
    def sink(self, event: Any) -> None:
        if isinstance(event, RunStarted | RunFinished):
            return  # the head starts and finishes the run once, whichever workers run its parts
        if isinstance(event, Progress) and event.preview is not None:
            event = event.model_copy(update={"preview": self._preview(event)})
        self.put(event)
        if isinstance(event, NodeCompleted | NodeCached) and self.state is not None:
            outputs = self.state.values.get(event.node, {})
            if any(isinstance(v, ModelHandle) for v in outputs.values()):
                self.model_nodes.append(event.node)
            if event.node in self.spec.exports:
                import ray

                self.put(Exported(event.node, [ray.put(outputs)]))

    def _preview(self, event: Progress) -> Any:
        """The first image of the preview as numpy, at most one per node per interval; else None."""
        interval = self.spec.preview_interval
        now = time.monotonic()
        last = self._last_preview.get(event.node)
        if interval is None or (last is not None and now - last < interval):
            return None
        self._last_preview[event.node] = now
        image = event.preview
        if hasattr(image, "detach"):  # a torch tensor, without importing torch
            image = image.detach().to("cpu").float().numpy()
        return image[:1] if getattr(image, "ndim", 0) == 4 else image


class WorkerExecutor(LocalExecutor):
    """The local executor, writing into a scratch folder and sending each node's files home."""

    def __init__(self, settings: Settings, cache: Any, models: Any) -> None:
        super().__init__(settings, cache, models)
        self.channel: _Channel | None = None

    def _store(self, run: RunState, pn: PlanNode, outputs: dict[str, Any], ui: dict[str, Any],
               duration: float) -> None:
        files = collect_files(run.output_dir, Path(self.settings.temp_dir))
        if files and self.channel is not None:
            self.channel.put(FilesOut(pn.id, files))
            ui = rename(ui, files, self.channel.wait_names(pn.id))
        super()._store(run, pn, outputs, ui, duration)


def collect_files(output_dir: Path, temp_dir: Path) -> list[OutFile]:
    """Every file under the scratch folders (read, then removed): what the last node wrote."""
    files = []
    for folder, base in (("output", output_dir), ("temp", temp_dir)):
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            sub = path.parent.relative_to(base).as_posix()
            files.append(OutFile(folder, "" if sub == "." else sub, path.name, path.read_bytes()))
            path.unlink()
    return files


def rename(ui: dict[str, Any], files: list[OutFile], names: list[tuple[str, str]]) -> dict[str, Any]:
    """``ui`` with the file entries (``{"filename", "subfolder", "type"}``) of ``files`` renamed to ``names``."""
    new = {(f.folder, f.subfolder, f.filename): name for f, name in zip(files, names, strict=True)}

    def entry(item: Any) -> Any:
        if not isinstance(item, dict) or "filename" not in item:
            return item
        key = (str(item.get("type") or "output"), str(item.get("subfolder") or ""), item["filename"])
        if key not in new:
            return item
        subfolder, filename = new[key]
        return {**item, "subfolder": subfolder, "filename": filename}

    return {k: [entry(i) for i in v] if isinstance(v, list) else v for k, v in ui.items()}


class NodegraphWorker:
    """One worker (wrapped by ``ray.remote`` on the head; its code is installed on every node)."""

    def __init__(self, name: str, overrides: dict[str, Any]) -> None:
        self.name = name
        _remove_orphans(Path(tempfile.gettempdir()))
        self.scratch = Path(tempfile.mkdtemp(prefix=f"nodegraph-{name}-"))
        (self.scratch / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}")
        atexit.register(self._remove_scratch)  # a graceful exit (``ray.kill`` runs no handler: see ``close``)
        self._closing = False
        self._threads: dict[str, threading.Thread] = {}
        values = {**overrides, "output_dir": self.scratch / "output", "temp_dir": self.scratch / "temp",
                  "input_dir": self.scratch / "input"}
        self.gpus = _gpu_ids()
        if self.gpus and "device" not in overrides and not os.environ.get("NODEGRAPH_DEVICE"):
            values["device"] = "cuda"
        settings = Settings.from_env(**values)
        Path(settings.input_dir).mkdir(parents=True, exist_ok=True)
        if settings.threads:
            _set_threads(settings.threads)
        self.engine = Engine.from_settings(settings)
        self.executor = WorkerExecutor(settings, self.engine.cache, self.engine.models)
        self.engine.executor = self.executor
        self.channels: dict[str, _Channel] = {}

    def hello(self) -> WorkerHello:
        import ray

        ctx = ray.get_runtime_context()
        registry = self.engine.registry
        return WorkerHello(
            pid=os.getpid(), host=socket.gethostname(), ip=ray.util.get_node_ip_address(), node=ctx.get_node_id(),
            resources={k: float(v) for k, v in ctx.get_assigned_resources().items()},
            packs={name: info.version for name, info in registry.packs.items()},
            types={spec.type_id: spec.version for spec in registry.specs()},
            failures=[f"{f.source}: {f.message}" for f in registry.failures], device=self.engine.settings.device)

    def status(self) -> dict[str, Any]:
        return {"runs": list(self.channels), "models_loaded": self.engine.models.loaded(),
                "cache": self.engine.cache.stats(), "scratch": str(self.scratch)}

    def close(self) -> None:
        """Stop the runs, wait for them (up to ``CLOSE_JOIN`` s: a node ends its step first) and remove the
        scratch folder; no run starts after it. The pool calls it before ``ray.kill``."""
        self._closing = True
        for channel in list(self.channels.values()):
            channel.stop("the worker is closing")
        deadline = time.monotonic() + CLOSE_JOIN
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def cancel(self, run_id: str) -> bool:
        channel = self.channels.get(run_id)
        if channel is not None:
            channel.stop("interrupted")
        return channel is not None

    def landed(self, run_id: str, node: str, names: list[tuple[str, str]]) -> None:
        channel = self.channels.get(run_id)
        if channel is not None:
            channel.landed(node, names)

    def execute(self, spec: JobSpec) -> Iterator[list[Any]]:
        """Run ``spec``, yielding batches of events and records; the last batch ends with PartDone."""
        if self._closing:
            raise RuntimeError(f"worker {self.name} is closing")
        channel = self.channels[spec.run_id] = _Channel(spec)
        thread = threading.Thread(target=self._main, args=(channel,), name=f"run-{spec.run_id[:8]}", daemon=True)
        self._threads[spec.run_id] = thread
        thread.start()
        try:
            while True:
                items, done = channel.take()
                if items:
                    yield items
                if done:
                    return
        finally:
            channel.stop("the head stopped reading")
            thread.join()
            self.channels.pop(spec.run_id, None)
            self._threads.pop(spec.run_id, None)

    def _main(self, channel: _Channel) -> None:
        spec = channel.spec
        started = time.perf_counter()
        loads_before = self.engine.models.loads
        try:
            plan = self._plan(spec)
            state = channel.state = RunState(plan, spec.run_id, channel.sink, channel.cancel,
                                             self.scratch / "output")
            self._import(state, spec, channel.cancel)
            self.executor.channel = channel
            result = self.executor.run(state)
        except WorkflowInvalid as exc:
            channel.close(_failed(spec, "WorkflowInvalid", f"on worker {self.name}: {exc}", started))
            return
        except Cancelled:  # while waiting for the outputs of another part
            channel.close(PartDone(status="cancelled", outputs={}, ui={}, executed=[], cached=[],
                                   duration=time.perf_counter() - started))
            return
        except (Exception, SystemExit, KeyboardInterrupt) as exc:  # noqa: BLE001 - reported to the head as the run's failure
            import traceback

            # an exit too: it would end this thread silently, and the head would wait for the run forever
            message = f"the run was planned and a node {exit_call(exc)}" if isinstance(exc, (SystemExit, KeyboardInterrupt)) \
                else str(exc)
            channel.close(_failed(spec, type(exc).__name__, f"on worker {self.name}: {message}", started,
                                  traceback.format_exc()))
            return
        finally:
            self.executor.channel = None
        channel.close(PartDone(status=result.status, outputs={t: result.outputs[t] for t in spec.report
                                                                if t in result.outputs},
                               ui=result.ui, executed=result.executed, cached=result.cached, error=result.error,
                               duration=result.duration, model_nodes=channel.model_nodes,
                               model_loads=self.engine.models.loads - loads_before,
                               loaded=self.engine.models.loaded()))

    def _plan(self, spec: JobSpec) -> Plan:
        """The head's plan rebuilt here: the same keys where the files are the same, this worker's packs."""
        settings = self.engine.settings
        for name, data in spec.inputs.items():
            path = safe_join(settings.input_dir, name)
            if not path.is_file() or path.read_bytes() != data:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        for folder in (self.scratch / "output", Path(settings.temp_dir)):
            shutil.rmtree(folder, ignore_errors=True)  # leftovers of a node that failed mid-write
        return make_plan(spec.workflow, self.engine.registry, targets=spec.targets, output_dir=spec.key_dir,
                         run_nonce=spec.run_nonce, settings=settings, folders=settings.folders())

    @staticmethod
    def _import(state: RunState, spec: JobSpec, cancel: CancelToken) -> None:
        """Outputs other workers computed for this run: fetched from the object store before it starts."""
        if not spec.imports:
            return
        import ray

        refs = {node: box[0] for node, box in spec.imports.items()}
        while True:
            ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=0.2)
            if len(ready) == len(refs):
                break
            cancel.raise_if_cancelled()
        for node, value in zip(refs, ray.get(list(refs.values())), strict=True):
            state.values[node] = value


def _failed(spec: JobSpec, error_type: str, message: str, started: float, traceback: str = "") -> PartDone:
    error = NodeFailed(run_id=spec.run_id, node="", type="", error_type=error_type, message=message,
                       traceback=traceback)
    return PartDone(status="failed", outputs={}, ui={}, executed=[], cached=[], error=error,
                    duration=time.perf_counter() - started)


def _remove_orphans(temp: Path) -> None:
    """Remove the scratch folders under ``temp`` that a worker process of this host left when it died."""
    host = socket.gethostname()
    for folder in temp.glob(f"{SCRATCH_PREFIX}*-*"):
        try:
            owner_host, pid = (folder / OWNER).read_text().split()
        except (OSError, ValueError):
            continue  # not a worker's (or one still writing its owner): leave it
        if owner_host == host and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _gpu_ids() -> list[Any]:
    try:
        import ray

        return list(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - outside Ray (tests of the body): no GPUs
        return []


def _set_threads(threads: int) -> None:
    """Torch's thread count, without importing torch for it (a worker that runs no model never does):
    torch reads these variables when a pack first imports it."""
    import sys

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
