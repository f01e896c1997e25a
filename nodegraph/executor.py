"""Executors run plans. :class:`LocalExecutor` runs one in the calling thread.

The executor is the only place with side effects. A run's bookkeeping — values so far, who still
needs them, lazy inputs asked for, the events, the result — is a :class:`RunState`, and building
a node's inputs and checking its outputs are functions, so another executor (a cluster one) uses
the same steps. The local one first looks the needed nodes up in the cache, from the targets back
(a cached node's whole upstream is skipped), then runs the misses in the plan's order, one loop
with no per-node scheduling; a plan with lazy inputs is walked depth-first from the targets with an
explicit stack (no recursion: a 100,000-node chain runs), evaluating a lazy input only when its
node asks for it. Every step emits an event when someone listens. A failing node stops the run;
nothing it produced is cached, and everything cached before stays valid. A run cancelled at any
moment before it ends is ``cancelled``, even when the cancel came while its last node was running.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from .cache import CacheEntry, OutputCache
from .config import Settings
from .construct import construct, construct_in_order
from .context import CancelToken, NodeContext, context_factory
from .errors import Cancelled, NodeExecutionError, exit_call, stray_exit
from .events import (
    EventSink,
    NodeCached,
    NodeCompleted,
    NodeFailed,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from .heap import heap_frozen, refreeze
from .modelstore import ModelStore
from .node import Node
from .plan import Plan, PlanNode
from .threads import apply_torch_threads
from .workflow import dump_workflow

__all__ = ["Executor", "LocalExecutor", "RunResult", "RunState", "node_inputs", "node_outputs"]


@dataclass
class RunResult:
    """What a run did. ``outputs`` holds the output values of the target nodes."""

    run_id: str
    status: Literal["success", "failed", "cancelled"]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    ui: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    error: NodeFailed | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "success"


class Executor(Protocol):
    """Runs a plan. A distributed backend implements the same method."""

    def execute(self, plan: Plan, *, run_id: str | None = None, sink: EventSink | None = None,
                cancel: CancelToken | None = None, output_dir: Path | None = None) -> RunResult: ...


def _ignore(_: Any) -> None:
    pass


_NONE: frozenset[str] = frozenset()
# The per-node events, built as ``Model.model_validate(dict)`` builds them, without the Python layers
# of ``Model(**kwargs)`` (two of them for every node run when someone listens).
_clock = time.perf_counter
_node_started = NodeStarted.__pydantic_validator__.validate_python
_node_completed = NodeCompleted.__pydantic_validator__.validate_python
_node_cached = NodeCached.__pydantic_validator__.validate_python
_REFREEZE = 4096  # steps of a run between two refreezes of the heap


class _InputError(NodeExecutionError):
    pass


class RunState:
    """One run's state, whatever executes its nodes: the values produced so far (freed once every
    consumer in the plan is done, so long chains stay flat), the lazy inputs each node asked for,
    the events, and the :class:`RunResult` being built. ``current`` is the node being evaluated."""

    def __init__(self, plan: Plan, run_id: str, sink: EventSink, cancel: CancelToken, output_dir: Path) -> None:
        self.plan = plan
        self.run_id = run_id
        self.sink = sink
        self.cancel = cancel
        self.output_dir = output_dir
        self.result = RunResult(run_id=run_id, status="success")
        self.values: dict[str, dict[str, Any]] = {}
        self.current: PlanNode | None = None
        self.looked_up: set[str] = set()  # nodes the cache missed this run: computed, not looked up again
        self.repeated: set[str] = set()  # keys of several nodes to run: looked up again before each runs
        self.lazy_asked: dict[str, set[str]] = {}
        self.instances: dict[str, Node] = {}  # a node asked for lazy inputs runs on the same instance
        # Nobody listens: the per-node events are not built (a run's first and last events still are).
        self.quiet = sink is _ignore
        self._targets = set(plan.targets)
        self._consumers = dict(plan.consumers())
        self._workflow_json: dict[str, Any] | None = None
        self.make_context: Callable[[str, str, Any], NodeContext] | None = None  # set by the executor
        self._started = time.perf_counter()
        sink(RunStarted(run_id=run_id, nodes=plan.order, targets=plan.targets))

    def workflow_json(self) -> dict[str, Any]:
        """The workflow being run as JSON (output nodes embed it), dumped on first use."""
        if self._workflow_json is None:
            self._workflow_json = dump_workflow(self.plan.workflow)
        return self._workflow_json

    def lazy_ports(self, pn: PlanNode) -> tuple[list[str], set[str]]:
        """The node's linked lazy inputs, and those of them it asked for so far."""
        if not pn.spec.lazy_ports:
            return [], set()
        ports = [p for p in pn.links if p in pn.spec.lazy_ports]
        return ports, (self.lazy_asked.setdefault(pn.id, set()) if ports else set())

    def waiting_for(self, pn: PlanNode, lazy: list[str], asked: set[str]) -> list[str]:
        """The nodes whose values ``pn`` needs and that have none yet (lazy inputs only once asked)."""
        values = self.values
        return [src for port, (src, _) in pn.links.items()
                if src not in values and (port not in lazy or port in asked)]

    def cached(self, pn: PlanNode, entry: CacheEntry) -> None:
        """``pn``'s outputs came from the cache."""
        self._done(pn, entry.outputs, entry.ui, self.result.cached)
        if not self.quiet:
            self.sink(_node_cached({"run_id": self.run_id, "node": pn.id, "type": pn.spec.type_id, "ui": entry.ui}))

    def completed(self, pn: PlanNode, outputs: dict[str, Any], ui: dict[str, Any], duration: float) -> None:
        """``pn`` ran and produced ``outputs``."""
        self._done(pn, outputs, ui, self.result.executed)
        if not self.quiet:
            self.sink(_node_completed({"run_id": self.run_id, "node": pn.id, "type": pn.spec.type_id,
                                       "duration": duration, "ui": ui}))
        self.current = None

    def _done(self, pn: PlanNode, outputs: dict[str, Any], ui: dict[str, Any], kind: list[str]) -> None:
        self.values[pn.id] = outputs
        kind.append(pn.id)
        if ui:
            self.result.ui[pn.id] = ui
        # Its inputs are consumed (unasked lazy links too): free what nothing else needs.
        for src, _ in pn.links.values():
            left = self._consumers[src] - 1
            self._consumers[src] = left
            if left == 0 and src not in self._targets:
                self.values.pop(src, None)

    def failed(self, exc: BaseException) -> None:
        """The run stops: ``current`` failed with ``exc`` (raised where it is handled, for its traceback)."""
        pn = self.current
        self.result.status = "failed"
        self.result.error = NodeFailed(run_id=self.run_id, node=pn.id if pn else "", type=pn.spec.type_id if pn else "",
                                       error_type=type(exc).__name__, message=_message(exc),
                                       traceback=traceback.format_exc())
        self.sink(self.result.error)

    def finish(self) -> RunResult:
        result = self.result
        result.outputs = {t: self.values[t] for t in self.plan.targets if t in self.values}
        result.duration = time.perf_counter() - self._started
        self.sink(RunFinished(run_id=self.run_id, status=result.status, duration=result.duration,
                              executed=len(result.executed), cached=len(result.cached), error=result.error))
        return result


