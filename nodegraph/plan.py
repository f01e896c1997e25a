"""Planning: a validated workflow → the nodes a run needs, in order, each with its cache key.

The cache key is a Merkle key: sha256 over canonical JSON of the node's type id, version, validated
literal inputs and, for each link, the upstream node's key and output name. Node ids are not part
of it, so an identical subgraph in another workflow has the same keys. A plan is plain data, so a
different executor (a cluster backend) can run the same plan.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .config import Settings
from .errors import WorkflowInvalid
from .node import NodeSpec
from .registry import Registry
from .validate import Issue, check
from .workflow import Workflow, as_link

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


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


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
    ``run_nonce`` is part of the keys of volatile nodes that have no fingerprint (so they re-run).
    """
    wanted = list(targets) if targets is not None else None
    wf, issues = check(source, registry, targets=wanted)
    if wf is None or issues:
        raise WorkflowInvalid(issues or [Issue(code="invalid_workflow", message="not a workflow")])
    nonce = run_nonce if run_nonce is not None else uuid.uuid4().hex

    graph = nx.DiGraph()
    order_index = {nid: i for i, nid in enumerate(wf.nodes)}
    graph.add_nodes_from(wf.nodes)
    for nid, entry in wf.nodes.items():
        for value in entry.inputs.values():
            link = as_link(value)
            if link is not None:
                graph.add_edge(link.from_, nid)

    if wanted is None:
        wanted = [nid for nid, e in wf.nodes.items() if registry.get(e.type).output_node]  # type: ignore[union-attr]
    needed = set(wanted)  # the targets and all their ancestors, in one reverse traversal
    frontier = list(wanted)
    while frontier:
        for pred in graph.predecessors(frontier.pop()):
            if pred not in needed:
                needed.add(pred)
                frontier.append(pred)
    sub = graph.subgraph(needed)
    order = list(nx.lexicographical_topological_sort(sub, key=order_index.__getitem__))

    nodes: dict[str, PlanNode] = {}
    for nid in order:
        entry = wf.nodes[nid]
        spec = registry.get(entry.type)
        assert spec is not None  # validated above
        literals: dict[str, Any] = {}
        links: dict[str, tuple[str, str]] = {}
        for port, pspec in spec.inputs.items():
            if port in entry.inputs:
                value = entry.inputs[port]
                link = as_link(value)
                if link is not None:
                    links[port] = (link.from_, link.output)
                else:
                    literals[port] = pspec.validate_value(value)
            elif not pspec.required:
                literals[port] = pspec.default
        key_inputs: dict[str, Any] = {}
        for port, value in literals.items():
            key_inputs[port] = ["v", _jsonable(value)]
        for port, (src, out) in links.items():
            key_inputs[port] = ["l", nodes[src].key, out]
        material: dict[str, Any] = {"t": spec.type_id, "v": spec.version, "i": key_inputs}
        if spec.cls.volatile:
            fp = None
            if settings is not None and not links:
                try:
                    fp = spec.cls().fingerprint(dict(literals), settings)
                except Exception:  # noqa: BLE001 - no fingerprint means "always re-run", never a crash
                    fp = None
            material["f"] = fp if fp is not None else nonce
        if spec.output_node:
            material["o"] = output_dir
        key = hashlib.sha256(_canonical(material).encode()).hexdigest()
        nodes[nid] = PlanNode(nid, spec, literals, links, key)
    return Plan(workflow=wf, nodes=nodes, order=order, targets=wanted, graph=sub, run_nonce=nonce)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    return value
