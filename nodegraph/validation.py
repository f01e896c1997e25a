"""Workflow validation: it collects every issue in one pass and keeps what planning needs.

Validation is pure apart from reading the folders it is given: a literal file name is checked
against its folder (it must stay inside it; a file a node reads must be there), and, given the model
folders too, each node's own check reads the files it names (:meth:`Node.check`). Nothing here
raises on bad input: whatever JSON comes in, the answer is a list of :class:`Issue` (and, for a
workflow, the :class:`Analysis` planning reuses).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .checking import CheckContext, Upstream
from .errors import UnsafePath, exit_call, stray_exit
from .fingerprint import FingerprintContext
from .heap import gc_paused
from .issues import CODES, Issue, ValidationResult, close_matches, close_names
from .modes import resolve_modes
from .node import Node, NodeSpec, PortSpec
from .paths import list_files, safe_join
from .registry import Registry
from .types import WidgetKind, compatible
from .upgrade import read_nodes, resolve_type, upgrade_node
from .workflow import LinkRef, NodeEntry, Workflow, WorkflowData, as_model

if TYPE_CHECKING:  # imported where the graph is built: `nodegraph nodes` and the server start without it
    import networkx as nx

    from .config import Settings

__all__ = ["CODES", "Analysis", "Issue", "ValidationResult", "Validator", "analyse", "check", "validate",
           "validate_for", "with_defaults"]

log = logging.getLogger(__name__)

Source = str | bytes | dict[str, Any] | Workflow
#: Folders whose files nodes read: a literal name in one of them must name a file that is there.
READ_FOLDERS = frozenset({"input"})
_NONE: Mapping[str, str] = {}


@dataclass
class Analysis:
    """What validation learned, reused by planning: specs, validated literals, links, the order."""

    source: Workflow | WorkflowData  # the workflow, upgraded; a model only if one was given
    specs: dict[str, NodeSpec]
    literals: dict[str, dict[str, Any]]
    links: dict[str, dict[str, tuple[str, str]]]  # node -> port -> (source node, output)
    edges: list[tuple[str, str]]  # (source, node) per link between existing nodes
    order: list[str]  # every node, in a deterministic topological order (see Validator.check_cycles)
    upgraded: dict[str, NodeEntry] = field(default_factory=dict)  # node -> its entry as this install reads it

    @cached_property
    def workflow(self) -> Workflow:
        """The upgraded workflow as a model, built on first use (validation alone never needs it)."""
        return as_model(self.source)

    @property
    def graph(self) -> nx.DiGraph:
        """The workflow's nodes and links as a networkx graph (built on each access)."""
        return _digraph(self.source.nodes, self.edges)


def analyse(source: Source, registry: Registry, *, targets: Iterable[str] | None = None,
            folders: Mapping[str, Path] | None = None,
            max_node_bytes: int | None = None,
            files: FingerprintContext | None = None) -> tuple[Analysis | None, list[Issue]]:
    """Validate, keeping what planning needs. ``None`` when the source is not a workflow at all.

    ``folders`` maps a file widget's folder (``input``, ``output``, ``temp``) to its path; literal
    file names are checked only against the folders given. ``max_node_bytes`` bounds what the
    outputs with a declared ``shape`` may take, judged from the literal inputs (``None``: no bound).
    ``files`` (the model folders and the rules nodes find files by) runs the nodes' own checks
    (:meth:`Node.check`) too.
    """
    with gc_paused():  # many small objects that all stay alive, and no reference cycles
        wf, issues = read_nodes(source)
        if wf is None:
            return None, issues
        validator = Validator(wf, registry, folders or {}, max_node_bytes, files)
        validator.check_nodes()
        validator.check_cycles()
        validator.check_targets(None if targets is None else list(targets))
        validator.check_own()
        return validator.analysis(), validator.issues


