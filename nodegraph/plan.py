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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from .config import Settings
from .errors import WorkflowInvalid
from .fingerprint import FingerprintContext
from .node import NodeSpec
from .registry import Registry
from .validation import Issue, analyse
from .workflow import Workflow

__all__ = ["Plan", "PlanNode", "cache_key", "make_plan", "needed_in_order"]


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
    folders: Mapping[str, Path] | None = None,
) -> Plan:
    """Validate and plan; raises :class:`WorkflowInvalid` listing every issue.

    ``output_dir`` is part of the keys of output nodes (so a batch writing to a new folder writes);
    ``run_nonce`` is part of the keys of volatile nodes without a fingerprint (so they re-run);
    ``folders`` are the folders literal file names are checked against (see :func:`analyse`).
    """
    wanted = list(targets) if targets is not None else None
    # Planning allocates many small objects that all stay alive; the cyclic GC would rescan them
    # again and again (cost growing with the graph). Nothing here makes cycles, so pause it.
    with _gc_paused():
        return _make_plan(source, registry, wanted, output_dir, run_nonce, settings, folders)


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
               run_nonce: str | None, settings: Settings | None, folders: Mapping[str, Path] | None) -> Plan:
    analysis, issues = analyse(source, registry, targets=wanted, folders=folders)
    if analysis is None or issues:
        raise WorkflowInvalid(issues or [Issue(code="invalid_workflow", message="not a workflow")])
    nonce = run_nonce if run_nonce is not None else uuid.uuid4().hex
    if wanted is None:
        wanted = [nid for nid, spec in analysis.specs.items() if spec.output_node]
    order = needed_in_order(analysis.graph, analysis.order, wanted)
    nodes: dict[str, PlanNode] = {}
    keys: dict[str, str] = {}
    for nid in order:
        spec, links = analysis.specs[nid], analysis.links[nid]
        literals = _with_defaults(spec, analysis.literals[nid], links)
        fingerprint = None
        if spec.cls.volatile:
            fingerprint = _fingerprint(spec, literals, settings)
            fingerprint = nonce if fingerprint is None else fingerprint
        keys[nid] = key = cache_key(spec, literals, links, keys, fingerprint=fingerprint,
                                    output_dir=output_dir if spec.output_node else None)
        nodes[nid] = PlanNode(nid, spec, literals, links, key)
    return Plan(workflow=analysis.workflow, nodes=nodes, order=order, targets=wanted, graph=analysis.graph,
                run_nonce=nonce)


def needed_in_order(graph: nx.DiGraph, order: list[str], targets: list[str]) -> list[str]:
    """The targets and all their ancestors, in ``order`` (the graph's topological order)."""
    needed = set(targets)  # one reverse traversal
    frontier = list(targets)
    while frontier:
        for pred in graph.predecessors(frontier.pop()):
            if pred not in needed:
                needed.add(pred)
                frontier.append(pred)
    return [n for n in order if n in needed]


def _with_defaults(spec: NodeSpec, literals: dict[str, Any], links: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The node's literal inputs with the defaults of the optional inputs that were left out."""
    literals = dict(literals)
    for port, pspec in spec.inputs.items():
        if port not in literals and not pspec.required and port not in links:
            literals[port] = pspec.default
    return literals


def _fingerprint(spec: NodeSpec, literals: dict[str, Any], settings: Settings | None) -> str | None:
    """A volatile node's fingerprint of its literal inputs (what arrives on links is already in the key,
    through the upstream keys); ``None`` when it has none, and the node then re-runs every time."""
    if settings is None:
        return None
    try:
        return spec.cls().fingerprint(dict(literals), FingerprintContext.from_settings(settings))
    except Exception:  # noqa: BLE001 - no fingerprint means "always re-run", never a crash
        return None


def cache_key(spec: NodeSpec, literals: Mapping[str, Any], links: Mapping[str, tuple[str, str]],
              upstream: Mapping[str, str], *, fingerprint: str | None = None, output_dir: str | None = None) -> str:
    """A node's Merkle key: sha256 over its type id, version, canonical literals and, per link, the key
    of the node it comes from (``upstream``: node id -> key) and the output's name. A volatile node
    adds its ``fingerprint`` (or the run's nonce), an output node the folder it writes to."""
    parts = [spec.type_id, str(spec.version)]
    for port in sorted(literals):
        parts.append(f"{port}={_encode(literals[port])}")
    for port in sorted(links):
        src, out = links[port]
        parts.append(f"{port}<{upstream[src]}.{out}")
    if fingerprint is not None:
        parts.append(f"!fingerprint={fingerprint}")
    if output_dir is not None:
        parts.append(f"!output_dir={output_dir}")
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
