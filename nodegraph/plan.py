"""Planning: a validated workflow → the nodes a run needs, in order, each with its cache key.

The cache key is a Merkle key: sha256 over a canonical encoding of the node's type id, version,
validated literal inputs and, for each link, the upstream node's key and output name. Node ids are
not part of it, so an identical subgraph in another workflow has the same keys. A plan is plain
data, so a different executor (a cluster backend) can run the same plan.
"""

from __future__ import annotations

import enum
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from hashlib import sha256 as _sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import WorkflowInvalid, exit_call, stray_exit
from .fingerprint import FingerprintContext
from .heap import gc_paused
from .node import NodeSpec
from .registry import Registry
from .validation import Issue, analyse, with_defaults
from .workflow import Workflow, WorkflowData, WorkflowSnapshot, as_model

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Plan", "PlanNode", "cache_key", "make_plan", "needed_in_order", "rekeyed"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
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


@dataclass(init=False)
class Plan:
    """What a run executes: the needed nodes, a deterministic order, and the targets.

    ``source`` is the validated workflow as validation read it (a :class:`Workflow`, or
    :class:`WorkflowData` over the dict given); ``snapshot``, when given, is that dict's content
    as planned, which :attr:`workflow` is built from (the dict's owner may change it later).
    ``Plan(workflow=model, ...)`` is accepted for ``source``.
    """

    source: Workflow | WorkflowData
    nodes: dict[str, PlanNode]
    order: list[str]  # topological, deterministic (workflow order breaks ties)
    targets: list[str]
    run_nonce: str = ""
    snapshot: WorkflowSnapshot | None = field(default=None, repr=False, compare=False)
    _consumers: dict[str, int] | None = field(default=None, repr=False, compare=False)
    _lazy: bool | None = field(default=None, repr=False, compare=False)
    _model: Workflow | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(self, source: Workflow | WorkflowData | None = None, nodes: dict[str, PlanNode] | None = None,
                 order: list[str] | None = None, targets: list[str] | None = None, run_nonce: str = "",
                 snapshot: WorkflowSnapshot | None = None, _consumers: dict[str, int] | None = None,
                 _lazy: bool | None = None, *, workflow: Workflow | None = None) -> None:
        if workflow is not None:
            if source is not None and source is not workflow:
                raise TypeError("Plan takes the validated workflow once: as source= or as workflow=, not both")
            source = workflow
        missing = [name for name, value in (("source", source), ("nodes", nodes), ("order", order),
                                            ("targets", targets)) if value is None]
        if missing:
            raise TypeError(f"Plan() is missing {', '.join(missing)}: pass source= (the validated Workflow, or "
                            "workflow=), nodes= (id -> PlanNode), order= (node ids, topological) and targets=; "
                            "make_plan(workflow, registry) builds all of them")
        self.source = source  # type: ignore[assignment]
        self.nodes = nodes  # type: ignore[assignment]
        self.order = order  # type: ignore[assignment]
        self.targets = targets  # type: ignore[assignment]
        self.run_nonce = run_nonce
        self.snapshot = snapshot
        self._consumers = _consumers
        self._lazy = _lazy
        self._model = source if isinstance(source, Workflow) and snapshot is None else None

    @property
    def workflow(self) -> Workflow:
        """The workflow (upgraded) as a model, built on first use: a run needs it only when a node
        reads its workflow (output nodes embed it in the files they write)."""
        if self._model is None:
            self._model = as_model(self.snapshot if self.snapshot is not None else self.source)
        return self._model

    @property
    def graph(self) -> nx.DiGraph:
        """The plan's nodes and links as a networkx graph (built on each access)."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(self.order)
        graph.add_edges_from((src, nid) for nid in self.order for src, _ in self.nodes[nid].links.values())
        return graph

    def keys(self) -> dict[str, str]:
        return {nid: n.key for nid, n in self.nodes.items()}

    def consumers(self) -> dict[str, int]:
        """How many links of the plan read each node (a node no link reads is absent). Computed once
        per plan and shared by its copies: do not modify it."""
        if self._consumers is None:
            counts: dict[str, int] = {}
            for pn in self.nodes.values():
                for src, _ in pn.links.values():
                    counts[src] = counts.get(src, 0) + 1
            self._consumers = counts
        return self._consumers

    def lazy_links(self) -> bool:
        """Whether a node of the plan has a linked lazy input (its source runs only if the node asks).
        Computed once per plan and shared by its copies."""
        if self._lazy is None:
            self._lazy = any(pn.spec.lazy_ports and not pn.spec.lazy_ports.isdisjoint(pn.links)
                             for pn in self.nodes.values())
        return self._lazy


_TAGS = {str: "s", int: "i", float: "f", bool: "b", type(None): "N"}  # scalar type -> its tag


def _encode(value: Any) -> str:
    """Canonical text of a validated literal (type-tagged, so 1 and 1.0 and "1" differ)."""
    tag = _TAGS.get(type(value))
    if tag is None and isinstance(value, enum.Enum):
        value = value.value
        tag = _TAGS.get(type(value))
    if tag is not None:
        return f"{tag}{value!r}"
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
    snapshot: bytes | None = None,
) -> Plan:
    """Validate and plan; raises :class:`WorkflowInvalid` listing every issue.

    ``output_dir`` is part of the keys of output nodes (so a batch writing to a new folder writes);
    ``run_nonce`` is part of the keys of volatile nodes without a fingerprint (so they re-run);
    ``folders`` are the folders literal file names are checked against (see :func:`analyse`); with
    ``settings``, the nodes' own checks run (:meth:`~nodegraph.Node.check`) and volatile nodes get
    their fingerprints. ``snapshot`` is the pickle of the workflow dict given (``source``'s content
    now): :attr:`Plan.workflow` is built from it, not from the dict, which its owner may change.
    """
    wanted = list(targets) if targets is not None else None
    # Planning allocates many small objects that all stay alive; the cyclic GC would rescan them
    # again and again (cost growing with the graph). Nothing here makes cycles, so pause it.
    with gc_paused():
        return _make_plan(source, registry, wanted, output_dir, run_nonce, settings, folders, snapshot)


def _make_plan(source: Any, registry: Registry, wanted: list[str] | None, output_dir: str,
               run_nonce: str | None, settings: Settings | None, folders: Mapping[str, Path] | None,
               snapshot: bytes | None) -> Plan:
    files = FingerprintContext.from_settings(settings) if settings is not None else None
    analysis, issues = analyse(source, registry, targets=wanted, folders=folders, files=files,
                               max_node_bytes=settings.max_node_bytes if settings is not None else None)
    if analysis is None or issues:
        raise WorkflowInvalid(issues or [Issue(code="invalid_workflow", message="not a workflow")])
    nonce = run_nonce if run_nonce is not None else uuid.uuid4().hex
    specs, all_links, all_literals = analysis.specs, analysis.links, analysis.literals
    if wanted is None:
        wanted = [nid for nid, spec in specs.items() if spec.cls.output_node]
    order, consumers = _needed(all_links, analysis.order, wanted)
    nodes: dict[str, PlanNode] = {}
    for nid in order:
        spec, links, literals = specs[nid], all_links[nid], all_literals[nid]
        if len(literals) + len(links) != len(spec.inputs):  # an optional input left out: its default
            literals = with_defaults(spec, literals, links)
        nodes[nid] = PlanNode(nid, spec, literals, links)
    _set_keys(nodes.values(), output_dir, nonce, files)
    return Plan(source=analysis.source, nodes=nodes, order=order, targets=wanted, run_nonce=nonce,
                snapshot=None if snapshot is None else WorkflowSnapshot(snapshot, analysis.upgraded),
                _consumers=consumers)


def rekeyed(plan: Plan, *, output_dir: str = "", run_nonce: str | None = None,
            settings: Settings | None = None) -> Plan:
    """The same plan for another run: new keys for its volatile nodes (a fresh fingerprint, or the
    new ``run_nonce``) and for everything downstream of them; other nodes are shared with ``plan``."""
    nonce = run_nonce if run_nonce is not None else uuid.uuid4().hex
    nodes = {nid: PlanNode(pn.id, pn.spec, pn.literals, pn.links) for nid, pn in plan.nodes.items()}
    files = FingerprintContext.from_settings(settings) if settings is not None else None
    with gc_paused():
        _set_keys((nodes[nid] for nid in plan.order), output_dir, nonce, files)
    for nid, pn in nodes.items():
        if pn.key == plan.nodes[nid].key:
            nodes[nid] = plan.nodes[nid]
    return replace(plan, nodes=nodes, run_nonce=nonce)


def _set_keys(nodes: Iterable[PlanNode], output_dir: str, nonce: str, files: FingerprintContext | None) -> None:
    """Compute each node's key, in topological order (a node's key needs its sources' keys)."""
    keys: dict[str, str] = {}
    kinds: dict[str, tuple[str, bool, str | None]] = {}  # type id -> key prefix, volatile, output dir
    key = _key
    for pn in nodes:
        spec = pn.spec
        kind = kinds.get(spec.type_id)
        if kind is None:  # once per node type
            kind = kinds[spec.type_id] = (_prefix(spec), spec.cls.volatile, output_dir if spec.cls.output_node else None)
        prefix, volatile, out = kind
        fingerprint = None
        if volatile:
            fingerprint = _fingerprint(spec, pn.literals, files)
            fingerprint = nonce if fingerprint is None else fingerprint
        keys[pn.id] = pn.key = key(prefix, pn.literals, pn.links, keys, fingerprint, out)