class LocalExecutor:
    """Runs plans in the calling thread against a shared cache and model store."""

    def __init__(self, settings: Settings, cache: OutputCache, models: ModelStore) -> None:
        self.settings = settings
        self.cache = cache
        self.models = models

    def execute(self, plan: Plan, *, run_id: str | None = None, sink: EventSink | None = None,
                cancel: CancelToken | None = None, output_dir: Path | None = None) -> RunResult:
        return self.run(RunState(plan, run_id or uuid.uuid4().hex, sink if sink is not None else _ignore,
                                 cancel if cancel is not None else CancelToken(),
                                 Path(output_dir) if output_dir is not None else Path(self.settings.output_dir)))

    def run(self, run: RunState) -> RunResult:
        """Execute a prepared run (its ``values`` may already hold outputs computed elsewhere)."""
        try:
            with heap_frozen():  # the collector scans what the run allocates, not the plan and models
                self._walk(run)
            # A cancel that came while the last node ran still cancels the run (its outputs are cached).
            run.cancel.raise_if_cancelled()
        except Cancelled:
            run.result.status = "cancelled"
        except Exception as exc:  # noqa: BLE001 - any node failure becomes an event, never a crash
            run.failed(exc)
        except (SystemExit, KeyboardInterrupt) as exc:  # a node (or a library it calls) exiting must not end
            if not stray_exit(exc):  # the CLI or the server; Ctrl-C (in the main thread) still stops the run
                raise
            run.failed(exc)
        return run.finish()

    def _walk(self, run: RunState) -> None:
        if run.plan.lazy_links():
            self._walk_depth_first(run)
            return
        cancel, cached, steps = run.cancel, run.cached, self._probe(run)
        for start in range(0, len(steps), _REFREEZE):
            if start:
                refreeze()  # what the run keeps so far: out of the collector's reach (see heap.py)
            for pn, entry in steps[start:start + _REFREEZE]:
                cancel.raise_if_cancelled()
                if entry is not None:
                    cached(pn, entry)
                    continue
                run.current = pn
                if pn.key in run.repeated:  # an identical node ran earlier in this run: take its outputs
                    entry = self.cache.get(pn.key)
                    if entry is not None:
                        cached(pn, entry)
                        continue
                self._run_node(run, pn, _NONE)

    def _probe(self, run: RunState) -> list[tuple[PlanNode, CacheEntry | None]]:
        """What the run does, in plan order: each needed node with its cache entry, or ``None`` to run it.

        One pass from the targets back: a node is needed when a target or a node that runs reads it
        (a cached node's upstream is not), and it is looked up in the cache once. Nodes that already
        have a value (computed elsewhere) are neither looked up nor run. Keys that several nodes to
        run share go to ``run.repeated``: the first of them runs, the others are looked up again.
        """
        plan, values, lookup = run.plan, run.values, self.cache.get
        nodes = plan.nodes
        needed = set(plan.targets)
        pending = len(needed)  # needed nodes not reached yet: none left, the scan stops
        steps: list[tuple[PlanNode, CacheEntry | None]] = []
        keys: set[str] = set()
        for nid in reversed(plan.order):
            if nid not in needed:
                continue
            pending -= 1
            if nid not in values:
                pn = nodes[nid]
                entry = lookup(pn.key)
                steps.append((pn, entry))
                if entry is None:
                    key = pn.key
                    if key in keys:
                        run.repeated.add(key)
                    keys.add(key)
                    for src, _ in pn.links.values():
                        if src not in needed:
                            needed.add(src)
                            pending += 1
            if not pending:
                break
        steps.reverse()
        return steps

    def _walk_depth_first(self, run: RunState) -> None:
        """Evaluate the targets depth-first (plans with lazy inputs): a node is taken from the cache, or
        its missing inputs are pushed, or (once they are there, and the lazy ones it asks for) it runs."""
        stack = list(reversed(run.plan.targets))
        nodes, values, looked_up, cancel = run.plan.nodes, run.values, run.looked_up, run.cancel
        while stack:
            cancel.raise_if_cancelled()
            nid = stack[-1]
            if nid in values:
                stack.pop()
                continue
            pn = run.current = nodes[nid]
            if nid not in looked_up:
                entry = self.cache.get(pn.key)
                if entry is not None:
                    run.cached(pn, entry)
                    stack.pop()
                    continue
                looked_up.add(nid)
            lazy, asked = run.lazy_ports(pn)
            missing = run.waiting_for(pn, lazy, asked)
            if missing:
                stack.extend(reversed(dict.fromkeys(missing)))
                continue
            if lazy and self._asks_for_more(run, pn, lazy, asked):
                continue  # the loop pushes the sources of the inputs it asked for, then asks again
            self._run_node(run, pn, set(lazy) - asked if lazy else _NONE)
            stack.pop()

    def _instance(self, run: RunState, pn: PlanNode) -> Node:
        node = run.instances.get(pn.id)
        if node is None:
            node = run.instances[pn.id] = pn.spec.cls()
        return node

    def _context(self, run: RunState, pn: PlanNode) -> NodeContext:
        make = run.make_context
        if make is None:
            make = run.make_context = context_factory(run_id=run.run_id, settings=self.settings, models=self.models,
                                                      cancel=run.cancel, sink=run.sink, output_dir=run.output_dir)
        spec = pn.spec
        return make(pn.id, spec.type_id, run.workflow_json if spec.cls.output_node else None)

    def _asks_for_more(self, run: RunState, pn: PlanNode, lazy: list[str], asked: set[str]) -> bool:
        """Ask the node which lazy inputs it needs given the others; True when it wants new ones."""
        unevaluated = set(lazy) - asked
        wanted = self._instance(run, pn).check_lazy(node_inputs(pn, run.values, unevaluated), self._context(run, pn))
        new = [p for p in wanted if p in lazy and p not in asked]
        asked.update(new)
        return bool(new)

    def _run_node(self, run: RunState, pn: PlanNode, unevaluated: AbstractSet[str]) -> None:
        spec = pn.spec
        node = run.instances.pop(pn.id, None) if run.instances else None  # asked for its lazy inputs
        if node is None:
            node = spec.cls()
        threads = self.settings.threads
        if threads is not None:
            apply_torch_threads(threads)
        inputs = node_inputs(pn, run.values, unevaluated)
        ctx = self._context(run, pn)
        if not run.quiet:
            run.sink(_node_started({"run_id": run.run_id, "node": pn.id, "type": spec.type_id}))
        t0 = _clock()
        outputs = node_outputs(pn, node.run(inputs, ctx))
        self._store(run, pn, outputs, ctx.ui, _clock() - t0)

    def _store(self, run: RunState, pn: PlanNode, outputs: dict[str, Any], ui: dict[str, Any],
               duration: float) -> None:
        """Cache what ``pn`` produced and record it in the run (a remote worker first sends its files home)."""
        self.cache.put(pn.key, outputs, ui)
        run.completed(pn, outputs, ui, duration)


