"""The workers: starting them, checking them, handing them out, replacing the ones that are lost.

:class:`WorkerPool` starts (or joins) Ray, starts one actor per worker with the resources it asks
for, and compares each worker's packs and node versions with the head's as it comes up: a worker
that lacks a pack or has another version of one is refused (killed, and listed with the reason),
never used. :meth:`WorkerPool.acquire` hands out idle workers first come, first served (a re-run
goes first), choosing among the idle ones the worker that holds most of the job's models (model
affinity), then the one that ran most of its nodes lately (their outputs are in its cache). A worker lost mid-job is replaced by a new one as soon as the cluster has room for it.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..context import CancelToken
from ..registry import Registry
from .options import ClusterOptions, ClusterUnavailable
from .ray_setup import start_ray
from .wire import PartDone, WorkerHello
from .worker import CONTROL, NodegraphWorker

__all__ = ["Worker", "WorkerPool", "compare_packs"]

log = logging.getLogger(__name__)

AFFINITY_MEMORY = 64  # model identities remembered per worker
RECENT_MEMORY = 512  # identities of the nodes a worker ran or had cached lately (its output cache)
CLOSE_TIMEOUT = 5.0  # seconds the workers get to remove their scratch folders before they are killed


@dataclass(eq=False)
class Worker:
    """One worker as the head sees it."""

    name: str
    actor: Any
    hello_ref: Any = None
    state: str = "starting"  # starting | idle | busy | lost | refused
    hello: WorkerHello | None = None
    job: str | None = None
    models: collections.OrderedDict[str, None] = field(default_factory=collections.OrderedDict)
    recent: collections.OrderedDict[str, None] = field(default_factory=collections.OrderedDict)
    loaded: list[str] = field(default_factory=list)
    jobs_run: int = 0
    idle_since: float = 0.0
    message: str = ""

    def info(self) -> dict[str, Any]:
        h = self.hello
        return {"name": self.name, "state": self.state, "host": h.host if h else "", "node": h.node if h else "",
                "resources": h.resources if h else {}, "job": self.job, "models_loaded": list(self.loaded),
                "jobs_run": self.jobs_run, "message": self.message}


def compare_packs(head: Registry, hello: WorkerHello) -> list[str]:
    """What makes a worker unable to run the head's plans: missing packs, other versions (empty: none)."""
    problems = [f"pack {name!r} is missing" for name in head.packs if name not in hello.packs]
    problems += [f"pack {name!r} is version {hello.packs[name]} there, {info.version} here"
                 for name, info in head.packs.items() if name in hello.packs and hello.packs[name] != info.version]
    if not problems:
        types = {spec.type_id: spec.version for spec in head.specs()}
        problems = [f"node {t} is version {hello.types.get(t)} there, {v} here" for t, v in types.items()
                    if hello.types.get(t) != v]
    return problems