def needed_in_order(links: Mapping[str, Mapping[str, tuple[str, str]]], order: list[str],
                    targets: list[str]) -> list[str]:
    """The targets and all their ancestors through ``links`` (node -> port -> (source, output)), in
    ``order`` (a topological order)."""
    return _needed(links, order, targets)[0]


def _needed(links: Mapping[str, Mapping[str, tuple[str, str]]], order: list[str],
            targets: list[str]) -> tuple[list[str], dict[str, int]]:
    """:func:`needed_in_order`, and how many links of the needed nodes read each node
    (:meth:`Plan.consumers`), counted on the way."""
    needed = set(targets)  # one reverse traversal
    frontier = list(needed)  # each node's links are read once: the counts are right
    consumers: dict[str, int] = {}
    get = consumers.get
    while frontier:
        for pred, _ in links[frontier.pop()].values():
            consumers[pred] = get(pred, 0) + 1
            if pred not in needed:
                needed.add(pred)
                frontier.append(pred)
    if len(needed) == len(order):  # every node is needed (the usual workflow): the order as it is
        return list(order), consumers
    return [n for n in order if n in needed], consumers


def _fingerprint(spec: NodeSpec, literals: dict[str, Any], files: FingerprintContext | None) -> str | None:
    """A volatile node's fingerprint of its literal inputs (what arrives on links is already in the key,
    through the upstream keys); ``None`` when it has none, and the node then re-runs every time."""
    if files is None:
        return None
    try:
        return spec.cls().fingerprint(dict(literals), files)
    except Exception:  # noqa: BLE001 - no fingerprint means "always re-run", never a crash
        return None
    except (SystemExit, KeyboardInterrupt) as exc:  # nor does an exit end the CLI or the server
        if not stray_exit(exc):
            raise
        log.warning("the fingerprint of %s %s; the node re-runs every time: a fingerprint returns "
                    "None (or raises), never exits the process", spec.type_id, exit_call(exc))
        return None