def node_inputs(pn: PlanNode, values: dict[str, dict[str, Any]], unevaluated: AbstractSet[str] = frozenset()) -> Any:
    """The node's ``Inputs``: its literals and the upstream ``values`` its links name (``None`` for the
    lazy inputs in ``unevaluated``). A linked widget value gets the same checks as a literal one."""
    spec = pn.spec
    literals, links = pn.literals, pn.links
    kwargs: dict[str, Any] = {}
    # Built in the model's field order (its instance dict as pydantic would build it), one pass.
    for port, check in spec.link_checks.items():
        link = links.get(port)
        if link is None:
            if port in literals:
                kwargs[port] = literals[port]
            continue
        if port in unevaluated:
            kwargs[port] = None
            continue
        src, out = link
        value = values[src][out]
        if check is not None:
            try:
                value = check(value)
            except ValidationError as exc:
                err = exc.errors()[0]["msg"] if exc.errors() else str(exc)
                raise _InputError(f"input {port!r} received {value!r} from {src}.{out}: {err}") from None
        kwargs[port] = value
    if len(kwargs) != len(literals) + len(links):  # a literal for no port of the model: as model_construct does
        kwargs.update((port, value) for port, value in literals.items() if port not in kwargs)
        return construct(spec.cls.Inputs, kwargs)
    return construct_in_order(spec.cls.Inputs, kwargs)