class WorkerPool:
    """The workers of one head. Thread-safe: executors acquire and release from any thread."""

    def __init__(self, options: ClusterOptions, registry: Registry, settings: Settings) -> None:
        self.options = options
        self.registry = registry
        self.overrides = dict(options.worker_settings)
        self.overrides.setdefault("allow_model_paths", settings.allow_model_paths)
        self.workers: list[Worker] = []
        self.size = 0
        # jobs_loading_models: parts of runs during which the worker had to load a model (an affinity miss)
        self.stats = {"dispatches": 0, "affinity_choices": 0, "jobs": 0, "jobs_loading_models": 0,
                      "model_loads": 0, "lost": 0, "replaced": 0}
        self._ray: Any = None
        self._started = False
        self._cls: Any = None
        self._names = itertools.count(1)
        self._cond = threading.Condition()
        self._waiting: collections.deque[object] = collections.deque()
        self._closing = False
        self._watcher: threading.Thread | None = None
        self._cpus = self._gpus = 0.0

    # -- start and stop ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start Ray (or join it) and the workers; returns once they are ready (or, after the start timeout,
        at least one is)."""
        self._ray, self._started = start_ray(self.options)
        ray = self._ray
        total = ray.cluster_resources()
        self._gpus = self.options.worker_gpus if self.options.worker_gpus is not None else (
            1.0 if total.get("GPU", 0) >= 1 else 0.0)
        self._cpus = self.options.worker_cpus if self.options.worker_cpus is not None else 1.0
        self.size = self.options.workers or max(1, int(total.get("GPU", 0) // self._gpus) if self._gpus else
                                                int(total.get("CPU", 1) // self._cpus))
        self.overrides.setdefault("threads", max(1, int(self._cpus)))
        self._cls = ray.remote(concurrency_groups={CONTROL: 4})(NodegraphWorker)
        with self._cond:
            for _ in range(self.size):
                self.workers.append(self._spawn())
        self._watcher = threading.Thread(target=self._watch, name="nodegraph-pool", daemon=True)
        self._watcher.start()
        deadline = time.monotonic() + self.options.start_timeout
        failed = None
        with self._cond:
            # every worker up (they start in parallel, so this costs the slowest start) or, after the start
            # timeout, at least one: a worker still waiting for resources joins when it comes up
            while any(w.state == "starting" for w in self.workers):
                if all(w.state in ("refused", "lost") for w in self.workers):
                    break
                if time.monotonic() > deadline:
                    if any(w.state == "idle" for w in self.workers):
                        log.warning("workers still starting after %.0f s (the cluster may lack the resources "
                                    "they ask for): %s", self.options.start_timeout,
                                    ", ".join(w.name for w in self.workers if w.state == "starting"))
                    break
                self._cond.wait(0.2)
            if not any(w.state == "idle" for w in self.workers):
                failed = "; ".join(f"{w.name}: {w.message}" for w in self.workers if w.message)
        if failed is not None:
            self.close()
            raise ClusterUnavailable("no worker could start" + (
                f" ({failed})" if failed else f" within {self.options.start_timeout:.0f} s: the cluster has "
                f"{_resources(total)} and each worker asks for {self._cpus:g} CPU and {self._gpus:g} GPU; lower "
                "--workers or --worker-cpus"))
        log.info("cluster ready: %d worker(s), %g CPU and %g GPU each", self.size, self._cpus, self._gpus)

    def close(self) -> None:
        """Stop every worker (and Ray, when this pool started it)."""
        with self._cond:
            self._closing = True
            workers = list(self.workers)
            self._cond.notify_all()
        ray = self._ray
        if ray is None:
            return
        live = [w for w in workers if w.state not in ("lost", "refused")]
        # a worker still starting has no scratch folder to remove yet (and may never be scheduled)
        _stop(ray, [w.actor for w in live if w.hello is not None], [w.actor for w in live if w.hello is None])
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if self._started and ray.is_initialized():
            ray.shutdown()
        self._ray = None

    def _spawn(self) -> Worker:
        """A new worker actor (called with the lock held); the watcher finishes its start."""
        name = f"w{next(self._names)}"
        actor = self._cls.options(
            num_cpus=self._cpus, num_gpus=self._gpus, max_restarts=0, max_task_retries=0,
            scheduling_strategy="SPREAD",
        ).remote(name, self.overrides)
        worker = Worker(name, actor)
        worker.hello_ref = actor.hello.options(concurrency_group=CONTROL).remote()
        return worker

    def _watch(self) -> None:
        """Finish the start of new workers: hello, pack check, idle (or refused)."""
        ray = self._ray
        while True:
            with self._cond:
                if self._closing:
                    return
                pending = {w.hello_ref: w for w in self.workers if w.state == "starting"}
            if not pending:
                with self._cond:
                    self._cond.wait(0.5)
                continue
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                self._hello(pending[ref], ref)

    def _hello(self, worker: Worker, ref: Any) -> None:
        try:
            hello = self._ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - its __init__ failed, or its node went away
            if self._closing:
                return
            message = f"did not start: {_short(exc)}"
            self._ray.kill(worker.actor)
            log.error("worker %s %s", worker.name, message)
            with self._cond:  # not replaced: a new one would fail the same way
                worker.state, worker.message = "lost", message
                self._cond.notify_all()
            return
        problems = compare_packs(self.registry, hello)
        with self._cond:
            worker.hello = hello
            if problems:
                worker.state = "refused"
                worker.message = (f"refused: {'; '.join(problems)} (host {hello.host}). Install the same nodegraph "
                                  "and packs (same versions) on every node")
                log.error("worker %s %s", worker.name, worker.message)
            else:
                worker.state, worker.idle_since = "idle", time.monotonic()
                if hello.failures:
                    log.warning("worker %s: packs that failed to load there: %s", worker.name,
                                "; ".join(hello.failures))
            self._cond.notify_all()
        if problems:  # off the watcher thread: the other workers' hellos go on
            threading.Thread(target=_stop, args=(self._ray, [worker.actor]), daemon=True).start()

    # -- handing out ---------------------------------------------------------------------------------
    def acquire(self, wanted: Iterable[str], cancel: CancelToken, *, first: bool = False) -> Worker | None:
        """The idle worker holding most of ``wanted`` (model identities), waiting in line for one;
        ``first`` jumps the line (a re-run). ``None`` when ``cancel`` fires while waiting."""
        wanted = set(wanted)
        ticket = object()
        with self._cond:
            (self._waiting.appendleft if first else self._waiting.append)(ticket)
            try:
                while True:
                    if cancel.cancelled:
                        return None
                    if self._waiting[0] is ticket:
                        worker = self._take(wanted)
                        if worker is not None:
                            return worker
                    self._check_alive()
                    self._cond.wait(0.1)
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()

    def try_acquire(self, wanted: Iterable[str]) -> Worker | None:
        """An idle worker now if there is one and nobody waits for it, else ``None``."""
        with self._cond:
            return None if self._waiting else self._take(set(wanted))

    def _take(self, wanted: set[str]) -> Worker | None:
        idle = [w for w in self.workers if w.state == "idle"]
        if not idle:
            return None
        # the models first (loading one costs seconds), then cached outputs, then the longest idle
        worker = max(idle, key=lambda w: (len(wanted & w.models.keys()), len(wanted & w.recent.keys()),
                                          -w.idle_since))
        self.stats["dispatches"] += 1
        if wanted & worker.models.keys() and len(idle) > 1:
            self.stats["affinity_choices"] += 1
        worker.state = "busy"
        return worker

    def _check_alive(self) -> None:
        if self._closing:
            raise ClusterUnavailable("the cluster executor is shutting down")
        if not any(w.state in ("starting", "idle", "busy") for w in self.workers):
            reasons = "; ".join(f"{w.name}: {w.message}" for w in self.workers[-4:])
            raise ClusterUnavailable(f"no worker left to run jobs ({reasons})")

    def placed(self, worker: Worker, run_id: str) -> None:
        with self._cond:
            worker.job = run_id

    def release(self, worker: Worker, done: PartDone | None, identity: dict[str, str]) -> None:
        """``worker`` finished its part; ``done`` says which of its nodes hold models (for affinity)."""
        with self._cond:
            if done is not None:
                _remember(worker.models, (identity.get(n) for n in done.model_nodes), AFFINITY_MEMORY)
                _remember(worker.recent, (identity.get(n) for n in done.executed + done.cached), RECENT_MEMORY)
                worker.loaded = list(done.loaded)
                worker.jobs_run += 1
                self.stats["jobs"] += 1
                self.stats["jobs_loading_models"] += done.model_loads > 0
                self.stats["model_loads"] += done.model_loads
            if worker.state == "busy":
                worker.state, worker.job, worker.idle_since = "idle", None, time.monotonic()
            self._cond.notify_all()

    def lost(self, worker: Worker, error: BaseException) -> str:
        """``worker`` died (actor killed, node gone): mark it, start a replacement; returns how it is named."""
        host = worker.hello.host if worker.hello else "?"
        node = worker.hello.node[:12] if worker.hello else "?"
        label = f"worker {worker.name} (host {host}, Ray node {node})"
        with self._cond:
            if worker.state != "lost":
                worker.state, worker.message = "lost", _short(error)
                self.stats["lost"] += 1
                self._replace_locked()
            worker.job = None
            self._cond.notify_all()
        try:
            self._ray.kill(worker.actor)
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        log.warning("%s was lost: %s", label, _short(error))
        return label

    def _replace_locked(self) -> None:
        if self._closing or self.stats["replaced"] >= self.options.max_replacements:
            return
        self.stats["replaced"] += 1
        self.workers.append(self._spawn())
        # keep the list of lost workers short: the newest stay visible in /api/system
        gone = [w for w in self.workers if w.state in ("lost", "refused")]
        for w in gone[:-8]:
            self.workers.remove(w)

    def describe(self) -> dict[str, Any]:
        with self._cond:
            return {"kind": "ray", "address": self.options.address, "workers": [w.info() for w in self.workers]}


def _remember(memory: collections.OrderedDict[str, None], keys: Iterable[str | None], limit: int) -> None:
    for key in keys:
        if key is not None:
            memory[key] = None
            memory.move_to_end(key)
    while len(memory) > limit:
        memory.popitem(last=False)


def _resources(total: dict[str, float]) -> str:
    return f"{total.get('CPU', 0):g} CPU and {total.get('GPU', 0):g} GPU"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _stop(ray: Any, actors: list[Any], starting: list[Any] = ()) -> None:
    """Kill ``actors``, each first asked to remove its scratch folder (``ray.kill`` runs no exit handler),
    and ``starting`` (actors that never said hello) at once."""
    closing = []
    for actor in actors:
        try:
            closing.append(actor.close.options(concurrency_group=CONTROL).remote())
        except Exception:  # noqa: BLE001 - already gone
            pass
    if closing:
        try:
            ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT)
        except Exception:  # noqa: BLE001 - a worker already gone
            pass
    for actor in [*actors, *starting]:
        try:
            ray.kill(actor)
        except Exception:  # noqa: BLE001 - already gone
            pass