def cache_key(spec: NodeSpec, literals: Mapping[str, Any], links: Mapping[str, tuple[str, str]],
              upstream: Mapping[str, str], *, fingerprint: str | None = None, output_dir: str | None = None) -> str:
    """A node's Merkle key: sha256 over its type id, version, canonical literals and, per link, the key
    of the node it comes from (``upstream``: node id -> key) and the output's name. A volatile node
    adds its ``fingerprint`` (or the run's nonce), an output node the folder it writes to."""
    return _key(_prefix(spec), literals, links, upstream, fingerprint, output_dir)


def _prefix(spec: NodeSpec) -> str:
    return f"{spec.type_id}\x1f{spec.version}"


def _key(prefix: str, literals: Mapping[str, Any], links: Mapping[str, tuple[str, str]], upstream: Mapping[str, str],
         fingerprint: str | None, output_dir: str | None) -> str:
    parts = [prefix]
    tags = _TAGS
    for port in sorted(literals) if len(literals) > 1 else literals:  # every node of every plan: scalars inline
        value = literals[port]
        tag = tags.get(type(value))
        parts.append(f"{port}={tag}{value!r}" if tag is not None else f"{port}={_encode(value)}")
    for port in sorted(links) if len(links) > 1 else links:
        src, out = links[port]
        parts.append(f"{port}<{upstream[src]}.{out}")
    if fingerprint is not None:
        parts.append(f"!fingerprint={fingerprint}")
    if output_dir is not None:
        parts.append(f"!output_dir={output_dir}")
    return _sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
