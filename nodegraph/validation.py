"""Workflow validation: it collects every issue in one pass and keeps what planning needs.

Validation is pure apart from reading the folders it is given: a literal file name is checked
against its folder (it must stay inside it; a file a node reads must be there). Nothing here raises
on bad input: whatever JSON comes in, the answer is a list of :class:`Issue` (and, for a workflow,
the :class:`Analysis` planning reuses).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import ValidationError

from .errors import UnsafePath
from .issues import CODES, Issue, ValidationResult
from .node import NodeSpec, PortSpec
from .paths import list_files, safe_join
from .registry import Registry
from .types import WidgetKind, compatible
from .upgrade import is_current, read_source, resolve_type, upgrade_node
from .workflow import LinkRef, NodeEntry, Workflow, as_link

__all__ = ["CODES", "Analysis", "Issue", "ValidationResult", "Validator", "analyse", "check", "validate"]

Source = str | bytes | dict[str, Any] | Workflow
#: Folders whose files nodes read: a literal name in one of them must name a file that is there.
READ_FOLDERS = frozenset({"input"})


@dataclass
class Analysis:
    """What validation learned, reused by planning: specs, validated literals, links, the graph."""

    workflow: Workflow
    specs: dict[str, NodeSpec]
    literals: dict[str, dict[str, Any]]
    links: dict[str, dict[str, tuple[str, str]]]  # node -> port -> (source node, output)
    graph: nx.DiGraph
    order: list[str]  # every node, in a deterministic topological order


def analyse(source: Source, registry: Registry, *, targets: Iterable[str] | None = None,
            folders: Mapping[str, Path] | None = None) -> tuple[Analysis | None, list[Issue]]:
    """Validate, keeping what planning needs. ``None`` when the source is not a workflow at all.

    ``folders`` maps a file widget's folder (``input``, ``output``, ``temp``) to its path; literal
    file names are checked only against the folders given.
    """
    _, wf, issues = read_source(source)
    if wf is None:
        return None, issues
    validator = Validator(wf, registry, folders or {})
    validator.check_nodes()
    validator.check_cycles()
    validator.check_targets(None if targets is None else list(targets))
    return validator.analysis(), validator.issues


def check(source: Source, registry: Registry, *, targets: Iterable[str] | None = None,
          folders: Mapping[str, Path] | None = None) -> tuple[Workflow | None, list[Issue]]:
    """Validate and return the upgraded workflow with every issue found (``None``: not a workflow)."""
    analysis, issues = analyse(source, registry, targets=targets, folders=folders)
    return (analysis.workflow if analysis else None), issues


def validate(source: Source, registry: Registry, *, targets: Iterable[str] | None = None,
             folders: Mapping[str, Path] | None = None) -> ValidationResult:
    """Validate a workflow (JSON text, bytes, dict or :class:`Workflow`)."""
    _, issues = check(source, registry, targets=targets, folders=folders)
    return ValidationResult(valid=not issues, issues=issues)


@dataclass
class Validator:
    """The checks of one workflow, one method each; they add to ``issues`` and to what planning needs."""

    workflow: Workflow
    registry: Registry
    folders: Mapping[str, Path]
    issues: list[Issue] = field(default_factory=list)
    specs: dict[str, NodeSpec] = field(default_factory=dict)
    literals: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    upgraded: dict[str, NodeEntry] = field(default_factory=dict)
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    order: list[str] = field(default_factory=list)  # every node, topologically sorted (empty if cyclic)
    _types: dict[str, NodeSpec] = field(default_factory=dict)  # saved type id -> its node type (resolved once)

    def analysis(self) -> Analysis:
        wf = self.workflow
        if self.upgraded:
            wf = wf.model_copy(update={"nodes": {**wf.nodes, **self.upgraded}})
        return Analysis(wf, self.specs, self.literals, self.links, self.graph, self.order)

    def node_type(self, type_id: str) -> NodeSpec | None:
        """The node type a saved type id names (:func:`~nodegraph.upgrade.resolve_type`, once per id)."""
        spec = self._types.get(type_id)
        if spec is None:
            spec = resolve_type(self.registry, type_id)
            if spec is not None:
                self._types[type_id] = spec
        return spec

    # -- nodes -----------------------------------------------------------------------------------
    def check_nodes(self) -> None:
        """Every node: its type and version, then each of its inputs."""
        types = self._types
        for nid, entry in self.workflow.nodes.items():
            spec = types.get(entry.type)
            current = entry
            if spec is None or not is_current(entry, spec):
                result = upgrade_node(nid, entry, self.registry)
                if isinstance(result, Issue):
                    self.issues.append(result)
                    continue
                spec, current = result
                types[entry.type] = spec
                if current is not entry:
                    self.upgraded[nid] = current
            self.specs[nid] = spec
            self.literals[nid] = {}
            self.links[nid] = {}
            self.check_inputs(nid, spec, current.inputs)

    def check_inputs(self, nid: str, spec: NodeSpec, inputs: dict[str, Any]) -> None:
        for port, value in inputs.items():
            pspec = spec.inputs.get(port)
            if pspec is None:
                self.unknown_port(nid, spec, port)
                continue
            link = as_link(value)
            if link is not None:
                self.check_link(nid, pspec, link)
            elif pspec.type.link_only:
                self.check_literal_on_link_port(nid, pspec, value)
            else:
                self.check_literal(nid, pspec, value)
        for port, pspec in spec.inputs.items():
            if pspec.required and port not in inputs:
                need = (f"connect {_producers(self.registry, pspec.type.name)}" if pspec.link_only
                        else f"set it to {_describe(pspec)}")
                self.issues.append(Issue(code="missing_input", node=nid, port=port,
                                         message=f"{nid}.{port} ({spec.type_id}) is required but not given; {need}"))

    def unknown_port(self, nid: str, spec: NodeSpec, port: str) -> None:
        close = difflib.get_close_matches(port, list(spec.inputs), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"its inputs are: {', '.join(spec.inputs) or 'none'}"
        self.issues.append(Issue(code="unknown_port", node=nid, port=port,
                                 message=f"{nid}: {spec.type_id} has no input {port!r}; {hint}"))

    def check_link(self, nid: str, pspec: PortSpec, link: LinkRef) -> None:
        port = pspec.name
        src = self.workflow.nodes.get(link.from_)
        if src is None:
            self.issues.append(Issue(code="dangling_link", node=nid, port=port,
                                     message=f"{nid}.{port} is linked from node {link.from_!r}, which does not "
                                     "exist; link it to an existing node or remove the link"))
            return
        # Every link between existing nodes is an edge, so a cycle is reported whatever else is wrong.
        self.edges.append((link.from_, nid))
        src_spec = self._types.get(src.type) or self.node_type(src.type)
        if src_spec is None:
            return  # reported as unknown_node_type on the source node
        out = src_spec.outputs.get(link.output)
        if out is None:
            self.issues.append(Issue(code="dangling_link", node=nid, port=port,
                                     message=f"{nid}.{port} is linked from {link.from_}.{link.output}, but "
                                     f"{src.type} has no output {link.output!r}; its outputs are: "
                                     f"{', '.join(src_spec.outputs) or 'none'}"))
            return
        if not compatible(out.type.name, pspec.type.name):
            self.issues.append(Issue(code="type_mismatch", node=nid, port=port,
                                     message=f"{nid}.{port} expects {pspec.type.name} but {link.from_}."
                                     f"{link.output} is {out.type.name}; connect "
                                     f"{_producers(self.registry, pspec.type.name)}"))
            return
        self.links[nid][port] = (link.from_, link.output)

    def check_literal_on_link_port(self, nid: str, pspec: PortSpec, value: Any) -> None:
        if value is None and pspec.type.optional:
            self.literals[nid][pspec.name] = None
            return
        self.issues.append(Issue(code="type_mismatch", node=nid, port=pspec.name,
                                 message=f"{nid}.{pspec.name} expects a link of type {pspec.type.name} but a "
                                 f"literal value ({type(value).__name__}) was given; connect "
                                 f"{_producers(self.registry, pspec.type.name)} as "
                                 '{"from": NODE_ID, "output": OUTPUT_NAME}'))

    def check_literal(self, nid: str, pspec: PortSpec, value: Any) -> None:
        try:
            self.literals[nid][pspec.name] = value = pspec.validate_value(value)
        except ValidationError as exc:
            self.issues.append(Issue(code="invalid_value", node=nid, port=pspec.name,
                                     message=f"{nid}.{pspec.name} = {_short(value)}: {_first_error(exc)}; "
                                     f"expected {_describe(pspec)}"))
            return
        widget = pspec.type.widget
        if widget is not None and widget.kind == "file" and isinstance(value, str):
            self.check_file(nid, pspec.name, widget, value)

    def check_file(self, nid: str, port: str, widget: WidgetKind, name: str) -> None:
        """A literal file name stays inside its folder; in a folder nodes read from, the file is there."""
        folder = widget.folder or ""
        base = self.folders.get(folder)
        if base is None:
            return
        try:
            path = safe_join(base, name, hidden=False)
        except UnsafePath as exc:
            self.issues.append(Issue(code="unsafe_path", node=nid, port=port,
                                     message=f"{nid}.{port}: {exc}; give a file name inside the {folder} folder"))
            return
        if folder in READ_FOLDERS and not path.is_file():
            self.issues.append(Issue(code="file_not_found", node=nid, port=port,
                                     message=f"{nid}.{port}: {_missing_file(name, folder, base, widget.extensions)}"))

    # -- the whole graph -------------------------------------------------------------------------
    def check_cycles(self) -> None:
        """Build the graph of the links and its topological order (planning reuses both); report every
        cycle in it."""
        graph = self.graph
        graph.add_nodes_from(self.workflow.nodes)
        graph.add_edges_from(self.edges)
        try:
            # networkx's sort is deterministic for a given insertion (= workflow) order.
            self.order = list(nx.topological_sort(graph))
            return
        except nx.NetworkXUnfeasible:
            self.order = []
        loops = {a for a, b in self.edges if a == b}
        for component in nx.strongly_connected_components(graph):
            if len(component) > 1 or not loops.isdisjoint(component):
                order = list(self.workflow.nodes)
                members = sorted(component, key=order.index) if len(component) < 50 else sorted(component)
                self.issues.append(Issue(code="cycle", node=members[0],
                                         message=f"these nodes form a cycle: {' → '.join(members)}; a workflow must "
                                         "be acyclic, remove one of the links between them"))

    def check_targets(self, targets: list[str] | None) -> None:
        """The nodes asked for exist; without targets, there is an output node to run."""
        nodes = self.workflow.nodes
        if targets is not None:
            for t in targets:
                if t not in nodes:
                    self.issues.append(Issue(code="unknown_target", node=t,
                                             message=f"asked to run node {t!r}, which is not in the workflow"))
            if not targets:
                self.issues.append(Issue(code="no_outputs", message="no nodes were asked for"))
        elif not any(s is not None and s.output_node for s in map(self.node_type, {e.type for e in nodes.values()})):
            if not any(i.code == "unknown_node_type" for i in self.issues):
                self.issues.append(Issue(code="no_outputs", message="the workflow has no output node, so a run "
                                         "would do nothing; add one (e.g. core.save_image or core.preview_image)"))


# --- messages ------------------------------------------------------------------------------------


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
    return str(errs[0].get("msg", "invalid value"))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(pspec: PortSpec) -> str:
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


def _missing_file(name: str, folder: str, base: Path, extensions: tuple[str, ...], shown: int = 20) -> str:
    """'there is no file ... in the input folder (...); did you mean ...? files there: ...' (subfolders too)."""
    names = list_files(base, extensions)
    text = f"there is no file {name!r} in the {folder} folder ({base})"
    if not names:
        return text + f"; the folder has no {'such ' if extensions else ''}files: put one there (or upload one)"
    base_name = name.rsplit("/", 1)[-1]
    close = [n for n in names if n.rsplit("/", 1)[-1] == base_name] or difflib.get_close_matches(name, names, n=1)
    if close:
        text += f"; did you mean {close[0]!r}?"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return text + f"; files there: {', '.join(names[:shown])}{more}"
