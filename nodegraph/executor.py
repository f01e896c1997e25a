"""Executors run plans. :class:`LocalExecutor` runs one in the calling thread.

The executor is the only place with side effects. It walks the plan depth-first from the targets
with an explicit stack (no recursion: a 100,000-node chain runs), looks every node up in the
cache *before* evaluating its inputs (so a cached node's whole upstream is skipped), evaluates lazy
inputs only when the node asks for them, and emits an event for every step. A failing node stops
the run; nothing it produced is cached, and everything cached before stays valid.
"""

from __future__ import annotations

import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from .cache import OutputCache
from .config import Settings
from .context import CancelToken, NodeContext
from .errors import Cancelled, NodeExecutionError
from .events import (
    EventSink,
    NodeCached,
    NodeCompleted,
    NodeFailed,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from .modelstore import ModelStore
from .node import Node
from .plan import Plan, PlanNode
from .workflow import dump_workflow

__all__ = ["Executor", "LocalExecutor", "RunResult"]


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


class _InputError(NodeExecutionError):
    pass


class LocalExecutor:
    """Runs plans in the calling thread against a shared cache and model store."""

    def __init__(self, settings: Settings, cache: OutputCache, models: ModelStore) -> None:
        self.settings = settings
        self.cache = cache
        self.models = models

    def execute(self, plan: Plan, *, run_id: str | None = None, sink: EventSink | None = None,
                cancel: CancelToken | None = None, output_dir: Path | None = None) -> RunResult:
        run_id = run_id or uuid.uuid4().hex
        sink = sink if sink is not None else _ignore
        cancel = cancel if cancel is not None else CancelToken()
        out_dir = Path(output_dir) if output_dir is not None else Path(self.settings.output_dir)
        workflow_json: list[dict[str, Any]] = []  # dumped on first use by an output node
        result = RunResult(run_id=run_id, status="success")
        t_run = time.perf_counter()
        sink(RunStarted(run_id=run_id, nodes=plan.order, targets=plan.targets))

        nodes = plan.nodes
        values: dict[str, dict[str, Any]] = {}
        # Free intermediate values once every consumer in the plan is done (long chains stay flat).
        remaining: dict[str, int] = {}
        for pn in nodes.values():
            for src, _ in pn.links.values():
                remaining[src] = remaining.get(src, 0) + 1
        targets = set(plan.targets)
        lazy_asked: dict[str, set[str]] = {}
        instances: dict[str, Node] = {}
        stack = list(reversed(plan.targets))
        missed: set[str] = set()
        current: PlanNode | None = None

        def finish(pn: PlanNode) -> None:
            for src, _ in pn.links.values():
                left = remaining[src] - 1
                remaining[src] = left
                if left == 0 and src not in targets:
                    values.pop(src, None)

        def context(pn: PlanNode) -> NodeContext:
            wf = None
            if pn.spec.output_node:
                if not workflow_json:
                    workflow_json.append(dump_workflow(plan.workflow))
                wf = workflow_json[0]
            return NodeContext(node_id=pn.id, type_id=pn.spec.type_id, run_id=run_id, settings=self.settings,
                               models=self.models, cancel=cancel, sink=sink, output_dir=out_dir, workflow=wf)

        try:
            while stack:
                cancel.raise_if_cancelled()
                nid = stack[-1]
                if nid in values:
                    stack.pop()
                    continue
                pn = current = nodes[nid]
                entry = None if nid in missed else self.cache.get(pn.key)
                if entry is not None:
                    values[nid] = entry.outputs
                    result.cached.append(nid)
                    if entry.ui:
                        result.ui[nid] = entry.ui
                    sink(NodeCached(run_id=run_id, node=nid, type=pn.spec.type_id, ui=entry.ui))
                    stack.pop()
                    finish(pn)
                    continue
                missed.add(nid)  # looked up once per run; it will be computed now
                lazy_ports = [p for p in pn.links if p in pn.spec.lazy_ports] if pn.spec.lazy_ports else []
                asked = lazy_asked.setdefault(nid, set()) if lazy_ports else set()
                missing = [src for port, (src, _) in pn.links.items()
                           if src not in values and (port not in lazy_ports or port in asked)]
                if missing:
                    stack.extend(reversed(dict.fromkeys(missing)))
                    continue
                node = instances.get(nid)
                if node is None:
                    node = instances[nid] = pn.spec.cls()
                if lazy_ports:
                    ctx = context(pn)
                    wanted = node.check_lazy(self._inputs(pn, values, set(lazy_ports) - asked), ctx)
                    new = [p for p in wanted if p in lazy_ports and p not in asked]
                    if new:
                        asked.update(new)
                        continue  # evaluate them (the loop pushes their sources), then ask again
                unevaluated = set(lazy_ports) - asked
                inputs = self._inputs(pn, values, unevaluated)
                ctx = context(pn)
                sink(NodeStarted(run_id=run_id, node=nid, type=pn.spec.type_id))
                t0 = time.perf_counter()
                outputs = self._outputs(pn, node.run(inputs, ctx))
                duration = time.perf_counter() - t0
                values[nid] = outputs
                instances.pop(nid, None)
                self.cache.put(pn.key, outputs, ctx.ui)
                result.executed.append(nid)
                if ctx.ui:
                    result.ui[nid] = ctx.ui
                sink(NodeCompleted(run_id=run_id, node=nid, type=pn.spec.type_id, duration=duration, ui=ctx.ui))
                stack.pop()
                finish(pn)  # unasked lazy links count as consumed too
                current = None
        except Cancelled:
            result.status = "cancelled"
        except Exception as exc:  # noqa: BLE001 - any node failure becomes an event, never a crash
            pn = current
            result.status = "failed"
            result.error = NodeFailed(
                run_id=run_id,
                node=pn.id if pn else "",
                type=pn.spec.type_id if pn else "",
                error_type=type(exc).__name__,
                message=_message(exc),
                traceback=traceback.format_exc(),
            )
            sink(result.error)
        result.outputs = {t: values[t] for t in plan.targets if t in values}
        result.duration = time.perf_counter() - t_run
        sink(RunFinished(run_id=run_id, status=result.status, duration=result.duration,
                         executed=len(result.executed), cached=len(result.cached), error=result.error))
        return result

    @staticmethod
    def _inputs(pn: PlanNode, values: dict[str, dict[str, Any]], unevaluated: set[str]) -> Any:
        kwargs = dict(pn.literals)
        spec = pn.spec
        for port, (src, out) in pn.links.items():
            if port in unevaluated:
                kwargs[port] = None
                continue
            value = values[src][out]
            pspec = spec.inputs[port]
            if not pspec.link_only:
                try:  # a linked widget value gets the same checks as a literal one
                    value = pspec.validate_value(value)
                except ValidationError as exc:
                    err = exc.errors()[0]["msg"] if exc.errors() else str(exc)
                    raise _InputError(f"input {port!r} received {value!r} from {src}.{out}: {err}") from None
            kwargs[port] = value
        return spec.cls.Inputs.model_construct(**kwargs)

    @staticmethod
    def _outputs(pn: PlanNode, result: Any) -> dict[str, Any]:
        spec = pn.spec
        if isinstance(result, spec.cls.Outputs):
            return {name: getattr(result, name) for name in spec.outputs}
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
    text = str(exc).strip()
    return text if text else type(exc).__name__
