"""Planning: a validated workflow → the nodes a run needs, in order, each with its cache key.

The cache key is a Merkle key: sha256 over a canonical encoding of the node's type id, version,
validated literal inputs and, for each link, the upstream node's key and output name. Node ids are
not part of it, so an identical subgraph in another workflow has the same keys. A plan is plain
data, so a different executor (a cluster backend) can run the same plan.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .config import Settings
from .errors import WorkflowInvalid
from .fingerprint import FingerprintContext
from .node import NodeSpec
from .registry import Registry
from .validation import Issue, analyse
from .workflow import Workflow

__all__ = ["Plan", "PlanNode", "make_plan"]


@dataclass
class PlanNode:
    """One node of a plan: literals already validated, links resolved, key computed."""

    id: str
    spec: NodeSpec
    literals: dict[str, Any]
    links: dict[str, tuple[str, str]]  # port -> (source node id, output name)
    key: str = ""

    @property
    def type_id(self) -> str:
        return self.spec.type_id


@dataclass
class Plan:
    """What a run executes: the needed nodes, a deterministic order, and the targets."""

    workflow: Workflow
    nodes: dict[str, PlanNode]
    order: list[str]  # topological, deterministic (workflow order breaks ties)
    targets: list[str]
    graph: nx.DiGraph = field(repr=False)
    run_nonce: str = ""

    def keys(self) -> dict[str, str]:
        return {nid: n.key for nid, n in self.nodes.items()}


_SCALARS = (str, int, float, bool, type(None))


def _encode(value: Any) -> str:
    """Canonical text of a validated literal (type-tagged, so 1 and 1.0 and "1" differ)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if type(value) in _SCALARS:
        return f"{type(value).__name__[0]}{value!r}"
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return "j" + json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def make_plan(
    source: Workflow | dict[str, Any] | str,
    registry: Registry,
    *,
    targets: Iterable[str] | None = None,
    output_dir: str = "",
    run_nonce: str | None = None,
    settings: Settings | None = None,
) -> Plan:
    """Validate and plan; raises :class:`WorkflowInvalid` listing every issue.

    ``output_dir`` is part of the keys of output nodes (so a batch writing to a new folder writes);
    ``run_nonce`` is part of the keys of volatile nodes without a fingerprint (so they re-run).
    """
    wanted = list(targets) if targets is not None else None
    # Planning allocates many small objects that all stay alive; the cyclic GC would rescan them
    # again and again (cost growing with the graph). Nothing here makes cycles, so pause it.
    with _gc_paused():
        return _make_plan(source, registry, wanted, output_dir, run_nonce, settings)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _make_plan(source: Any, registry: Registry, wanted: list[str] | None, output_dir: str,
               run_nonce: str | None, settings: Settings | None) -> Plan:
    analysis, issues = analyse(source, registry, targets=wanted)
    if analysis is None or issues:
        raise WorkflowInvalid(issues or [Issue(code="invalid_workflow", message="not a workflow")])
    nonce = run_nonce if run_nonce is not None else uuid.uuid4().hex
    graph = analysis.graph
    specs = analysis.specs

    if wanted is None:
        wanted = [nid for nid, spec in specs.items() if spec.output_node]
    needed = set(wanted)  # the targets and all their ancestors, in one reverse traversal
    frontier = list(wanted)
    while frontier:
        for pred in graph.predecessors(frontier.pop()):
            if pred not in needed:
                needed.add(pred)
                frontier.append(pred)
    # networkx's sort is deterministic for a given insertion (= workflow) order.
    order = [n for n in nx.topological_sort(graph) if n in needed]

    nodes: dict[str, PlanNode] = {}
    sha = hashlib.sha256
    for nid in order:
        spec = specs[nid]
        literals = dict(analysis.literals[nid])
        for port, pspec in spec.inputs.items():
            if port not in literals and not pspec.required and port not in analysis.links[nid]:
                literals[port] = pspec.default
        links = analysis.links[nid]
        parts = [spec.type_id, str(spec.version)]
        for port in sorted(literals):
            parts.append(f"{port}={_encode(literals[port])}")
        for port in sorted(links):
            src, out = links[port]
            parts.append(f"{port}<{nodes[src].key}.{out}")
        if spec.cls.volatile:
            fp = None
            if settings is not None:
                # from the literal inputs; what arrives on links is already in the key (upstream keys)
                try:
                    fp = spec.cls().fingerprint(dict(literals), FingerprintContext.from_settings(settings))
                except Exception:  # noqa: BLE001 - no fingerprint means "always re-run", never a crash
                    fp = None
            parts.append(f"!fingerprint={fp if fp is not None else nonce}")
        if spec.output_node:
            parts.append(f"!output_dir={output_dir}")
        key = sha("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
        nodes[nid] = PlanNode(nid, spec, literals, links, key)
    return Plan(workflow=analysis.workflow, nodes=nodes, order=order, targets=wanted, graph=graph,
                run_nonce=nonce)
