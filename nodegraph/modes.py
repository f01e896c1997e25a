"""Node modes: which nodes a run leaves out, and what a bypassed node passes through.

A workflow node may say ``"mode": "mute"`` or ``"mode": "bypass"`` (docs/workflows.md):

- A **muted** node does not run. A node with a required input linked from it cannot run either and
  is left out too, and so on downstream; an optional input linked from it is treated as left out
  (its default applies). Nodes that only fed left-out nodes are not needed, so planning prunes them.
- A **bypassed** node does not run; each of its outputs passes through one of its own inputs of the
  same type (the input at the output's position when its type matches, else the first input of
  that type), as ComfyUI does. What arrives there — a link, followed through further bypassed nodes,
  or a literal — is what the consumer gets. An output with no input of its type to pass is an issue
  (``bypass_no_input``) for a consumer that needs it.

:func:`resolve_modes` is pure: it takes the workflow's nodes and their types and returns the inputs
the active nodes effectively have, the nodes left out (and why), and the issues.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .issues import Issue
from .node import NodeSpec
from .types import compatible
from .workflow import LinkRef, NodeEntry, as_link

__all__ = ["ModeResult", "resolve_modes"]

_MISSING = object()


@dataclass
class ModeResult:
    """What modes change: ``inputs`` of the active nodes whose links were re-routed (node -> inputs),
    ``inactive`` nodes (node -> why it does not run), ``issues``, and per node the ports whose value a
    bypassed node passes as a literal (``"literal"``: taken as if it came on the link) or that an issue
    already reports (``"reported"``: not to be reported missing as well)."""

    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    inactive: dict[str, str] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    ports: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Passed:
    """Where a link ends up once bypassed nodes are looked through: a link, a literal, left out, or nothing."""

    kind: str  # "link" | "literal" | "skip" | "none"
    link: LinkRef | None = None
    value: Any = None
    why: str = ""
    type_name: str = ""  # of a literal: the type of the bypassed output it stands for


def resolve_modes(nodes: Mapping[str, NodeEntry], specs: Mapping[str, NodeSpec]) -> ModeResult:
    """Apply the nodes' modes. ``specs`` holds the type of every node whose type is known."""
    result = ModeResult()
    modes = {nid: e.mode for nid, e in nodes.items() if e.mode}
    if not modes:
        return result
    for nid, mode in modes.items():
        result.inactive[nid] = "muted" if mode == "mute" else "bypassed"
    for nid in _sources_first(nodes):
        if nid in modes:
            continue
        _reroute(nid, nodes, specs, modes, result)
    return result


def _reroute(nid: str, nodes: Mapping[str, NodeEntry], specs: Mapping[str, NodeSpec], modes: Mapping[str, str],
             result: ModeResult) -> None:
    """The inputs of active node ``nid`` with links from muted or bypassed nodes resolved (or the node left out)."""
    entry, spec = nodes[nid], specs.get(nid)
    inputs: dict[str, Any] | None = None
    for port, value in entry.inputs.items():
        link = as_link(value)
        if link is None or link.from_ not in modes and link.from_ not in result.inactive:
            continue
        passed = _follow(link, nodes, specs, modes, result.inactive)
        inputs = dict(entry.inputs) if inputs is None else inputs
        if passed.kind == "link":
            inputs[port] = {"from": passed.link.from_, "output": passed.link.output}
            continue
        pspec = spec.inputs.get(port) if spec is not None else None
        if passed.kind == "literal":
            inputs[port] = passed.value
            if pspec is not None and pspec.link_only and not compatible(passed.type_name, pspec.type.name):
                result.ports.setdefault(nid, {})[port] = "reported"
                result.issues.append(Issue(code="type_mismatch", node=nid, port=port, message=f"{nid}.{port} "
                                           f"expects {pspec.type.name} but {link.from_}.{link.output} (bypassed) "
                                           f"passes a {passed.type_name} value through; link {nid}.{port} elsewhere"))
                del inputs[port]
            else:
                result.ports.setdefault(nid, {})[port] = "literal"
            continue
        del inputs[port]
        if pspec is not None and not pspec.required:
            continue  # an optional input whose source does not run: as if it were left out
        if passed.kind == "skip":
            result.inactive[nid] = f"its input {port!r} needs {passed.why}"
            return
        result.ports.setdefault(nid, {})[port] = "reported"
        result.issues.append(Issue(code="bypass_no_input", node=nid, port=port,
                                   message=f"{nid}.{port} is linked from {link.from_}.{link.output}, but "
                                   f"{passed.why}; un-bypass that node, mute it, or link {nid}.{port} elsewhere"))
    if inputs is not None:
        result.inputs[nid] = inputs


