"""Bringing a saved workflow up to date: the file format, node type ids, and node versions.

Format migrations are plain data (:mod:`nodegraph.workflow`); the rest needs the registry: a type
id is looked up as it is today (:func:`resolve_type`) and a node saved with an older version of its
type is upgraded by that type's ``migrate`` hook. Validation upgrades every node this way before
checking it, and ``POST /api/upgrade`` answers the upgraded workflow, so the editor shows what a
run would execute.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .issues import Issue
from .node import NodeSpec
from .registry import Registry
from .workflow import (
    NodeData,
    NodeEntry,
    Workflow,
    WorkflowData,
    WorkflowFormatError,
    parse_source,
    read_structure,
)

__all__ = ["is_current", "read_nodes", "read_source", "resolve_type", "upgrade_node", "upgrade_workflow"]


def read_source(source: str | bytes | dict[str, Any] | Workflow) -> tuple[dict[str, Any] | None, Workflow | None,
                                                                           list[Issue]]:
    """The workflow as a current-format dict and as a model, or the issues saying why it is none.

    A :class:`Workflow` passed in is used as it is (its dict is then ``None``).
    """
    if isinstance(source, Workflow):
        return None, source, []
    try:
        data = parse_source(source)
    except WorkflowFormatError as exc:
        return None, None, [Issue(code=exc.code, message=exc.message)]
    try:
        return data, Workflow.model_validate(data), []
    except ValidationError as exc:
        return None, None, [_structure_issue(e) for e in exc.errors()[:50]]


def read_nodes(source: str | bytes | dict[str, Any] | Workflow) -> tuple[Workflow | WorkflowData | None,
                                                                       list[Issue]]:
    """What validation reads: the workflow as :class:`~nodegraph.workflow.WorkflowData` when its
    structure is plainly right (no pydantic model is built), else as :func:`read_source` gives it."""
    if isinstance(source, Workflow):
        return source, []
    try:
        data = parse_source(source)
    except WorkflowFormatError as exc:
        return None, [Issue(code=exc.code, message=exc.message)]
    light = read_structure(data)
    if light is not None:
        return light, []
    _, wf, issues = read_source(data)
    return wf, issues


def _structure_issue(err: Any) -> Issue:
    loc = [str(p) for p in err.get("loc", ())]
    node = loc[1] if len(loc) >= 2 and loc[0] == "nodes" else None
    field = ".".join(loc) or "(top level)"
    return Issue(code="invalid_workflow", node=node, port=None,
                 message=f"{field}: {err.get('msg', 'invalid')}; "
                 "each node needs a string 'type' and an object 'inputs'")


def resolve_type(registry: Registry, type_id: str) -> NodeSpec | None:
    """The node type a saved ``type_id`` names in this install (``None``: no pack provides it).

    This is the one place where a saved id is mapped to today's: when the registry resolves a
    renamed type's old id, the spec's ``type_id`` is the new one and upgrades write it.
    """
    return registry.get(type_id)


def is_current(entry: NodeEntry | NodeData, spec: NodeSpec) -> bool:
    """Whether ``entry`` is saved as ``spec`` reads it: under today's type id, and no other version."""
    return entry.type == spec.type_id and (entry.version is None or entry.version == spec.version)


def upgrade_node(nid: str, entry: NodeEntry | NodeData,
                 registry: Registry) -> tuple[NodeSpec, NodeEntry | NodeData] | Issue:
    """The node's type and ``entry`` as this install reads it (current type id; inputs migrated when
    saved with an older version), or the issue that prevents it. ``entry`` is returned as it is
    when nothing changes."""
    spec = resolve_type(registry, entry.type)
    if spec is None:
        close = registry.suggest(entry.type)
        hint = (f"did you mean {', '.join(close)}?" if close else
                "install or enable the pack that provides it (see `nodegraph nodes` for failed packs)")
        return Issue(code="unknown_node_type", node=nid, message=f"{nid}: unknown node type {entry.type!r}; {hint}")
    if is_current(entry, spec):
        return spec, entry
    if isinstance(entry, NodeData):
        entry = entry.model()
    update: dict[str, Any] = {}
    if spec.type_id != entry.type:
        update["type"] = spec.type_id
    if entry.version is not None and entry.version != spec.version:
        migrated = _migrated_inputs(spec, entry.version, entry.inputs)
        if migrated is None:
            return Issue(code="version_mismatch", node=nid,
                         message=f"{nid}: the workflow was saved with {entry.type} version {entry.version}, this "
                         f"install has version {spec.version} and cannot upgrade it; re-create the node, or install "
                         "the pack version the workflow was made with")
        update["inputs"] = migrated
        update["version"] = spec.version
    return spec, (entry.model_copy(update=update) if update else entry)


def _migrated_inputs(spec: NodeSpec, version: int, inputs: dict[str, Any]) -> dict[str, Any] | None:
    if version > spec.version:
        return None
    try:
        return spec.cls.migrate(version, dict(inputs))
    except Exception:  # noqa: BLE001 - a failing migration is reported as not upgradable, never raised
        return None


def upgrade_workflow(source: str | bytes | dict[str, Any], registry: Registry) -> tuple[dict[str, Any] | None,
                                                                                       list[Issue]]:
    """The workflow in the current format, each node upgraded where it can be, and the issues of the
    nodes that cannot (left as they were). ``None`` and the issues when the source is no workflow.

    Everything else (``ui``, ``meta``, keys this version does not know) is kept as it is. The answer's
    workflow, node and ``inputs`` dicts are new (``source`` is never modified); values in them may be
    shared with ``source``.
    """
    data, wf, issues = read_source(source)
    if data is None or wf is None:
        return None, issues
    nodes = {nid: _copied(raw) for nid, raw in (data.get("nodes") or {}).items()}
    for nid, entry in wf.nodes.items():
        result = upgrade_node(nid, entry, registry)
        if isinstance(result, Issue):
            issues.append(result)
            continue
        _, new = result
        if new is not entry:
            nodes[nid].update(type=new.type, inputs=dict(new.inputs))
            if new.version is not None:
                nodes[nid]["version"] = new.version
    return {**data, "nodes": nodes}, issues



def _copied(node: dict[str, Any]) -> dict[str, Any]:
    """A node entry whose own dict and ``inputs`` dict are new (values shared)."""
    return {**node, "inputs": dict(node["inputs"])} if isinstance(node.get("inputs"), dict) else dict(node)
