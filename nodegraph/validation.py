"""Workflow validation: pure, and it collects every issue in one pass.

Each :class:`Issue` has a ``code``, the ``node`` and ``port`` it concerns, and a message saying what
was expected, what was found, and how to fix it. Nothing here raises on bad input: whatever JSON
comes in, the answer is a :class:`ValidationResult`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from .node import NodeSpec
from .registry import Registry
from .types import compatible
from .workflow import NodeEntry, Workflow, WorkflowFormatError, as_link, parse_source

__all__ = ["CODES", "Analysis", "Issue", "ValidationResult", "analyse", "check", "validate"]

CODES = (
    "invalid_json",
    "unsupported_format",
    "invalid_workflow",
    "unknown_node_type",
    "version_mismatch",
    "unknown_port",
    "missing_input",
    "type_mismatch",
    "invalid_value",
    "dangling_link",
    "cycle",
    "no_outputs",
    "unknown_target",
)


class Issue(BaseModel):
    """One problem in a workflow."""

    code: str
    node: str | None = None
    port: str | None = None
    message: str


class ValidationResult(BaseModel):
    """``valid`` is true when there are no issues."""

    valid: bool
    issues: list[Issue]

    def codes(self) -> set[str]:
        return {i.code for i in self.issues}


def _loc_issue(err: dict[str, Any]) -> Issue:
    loc = [str(p) for p in err.get("loc", ())]
    node = loc[1] if len(loc) >= 2 and loc[0] == "nodes" else None
    field = ".".join(loc) or "(top level)"
    return Issue(code="invalid_workflow", node=node, port=None,
                 message=f"{field}: {err.get('msg', 'invalid')}; "
                 "each node needs a string 'type' and an object 'inputs'")


def _producers(registry: Registry, type_name: str, limit: int = 3) -> str:
    """'the `x` output of a pack.node node' hints for a wanted type."""
    hits = []
    for spec in registry.specs():
        for out in spec.outputs.values():
            if out.type.name == type_name:
                hits.append(f"the `{out.name}` output of a {spec.type_id} node")
                break
        if len(hits) >= limit:
            break
    return " or ".join(hits) if hits else f"an output of type {type_name}"


def _first_error(exc: ValidationError) -> str:
    errs = exc.errors()
    if not errs:
        return str(exc)
    err = errs[0]
    return str(err.get("msg", "invalid value"))


def _check_node(nid: str, spec: NodeSpec, inputs: dict[str, Any], wf: Workflow, registry: Registry,
                issues: list[Issue], edges: list[tuple[str, str]], literals: dict[str, Any],
                links: dict[str, tuple[str, str]]) -> None:
    for port, value in inputs.items():
        pspec = spec.inputs.get(port)
        if pspec is None:
            close = difflib.get_close_matches(port, list(spec.inputs), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"its inputs are: {', '.join(spec.inputs) or 'none'}"
            issues.append(Issue(code="unknown_port", node=nid, port=port,
                                message=f"{nid}: {spec.type_id} has no input {port!r}; {hint}"))
            continue
        link = as_link(value)
        if link is not None:
            src = wf.nodes.get(link.from_)
            if src is None:
                issues.append(Issue(code="dangling_link", node=nid, port=port,
                                    message=f"{nid}.{port} is linked from node {link.from_!r}, which does not "
                                    "exist; link it to an existing node or remove the link"))
                continue
            src_spec = registry.get(src.type)
            if src_spec is None:
                continue  # reported as unknown_node_type on the source node
            out = src_spec.outputs.get(link.output)
            if out is None:
                issues.append(Issue(code="dangling_link", node=nid, port=port,
                                    message=f"{nid}.{port} is linked from {link.from_}.{link.output}, but "
                                    f"{src.type} has no output {link.output!r}; its outputs are: "
                                    f"{', '.join(src_spec.outputs) or 'none'}"))
                continue
            if not compatible(out.type.name, pspec.type.name):
                issues.append(Issue(code="type_mismatch", node=nid, port=port,
                                    message=f"{nid}.{port} expects {pspec.type.name} but {link.from_}."
                                    f"{link.output} is {out.type.name}; connect "
                                    f"{_producers(registry, pspec.type.name)}"))
                continue
            edges.append((link.from_, nid))
            links[port] = (link.from_, link.output)
        elif pspec.link_only:
            if value is None and pspec.type.optional:
                literals[port] = None
                continue
            issues.append(Issue(code="type_mismatch", node=nid, port=port,
                                message=f"{nid}.{port} expects a link of type {pspec.type.name} but a literal "
                                f"value ({type(value).__name__}) was given; connect "
                                f"{_producers(registry, pspec.type.name)} as "
                                '{"from": NODE_ID, "output": OUTPUT_NAME}'))
        else:
            try:
                literals[port] = pspec.validate_value(value)
            except ValidationError as exc:
                issues.append(Issue(code="invalid_value", node=nid, port=port,
                                    message=f"{nid}.{port} = {_short(value)}: {_first_error(exc)}; "
                                    f"expected {_describe(pspec)}"))
    for port, pspec in spec.inputs.items():
        if pspec.required and port not in inputs:
            need = (f"connect {_producers(registry, pspec.type.name)}" if pspec.link_only
                    else f"set it to {_describe(pspec)}")
            issues.append(Issue(code="missing_input", node=nid, port=port,
                                message=f"{nid}.{port} ({spec.type_id}) is required but not given; {need}"))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(pspec: Any) -> str:
    t = pspec.type
    if t.choices:
        return "one of " + ", ".join(repr(c) for c in t.choices)
    meta = getattr(pspec.annotation, "__metadata__", ())
    bounds = []
    for m in meta:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"),
                          ("min_length", "length >="), ("max_length", "length <=")):
            if hasattr(m, attr):
                bounds.append(f"{sym} {getattr(m, attr)}")
    kind = {"INT": "an integer", "FLOAT": "a number", "STRING": "a string", "BOOLEAN": "true or false",
            "SEED": "an integer seed", "JSON": "a JSON value"}.get(t.name, t.name)
    return kind + (" " + ", ".join(bounds) if bounds else "")


@dataclass
class Analysis:
    """What validation learned, reused by planning: specs, validated literals, links, the graph."""

    workflow: Workflow
    specs: dict[str, NodeSpec]
    literals: dict[str, dict[str, Any]]
    links: dict[str, dict[str, tuple[str, str]]]  # node -> port -> (source node, output)
    graph: nx.DiGraph


def check(
    source: str | bytes | dict[str, Any] | Workflow,
    registry: Registry,
    *,
    targets: Iterable[str] | None = None,
) -> tuple[Workflow | None, list[Issue]]:
    """Validate and return the (node-migrated) workflow with every issue found.

    The workflow is ``None`` when the source is not a workflow at all.
    """
    analysis, issues = analyse(source, registry, targets=targets)
    return (analysis.workflow if analysis else None), issues


def analyse(
    source: str | bytes | dict[str, Any] | Workflow,
    registry: Registry,
    *,
    targets: Iterable[str] | None = None,
) -> tuple[Analysis | None, list[Issue]]:
    """Validate, keeping what planning needs. ``None`` when the source is not a workflow at all."""
    if isinstance(source, Workflow):
        wf = source
    else:
        try:
            data = parse_source(source)
        except WorkflowFormatError as exc:
            return None, [Issue(code=exc.code, message=exc.message)]
        try:
            wf = Workflow.model_validate(data)
        except ValidationError as exc:
            return None, [_loc_issue(e) for e in exc.errors()[:50]]

    issues: list[Issue] = []
    edges: list[tuple[str, str]] = []
    upgraded: dict[str, NodeEntry] = {}
    specs: dict[str, NodeSpec] = {}
    all_literals: dict[str, dict[str, Any]] = {}
    all_links: dict[str, dict[str, tuple[str, str]]] = {}
    for nid, entry in wf.nodes.items():
        spec = registry.get(entry.type)
        if spec is None:
            close = registry.suggest(entry.type)
            hint = (f"did you mean {', '.join(close)}?" if close else
                    "install or enable the pack that provides it (see `nodegraph nodes` for failed packs)")
            issues.append(Issue(code="unknown_node_type", node=nid,
                                message=f"{nid}: unknown node type {entry.type!r}; {hint}"))
            continue
        inputs = entry.inputs
        if entry.version is not None and entry.version != spec.version:
            migrated = None
            if entry.version < spec.version:
                try:
                    migrated = spec.cls.migrate(entry.version, dict(inputs))
                except Exception:  # noqa: BLE001 - a failing migration is reported, not raised
                    migrated = None
            if migrated is None:
                issues.append(Issue(code="version_mismatch", node=nid,
                                    message=f"{nid}: the workflow was saved with {entry.type} version "
                                    f"{entry.version}, this install has version {spec.version} and cannot "
                                    "upgrade it; re-create the node, or install the pack version the workflow "
                                    "was made with"))
                continue
            inputs = migrated
            upgraded[nid] = entry.model_copy(update={"inputs": migrated, "version": spec.version})
        if entry.type != spec.type_id:  # an old type id (a pack's alias): the workflow gets the current one
            upgraded[nid] = upgraded.get(nid, entry).model_copy(update={"type": spec.type_id})
        specs[nid] = spec
        literals = all_literals[nid] = {}
        links = all_links[nid] = {}
        _check_node(nid, spec, inputs, wf, registry, issues, edges, literals, links)

    graph = nx.DiGraph()
    graph.add_nodes_from(wf.nodes)
    graph.add_edges_from(edges)
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1 or any(graph.has_edge(n, n) for n in component):
            members = sorted(component, key=list(wf.nodes).index) if len(component) < 50 else sorted(component)
            issues.append(Issue(code="cycle", node=members[0],
                                message=f"these nodes form a cycle: {' → '.join(members)}; a workflow must be "
                                "acyclic, remove one of the links between them"))

    wanted = list(targets) if targets is not None else None
    if wanted is not None:
        for t in wanted:
            if t not in wf.nodes:
                issues.append(Issue(code="unknown_target", node=t,
                                    message=f"asked to run node {t!r}, which is not in the workflow"))
        if not wanted:
            issues.append(Issue(code="no_outputs", message="no nodes were asked for"))
    elif not any((s := registry.get(e.type)) is not None and s.output_node for e in wf.nodes.values()):
        if not any(i.code == "unknown_node_type" for i in issues):
            issues.append(Issue(code="no_outputs", message="the workflow has no output node, so a run would "
                                "do nothing; add one (e.g. core.save_image or core.preview_image)"))

    if upgraded:
        wf = wf.model_copy(update={"nodes": {**wf.nodes, **upgraded}})
    return Analysis(wf, specs, all_literals, all_links, graph), issues


def validate(
    source: str | bytes | dict[str, Any] | Workflow,
    registry: Registry,
    *,
    targets: Iterable[str] | None = None,
) -> ValidationResult:
    """Validate a workflow (JSON text, bytes, dict or :class:`Workflow`)."""
    _, issues = check(source, registry, targets=targets)
    return ValidationResult(valid=not issues, issues=issues)