def _follow(link: LinkRef, nodes: Mapping[str, NodeEntry], specs: Mapping[str, NodeSpec], modes: Mapping[str, str],
            inactive: Mapping[str, str]) -> _Passed:
    """Where ``link`` takes its value from, looking through bypassed nodes."""
    seen: set[str] = set()
    while True:
        src = link.from_
        mode = modes.get(src)
        if mode != "bypass":
            if src in inactive:
                return _Passed("skip", why=f"{src}, which is {inactive[src]}" if mode else
                               f"{src}, which does not run ({inactive[src]})")
            return _Passed("link", link=link)
        spec = specs.get(src)
        if spec is None:  # an unknown type: reported on that node, which keeps the link
            return _Passed("link", link=link)
        if src in seen:
            return _Passed("none", why=f"the bypassed nodes {', '.join(sorted(seen))} pass their inputs in a loop")
        seen.add(src)
        out = spec.outputs.get(link.output)
        if out is None:
            return _Passed("none", why=f"{src} (bypassed, {spec.type_id}) has no output {link.output!r}")
        port = _matching_input(spec, link.output)
        if port is None:
            return _Passed("none", why=f"{src} is bypassed and has no {out.type.name} input to pass through "
                           f"to its {link.output!r} output")
        value = nodes[src].inputs.get(port, _MISSING)
        upstream = as_link(value) if value is not _MISSING else None
        if upstream is not None:
            if upstream.from_ not in nodes:
                return _Passed("link", link=upstream)  # a dangling link, reported where it is used
            link = upstream
            continue
        if value is not _MISSING:
            return _Passed("literal", value=value, type_name=out.type.name)
        pspec = spec.inputs[port]
        if pspec.required:
            return _Passed("none", why=f"{src} is bypassed and its input {port!r}, which it would pass "
                           "through, is not given")
        return _Passed("literal", value=pspec.default, type_name=out.type.name)


def _matching_input(spec: NodeSpec, output: str) -> str | None:
    """The input a bypassed node passes to ``output``: the one at the same position when its type is the
    output's, else the first input of that type (ComfyUI's rule)."""
    out_type = spec.outputs[output].type.name
    inputs = list(spec.inputs.values())
    index = list(spec.outputs).index(output)
    if index < len(inputs) and inputs[index].type.name == out_type:
        return inputs[index].name
    return next((p.name for p in inputs if p.type.name == out_type), None)


def _sources_first(nodes: Mapping[str, NodeEntry]) -> list[str]:
    """Every node, each after the nodes it links from (Kahn's algorithm; nodes on a cycle come last, in
    workflow order — the cycle is reported by validation)."""
    consumers: dict[str, list[str]] = {nid: [] for nid in nodes}
    waiting: dict[str, int] = {}
    for nid, entry in nodes.items():
        sources = {link.from_ for v in entry.inputs.values() if (link := as_link(v)) and link.from_ in nodes}
        waiting[nid] = len(sources)
        for src in sources:
            consumers[src].append(nid)
    ready = [nid for nid, n in waiting.items() if n == 0]
    order: list[str] = []
    while ready:
        nid = ready.pop()
        order.append(nid)
        for consumer in consumers[nid]:
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                ready.append(consumer)
    if len(order) < len(nodes):
        placed = set(order)
        order += [nid for nid in nodes if nid not in placed]
    return order