def check(source: Source, registry: Registry, *, targets: Iterable[str] | None = None,
          folders: Mapping[str, Path] | None = None,
          max_node_bytes: int | None = None,
          files: FingerprintContext | None = None) -> tuple[Workflow | None, list[Issue]]:
    """Validate and return the upgraded workflow with every issue found (``None``: not a workflow)."""
    analysis, issues = analyse(source, registry, targets=targets, folders=folders, max_node_bytes=max_node_bytes,
                               files=files)
    return (analysis.workflow if analysis else None), issues


def validate(source: Source, registry: Registry, *, targets: Iterable[str] | None = None,
             folders: Mapping[str, Path] | None = None, max_node_bytes: int | None = None,
             files: FingerprintContext | None = None) -> ValidationResult:
    """Validate a workflow (JSON text, bytes, dict or :class:`Workflow`)."""
    _, issues = analyse(source, registry, targets=targets, folders=folders, max_node_bytes=max_node_bytes,
                        files=files)
    return ValidationResult(valid=not issues, issues=issues)


def validate_for(source: Source, registry: Registry, settings: Settings, *,
                 targets: Iterable[str] | None = None) -> ValidationResult:
    """Every issue, file names included (checked against the settings' folders), and the nodes' own
    checks of the files they name (the model folders): what ``Engine.validate`` and ``nodegraph
    validate`` report."""
    return validate(source, registry, targets=targets, folders=settings.folders(),
                    max_node_bytes=settings.max_node_bytes, files=FingerprintContext.from_settings(settings))