def node_outputs(pn: PlanNode, result: Any) -> dict[str, Any]:
    """What ``run`` returned, checked against the node's declared outputs, as a dict."""
    spec = pn.spec
    if isinstance(result, spec.cls.Outputs):
        fields = result.__dict__  # the model's field values (read once: a model's attributes are slow)
        if fields.keys() == spec.outputs.keys():  # the usual case: exactly the declared outputs
            return fields.copy()
        return {name: fields[name] for name in spec.outputs}
    if isinstance(result, dict):
        missing = [n for n in spec.outputs if n not in result]
        extra = [n for n in result if n not in spec.outputs]
        if missing or extra:
            raise NodeExecutionError(
                f"{spec.type_id}.run returned outputs {sorted(result)}, expected {list(spec.outputs)}"
                f" (missing {missing}, unexpected {extra})")
        return dict(result)
    raise NodeExecutionError(f"{spec.type_id}.run returned {type(result).__name__}; it must return "
                             f"{spec.cls.__name__}.Outputs(...)")


def _message(exc: BaseException) -> str:
    if isinstance(exc, (SystemExit, KeyboardInterrupt)):
        return (f"the node {exit_call(exc)}; a node reports a failure by raising an exception "
                "(nodegraph.NodeExecutionError), never by ending the process")
    text = str(exc).strip()
    return text if text else type(exc).__name__