def with_defaults(spec: NodeSpec, literals: dict[str, Any], links: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The node's literal inputs with the defaults of the optional inputs that were left out (not
    linked): ``literals`` itself when every input is given, else a new dict."""
    if len(literals) + len(links) == len(spec.inputs):  # every input given (ports are never both)
        return literals
    literals = dict(literals)
    for port, pspec in spec.inputs.items():
        if port not in literals and not pspec.required and port not in links:
            literals[port] = pspec.default
    return literals


@dataclass
class Validator:
    """The checks of one workflow, one method each; they add to ``issues`` and to what planning needs."""

    workflow: Workflow | WorkflowData
    registry: Registry
    folders: Mapping[str, Path]
    max_node_bytes: int | None = None
    files: FingerprintContext | None = None  # given: the nodes' own checks run
    issues: list[Issue] = field(default_factory=list)
    specs: dict[str, NodeSpec] = field(default_factory=dict)
    literals: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    upgraded: dict[str, NodeEntry] = field(default_factory=dict)
    inactive: dict[str, str] = field(default_factory=dict)  # muted, bypassed, or needing a muted node: why
    order: list[str] = field(default_factory=list)  # every node, topologically sorted (empty if cyclic)
    targets: list[str] | None = None  # the nodes asked for (None: the output nodes), once checked
    _types: dict[str, NodeSpec] = field(default_factory=dict)  # saved type id -> its node type (resolved once)
    _known: dict[str, NodeSpec] = field(default_factory=dict)  # node -> its type, for the nodes whose type is known
    # Every link seen so far comes from a node checked before the one it goes into (check_inputs
    # walks the nodes in the workflow's order): then the workflow's order is topological.
    _sorted: bool = True

    def analysis(self) -> Analysis:
        wf = self.workflow
        if self.upgraded:
            if isinstance(wf, Workflow):
                wf = wf.model_copy(update={"nodes": {**wf.nodes, **self.upgraded}})
            else:
                wf = WorkflowData(wf.data, {**wf.nodes, **self.upgraded}, self.upgraded)
        return Analysis(wf, self.specs, self.literals, self.links, self.edges, self.order, self.upgraded)

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
        """Every node: its type and version, then (modes applied) each input of the nodes that run."""
        types = self._types
        known: dict[str, NodeSpec] = {}
        moded = False
        for nid, entry in self.workflow.nodes.items():
            if entry.mode is not None:
                moded = True
            spec = types.get(entry.type)
            # is_current, inlined: this loop runs for every node
            if spec is None or entry.type != spec.type_id or (entry.version is not None
                                                              and entry.version != spec.version):
                result = upgrade_node(nid, entry, self.registry)
                if isinstance(result, Issue):
                    if entry.mode != "mute":  # a muted node is left out: its type need not exist here
                        self.issues.append(result)
                    continue
                spec, current = result
                types[entry.type] = spec
                if current is not entry:
                    self.upgraded[nid] = current
            known[nid] = spec
        nodes = {**self.workflow.nodes, **self.upgraded} if self.upgraded else self.workflow.nodes
        rerouted: Mapping[str, dict[str, Any]] = _NONE
        ports: Mapping[str, Mapping[str, str]] = _NONE
        if moded:  # no node has a mode: nothing to resolve
            modes = resolve_modes(nodes, known)
            self.issues.extend(modes.issues)
            self.inactive = modes.inactive
            rerouted, ports = modes.inputs, modes.ports
        inactive = self.inactive
        sized = self.max_node_bytes is not None
        check_inputs = self.check_inputs
        self._known = known
        if not inactive:
            self.specs = known
        for nid, spec in known.items():
            if inactive:
                if nid in inactive:
                    continue
                self.specs[nid] = spec
            inputs = rerouted.get(nid) if moded else None
            if inputs is None:
                inputs = nodes[nid].inputs
            check_inputs(nid, spec, inputs, ports.get(nid, _NONE) if moded else _NONE)
            if sized and spec.sized:
                self.check_size(nid, spec, inputs)

    def check_inputs(self, nid: str, spec: NodeSpec, inputs: dict[str, Any], passed: Mapping[str, str]) -> None:
        """The node's inputs; ``passed`` names the ports a bypassed node gives a literal (taken as a linked
        value) or that an issue already reports (see :class:`~nodegraph.modes.ModeResult`)."""
        # Runs for every input of every node: the usual cases (a link or a literal that checks out)
        # stay in this loop; each issue has its own method.
        self.literals[nid] = literals = {}
        self.links[nid] = links = {}
        ports = spec.inputs
        known, edges, checked = self._known, self.edges, self.literals
        for port, value in inputs.items():
            pspec = ports.get(port)
            if pspec is None:
                self.unknown_port(nid, spec, port)
                continue
            # What as_link accepts, without making a LinkRef per link.
            if type(value) is not dict:
                if pspec.quick(value):
                    literals[port] = value  # what pydantic would accept unchanged, told without calling it
                elif pspec.type.link_only:
                    if passed.get(port) == "literal":
                        literals[port] = value  # a bypassed node's literal, as if it arrived on its link
                    else:
                        self.check_literal_on_link_port(nid, pspec, value)
                else:
                    self.check_literal(nid, pspec, value)
            elif (len(value) == 2 and type(src_id := value.get("from")) is str
                    and type(output := value.get("output")) is str):
                src_spec = known.get(src_id)
                if src_spec is None:  # a node whose type is unknown (reported on it), or no node at all
                    src_spec = self._source_type(nid, port, src_id, output)
                    if src_spec is None:
                        continue
                else:
                    # Every link between existing nodes is an edge, so a cycle is reported whatever else is wrong.
                    edges.append((src_id, nid))
                    if src_id not in checked or src_id == nid:  # not a source checked before this node
                        self._sorted = False
                out = src_spec.outputs.get(output)
                if out is None:
                    self.unknown_output(nid, port, LinkRef(src_id, output), self.workflow.nodes[src_id].type, src_spec)
                    continue
                ptype, otype = pspec.type.name, out.type.name
                if otype == ptype or compatible(otype, ptype):
                    links[port] = (src_id, output)
                else:
                    self.link_mismatch(nid, pspec, LinkRef(src_id, output), out)
            elif pspec.type.link_only:
                if passed.get(port) == "literal":
                    literals[port] = value
                else:
                    self.check_literal_on_link_port(nid, pspec, value)
            else:
                self.check_literal(nid, pspec, value)
        if len(inputs) < len(ports):
            for port, pspec in ports.items():
                if pspec.required and port not in inputs and port not in passed:
                    self.missing_input(nid, spec, pspec)

    def _source_type(self, nid: str, port: str, src_id: str, output: str) -> NodeSpec | None:
        """The type of a link's source node that is not among the checked nodes (its type is unknown,
        or its version cannot be upgraded): ``None`` when there is none, or no such node (reported)."""
        src = self.workflow.nodes.get(src_id)
        if src is None:
            self.dangling_link(nid, port, LinkRef(src_id, output))
            return None
        self.edges.append((src_id, nid))
        self._sorted = False  # check_cycles compares positions
        return self._types.get(src.type) or self.node_type(src.type)

    def missing_input(self, nid: str, spec: NodeSpec, pspec: PortSpec) -> None:
        need = (f"connect {_producers(self.registry, pspec.type.name)}" if pspec.link_only
                else f"set it to {_describe(pspec)}")
        self.issues.append(Issue(code="missing_input", node=nid, port=pspec.name,
                                 message=f"{nid}.{pspec.name} ({spec.type_id}) is required but not given; {need}"))

    def unknown_port(self, nid: str, spec: NodeSpec, port: str) -> None:
        hint = close_names(port, spec.inputs, listing="its inputs are")
        self.issues.append(Issue(code="unknown_port", node=nid, port=port,
                                 message=f"{nid}: {spec.type_id} has no input {port!r}; {hint}"))

    def dangling_link(self, nid: str, port: str, link: LinkRef) -> None:
        self.issues.append(Issue(code="dangling_link", node=nid, port=port,
                                 message=f"{nid}.{port} is linked from node {link.from_!r}, which does not "
                                 "exist; link it to an existing node or remove the link"))

    def unknown_output(self, nid: str, port: str, link: LinkRef, src_type: str, src_spec: NodeSpec) -> None:
        self.issues.append(Issue(code="dangling_link", node=nid, port=port,
                                 message=f"{nid}.{port} is linked from {link.from_}.{link.output}, but "
                                 f"{src_type} has no output {link.output!r}; its outputs are: "
                                 f"{', '.join(src_spec.outputs) or 'none'}"))

    def link_mismatch(self, nid: str, pspec: PortSpec, link: LinkRef, out: PortSpec) -> None:
        self.issues.append(Issue(code="type_mismatch", node=nid, port=pspec.name,
                                 message=f"{nid}.{pspec.name} expects {pspec.type.name} but {link.from_}."
                                 f"{link.output} is {out.type.name}; connect "
                                 f"{_producers(self.registry, pspec.type.name)}"
                                 f"{_consumers(self.registry, out.type.name)}"))

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

    def check_size(self, nid: str, spec: NodeSpec, inputs: dict[str, Any]) -> None:
        """The outputs whose ``shape`` is declared fit in ``max_node_bytes``, from the literal inputs
        (and the defaults of those not given); what arrives on links is not known yet and counts 1."""
        values = {p: ps.default for p, ps in spec.inputs.items() if p not in inputs and not ps.required}
        values.update(self.literals[nid])
        sizes = spec.output_sizes(values)
        total = sum(nbytes for _, _, nbytes in sizes)
        limit = self.max_node_bytes
        if limit is None or total <= limit:
            return
        name, dims, nbytes = max(sizes, key=lambda s: s[2])
        port = spec.outputs[name]
        named = [d for d in port.shape or () if isinstance(d, str) and d not in self.links[nid]]
        fix = f"lower {_or(list(dict.fromkeys(named)))}" if named else "use smaller inputs"
        self.issues.append(Issue(code="too_large", node=nid, port=named[0] if named else None,
                                 message=f"{nid} ({spec.type_id}) would make {name} of at least "
                                 f"{' × '.join(map(str, dims))} {port.dtype} = {_bytes(nbytes)}, more than the "
                                 f"{_bytes(limit)} one node may take (NODEGRAPH_MAX_NODE_BYTES); {fix}"))

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
        """The topological order planning reuses, and every cycle reported.

        The order is the topological order closest to the workflow's own: of the nodes whose inputs
        are all placed, the one written first comes next (networkx's lexicographical sort keyed by
        position). Workflows are mostly written sources first, and then that order is the
        workflow's order itself: the input checks saw every link come from a node checked before
        the one it goes into (or, when a link involved a node they skip, one pass over the links
        proves it), and no graph is built.
        """
        nodes = self.workflow.nodes
        if self._sorted:
            self.order = list(nodes)
            return
        position = {nid: i for i, nid in enumerate(nodes)}
        if all(position[a] < position[b] for a, b in self.edges):
            self.order = list(nodes)
            return
        import networkx as nx

        graph = _digraph(nodes, self.edges)
        try:
            self.order = list(nx.lexicographical_topological_sort(graph, key=position.__getitem__))
            return
        except nx.NetworkXUnfeasible:
            self.order = []
        loops = {a for a, b in self.edges if a == b}
        for component in nx.strongly_connected_components(graph):
            if len(component) > 1 or not loops.isdisjoint(component):
                members = sorted(component, key=position.__getitem__)
                self.issues.append(Issue(code="cycle", node=members[0],
                                         message=f"these nodes form a cycle: {' → '.join(members)}; a workflow must "
                                         "be acyclic, remove one of the links between them"))

    def check_targets(self, targets: list[str] | None) -> None:
        """The nodes asked for exist and run; without targets, there is an output node that runs."""
        nodes = self.workflow.nodes
        self.targets = targets
        if targets is not None:
            for t in targets:
                if t not in nodes:
                    hint = close_names(str(t), nodes, listing="its nodes are")
                    self.issues.append(Issue(code="unknown_target", node=t,
                                             message=f"asked to run node {t!r}, which is not in the workflow; {hint}"))
                elif t in self.inactive:
                    self.issues.append(Issue(code="no_outputs", node=t,
                                             message=f"asked to run node {t!r}, which does not run: it is "
                                             f"{self.inactive[t]}; change its mode (or its inputs' nodes')"))
            if not targets:
                self.issues.append(Issue(code="no_outputs", message="no nodes were asked for"))
            return
        if any(spec.cls.output_node for spec in self.specs.values()):  # the nodes that run, of known types
            return
        if any(i.code == "unknown_node_type" for i in self.issues):
            return
        left_out = [nid for nid in self.inactive if (s := self.node_type(nodes[nid].type)) and s.output_node]
        if left_out:
            self.issues.append(Issue(code="no_outputs", node=left_out[0], message="no output node runs: "
                                     + "; ".join(f"{nid} is {self.inactive[nid]}" for nid in left_out[:5])
                                     + "; change the mode of one of them"))
        else:
            self.issues.append(Issue(code="no_outputs", message="the workflow has no output node, so a run "
                                     "would do nothing; add one (e.g. core.save_image or core.preview_image)"))

    def check_own(self) -> None:
        """Each node's own check (:meth:`Node.check`) of the files it names, given ``files`` and once the
        rest is valid (a check may follow the links upward)."""
        if self.files is None or self.issues:
            return
        files = self.files
        runs = self._runs()
        for nid, spec in self.specs.items():
            if spec.cls.check is Node.check or nid not in runs:
                continue
            ctx = CheckContext(files.model_dirs, files.input_dir, files.allow_model_paths,
                               sources=lambda port, nid=nid: self._upstream(nid, port))
            try:
                found = spec.cls().check(self._inputs(nid), ctx)
            except Exception:  # noqa: BLE001 - a check that breaks must not block a run; the run reports
                log.debug("check of %s (%s) failed", nid, spec.type_id, exc_info=True)
                continue
            except (SystemExit, KeyboardInterrupt) as exc:  # a broken check too: it must not end the CLI or the server
                if not stray_exit(exc):
                    raise
                log.warning("the check of %s (%s) %s; it is skipped: a check returns its problems "
                            "(or raises), never exits the process", nid, spec.type_id, exit_call(exc))
                continue
            for port, message in found:
                self.issues.append(Issue(code="invalid_model", node=nid, port=port, message=f"{nid}: {message}"))

    def _runs(self) -> set[str]:
        """The nodes a run will execute for sure: the targets (or the output nodes) and what they need,
        except through lazy inputs, which a node may never ask for. A node outside (a loose loader, one
        that only another target needs, an untaken switch branch) is not checked: it does not run."""
        roots = self.targets if self.targets is not None else [
            nid for nid, spec in self.specs.items() if spec.cls.output_node]
        runs, frontier = set(roots), list(roots)
        while frontier:
            nid = frontier.pop()
            spec = self.specs.get(nid)
            for port, (pred, _) in self.links.get(nid, {}).items():
                if (spec is not None and spec.inputs[port].lazy) or pred in runs:
                    continue
                runs.add(pred)
                frontier.append(pred)
        return runs

    def _inputs(self, nid: str) -> dict[str, Any]:
        return dict(with_defaults(self.specs[nid], self.literals[nid], self.links[nid]))  # the node's own copy

    def _upstream(self, nid: str, port: str) -> Upstream | None:
        source = self.links.get(nid, {}).get(port)
        if source is None:
            return None
        src = source[0]
        return Upstream(self.specs[src].type_id, self._inputs(src),
                        sources=lambda p: self._upstream(src, p))


def _digraph(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> nx.DiGraph:
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    return graph


# --- messages ------------------------------------------------------------------------------------


def _producers(registry: Registry, type_name: str, limit: int = 3) -> str:
    """'the `x` output of a pack.node node' hints for a wanted type: the nodes of the pack that
    defines the type first (`unclip.EMBEDDING` → unclip's nodes; a core type → core's), then the others."""
    owner = type_name.rpartition(".")[0] or "core"
    found = []
    for spec in registry.specs():
        if spec.cls.deprecated:
            continue
        for out in spec.outputs.values():
            if out.type.name == type_name:
                found.append((spec.pack != owner, spec.type_id, out.name))
                break
    hits = [f"the `{output}` output of {'an' if type_id[0] in 'aeiou' else 'a'} {type_id} node"
            for _, type_id, output in sorted(found, key=lambda f: f[0])[:limit]]
    return " or ".join(hits) if hits else f"an output of type {type_name}"


def _consumers(registry: Registry, type_name: str, limit: int = 3) -> str:
    """'; a T output goes into x.y, z.w' for a link type (what the found output is for), else ''."""
    if type_name.isupper():  # core data types (IMAGE, ANY, ...) go into too many nodes for a hint
        return ""
    hits = [spec.type_id for spec in registry.specs()
            if any(p.type.name == type_name and p.link_only for p in spec.inputs.values())][:limit]
    return f"; a {type_name} output goes into {', '.join(hits)}" if hits else ""


def _first_error(exc: ValidationError) -> str:
    errs = exc.errors()
    if not errs:
        return str(exc)
    return str(errs[0].get("msg", "invalid value"))


def _or(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


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
    if not base.is_dir():  # e.g. a run from another folder than the one holding ./input
        where = base if base.is_absolute() else f"{base}, that is {base.resolve()}"
        return (f"there is no file {name!r}: the {folder} folder ({where}) does not exist; give the folder that "
                f"holds the file (--{folder}-dir, NODEGRAPH_{folder.upper()}_DIR) or create it")
    names = list_files(base, extensions)
    text = f"there is no file {name!r} in the {folder} folder ({base})"
    if not names:
        return text + f"; the folder has no {'such ' if extensions else ''}files: put one there (or upload one)"
    base_name = name.rsplit("/", 1)[-1]
    close = [n for n in names if n.rsplit("/", 1)[-1] == base_name] or close_matches(name, names)
    if close:
        text += f"; did you mean {close[0]!r}?"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return text + f"; files there: {', '.join(names[:shown])}{more}"
