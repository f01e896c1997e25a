"""ComfyUI's formats and ours: its API-format prompt, its editor's saved workflows, and ``object_info``.

- **API format** (``POST /prompt``): ``{id: {"class_type", "inputs": {name: literal | [src_id, output_index]},
  "_meta": {"title"}}}``. :func:`prompt_to_workflow` reads it and :func:`workflow_to_prompt` writes it.
- **UI format** (what ComfyUI's editor saves): ``{"nodes": [{id, type, pos, size, mode, inputs: [{name, link,
  widget?}], outputs: [{name, links}], widgets_values, ...}], "links": [[id, from, from_slot, to, to_slot,
  type]], "groups": [...]}``. :func:`ui_to_workflow` reads it, positions, groups, titles, colours and modes
  included; ComfyUI's Reroute nodes are looked through and its PrimitiveNode widgets become literals.
- :func:`object_info` describes our node types the way ComfyUI's ``GET /object_info`` does.

A ComfyUI class name maps to one of our node types when it is the type's id (or an old id), or the
``comfy_class`` a node declares (same input names, widget order and output positions). A node that maps to
nothing is kept with its type and links, and reported (``unknown_node_type``) naming it: validation and the
editor then show it as a missing node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ...issues import Issue
from ...node import NodeSpec, PortSpec
from ...registry import Registry
from ...workflow import FORMAT, as_link

__all__ = ["comfy_format", "input_groups", "object_info", "prompt_to_workflow", "ui_to_workflow",
           "workflow_to_prompt"]

#: The values ComfyUI's editor keeps after a seed widget (its "control after generate").
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
#: Inputs ComfyUI's editor adds for widgets we declare (the upload button of an image input).
FRONTEND_INPUTS = frozenset({"upload", "control_after_generate"})
#: ComfyUI editor nodes that only exist in its editor: looked through, or turned into literals.
REROUTE, PRIMITIVE = "Reroute", "PrimitiveNode"
NOTES = frozenset({"Note", "MarkdownNote"})
#: ComfyUI node modes (litegraph's): 2 never runs (mute), 4 bypass.
MODES = {2: "mute", 4: "bypass"}


def comfy_format(data: Any) -> str | None:
    """``"ui"`` or ``"api"`` when ``data`` is a ComfyUI workflow of that format, else ``None``."""
    if not isinstance(data, dict) or "format" in data or not data:
        return None
    if isinstance(data.get("nodes"), list) and isinstance(data.get("links"), list):
        return "ui"
    if all(isinstance(v, dict) and isinstance(v.get("class_type"), str) for v in data.values()):
        return "api"
    return None


class NodeTypes:
    """ComfyUI class names -> our node types."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.comfy = {s.cls.comfy_class: s for s in registry.specs() if s.cls.comfy_class}

    def __call__(self, class_type: str) -> NodeSpec | None:
        return self.registry.get(class_type) or self.comfy.get(class_type)


def _unmapped(nid: str, class_type: str, registry: Registry) -> Issue:
    close = registry.suggest(class_type)
    hint = f"did you mean {', '.join(close)}?" if close else "it is kept as a missing node; replace it with a " \
        "nodegraph node (`nodegraph nodes` lists them)"
    return Issue(code="unknown_node_type", node=nid, message=f"{nid}: the ComfyUI node {class_type!r} has no "
                 f"nodegraph equivalent; {hint}")


def _is_link(value: Any, nodes: Mapping[str, Any]) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)
            and not isinstance(value[1], bool) and str(value[0]) in nodes)


# --- the API format ----------------------------------------------------------------------------------


def prompt_to_workflow(prompt: Any, registry: Registry) -> tuple[dict[str, Any] | None, list[Issue]]:
    """An API-format prompt as our workflow, and the nodes it could not map (``None``: not a prompt)."""
    if not isinstance(prompt, dict) or not prompt:
        return None, [Issue(code="invalid_workflow", message="the prompt must be a non-empty object "
                            '{node_id: {"class_type": ..., "inputs": {...}}}')]
    types = NodeTypes(registry)
    issues: list[Issue] = []
    specs: dict[str, NodeSpec | None] = {}
    for nid, entry in prompt.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("class_type"), str) \
                or not isinstance(entry.get("inputs", {}), dict):
            issues.append(Issue(code="invalid_workflow", node=str(nid), message=f"{nid}: each node needs a string "
                                "'class_type' and an object 'inputs'"))
            continue
        specs[str(nid)] = spec = types(entry["class_type"])
        if spec is None:
            issues.append(_unmapped(str(nid), entry["class_type"], registry))
    if any(i.code == "invalid_workflow" for i in issues):
        return None, issues
    nodes: dict[str, Any] = {}
    for nid, entry in prompt.items():
        nid = str(nid)
        spec = specs[nid]
        inputs: dict[str, Any] = {}
        for name, value in entry.get("inputs", {}).items():
            if _is_link(value, specs):
                src, index = str(value[0]), value[1]
                inputs[name] = {"from": src, "output": _output_name(specs[src], index)}
            elif not (name in FRONTEND_INPUTS and spec is not None and name not in spec.inputs):
                inputs[name] = value
        node: dict[str, Any] = {"type": spec.type_id if spec else entry["class_type"], "inputs": inputs}
        title = (entry.get("_meta") or {}).get("title") if isinstance(entry.get("_meta"), dict) else None
        if isinstance(title, str) and title and (spec is None or title != spec.title):
            node["title"] = title
        nodes[nid] = node
    return {"format": FORMAT, "nodes": nodes, "ui": {}, "meta": {}}, issues


def _output_name(spec: NodeSpec | None, index: int) -> str:
    """Our name of output ``index`` (``"#index"`` where it has none: validation names the broken link)."""
    names = list(spec.outputs) if spec is not None else []
    return names[index] if 0 <= index < len(names) else f"#{index}"


def workflow_to_prompt(workflow: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """Our workflow as an API-format prompt (links as ``[node, output index]``; muted nodes left out)."""
    nodes = workflow.get("nodes") if isinstance(workflow, Mapping) else None
    prompt: dict[str, Any] = {}
    for nid, entry in (nodes or {}).items():
        if not isinstance(entry, dict) or entry.get("mode") == "mute":
            continue
        spec = registry.get(str(entry.get("type")))
        inputs = {}
        for name, value in (entry.get("inputs") or {}).items():
            link = as_link(value)
            if link is None:
                inputs[name] = value
                continue
            src = registry.get(str((nodes.get(link.from_) or {}).get("type")))
            outputs = list(src.outputs) if src is not None else []
            inputs[name] = [link.from_, outputs.index(link.output) if link.output in outputs else 0]
        prompt[str(nid)] = {"class_type": spec.type_id if spec else entry.get("type"), "inputs": inputs,
                            "_meta": {"title": entry.get("title") or (spec.title if spec else str(entry.get("type")))}}
    return prompt


# --- the UI format -----------------------------------------------------------------------------------


def _links(data: dict[str, Any]) -> dict[int, tuple[str, int, str, int]]:
    """link id -> (from node, from slot, to node, to slot), from either of the UI format's link shapes."""
    out = {}
    for link in data.get("links") or []:
        if isinstance(link, list) and len(link) >= 5:
            lid, src, slot, dst, dslot = link[:5]
        elif isinstance(link, dict):
            lid, src, slot, dst, dslot = (link.get(k) for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot"))
        else:
            continue
        if isinstance(lid, int) and isinstance(slot, int) and isinstance(dslot, int):
            out[lid] = (str(src), slot, str(dst), dslot)
    return out


def ui_to_workflow(data: dict[str, Any], registry: Registry) -> tuple[dict[str, Any], list[Issue]]:
    """A workflow ComfyUI's editor saved, as ours; the issues name the nodes that have no equivalent."""
    types = NodeTypes(registry)
    raw = {str(n.get("id")): n for n in data.get("nodes") or [] if isinstance(n, dict) and "id" in n}
    links = _links(data)
    issues: list[Issue] = []
    nodes: dict[str, Any] = {}
    dropped = [nid for nid, n in raw.items() if n.get("type") in NOTES]
    specs = {nid: types(n["type"]) for nid, n in raw.items() if isinstance(n.get("type"), str)}
    outputs = {nid: list(spec.outputs) for nid, spec in specs.items() if spec is not None}
    for nid, node in raw.items():
        kind = node.get("type")
        if kind in (REROUTE, PRIMITIVE) or kind in NOTES or not isinstance(kind, str):
            continue
        spec = specs[nid]
        if spec is None:
            issues.append(_unmapped(nid, kind, registry))
        nodes[nid] = _ui_node(node, spec, raw, links, outputs)
    ui: dict[str, Any] = {}
    groups = [_group(g) for g in data.get("groups") or [] if isinstance(g, dict)]
    if groups := [g for g in groups if g]:
        ui["groups"] = groups
    meta: dict[str, Any] = {"imported_from": "ComfyUI"}
    if dropped:
        meta["dropped_notes"] = [str((raw[n].get("widgets_values") or [""])[0]) for n in dropped]
    return {"format": FORMAT, "nodes": nodes, "ui": ui, "meta": meta}, issues


def _ui_node(node: dict[str, Any], spec: NodeSpec | None, raw: Mapping[str, Any],
             links: Mapping[int, tuple[str, int, str, int]], outputs: Mapping[str, list[str]]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    seed_modes: dict[str, str] = {}
    if spec is not None:
        inputs.update(_widget_values(node.get("widgets_values"), spec, seed_modes))
    for slot in node.get("inputs") or []:
        if not isinstance(slot, dict) or not isinstance(slot.get("link"), int) or slot["link"] not in links:
            continue
        value = _source(links[slot["link"]], raw, links, outputs)
        if value is not None:
            inputs[str(slot.get("name"))] = value
    entry: dict[str, Any] = {"type": spec.type_id if spec else node["type"], "inputs": inputs}
    if spec is not None:
        entry["version"] = spec.version
    if node.get("mode") in MODES:
        entry["mode"] = MODES[node["mode"]]
    title = node.get("title")
    if isinstance(title, str) and title and title != (spec.title if spec else node["type"]):
        entry["title"] = title
    ui: dict[str, Any] = {}
    for key in ("pos", "size"):
        value = node.get(key)
        if isinstance(value, dict):  # an older ComfyUI wrote {"0": x, "1": y}
            value = [value.get("0"), value.get("1")]
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
            ui[key] = [float(v) for v in value]
    if (node.get("flags") or {}).get("collapsed"):
        ui["collapsed"] = True
    for key in ("color", "bgcolor"):
        if isinstance(node.get(key), str):
            ui[key] = node[key]
    if seed_modes:
        ui["seed_modes"] = seed_modes
    entry["ui"] = ui
    return entry


def _source(link: tuple[str, int, str, int], raw: Mapping[str, Any], links: Mapping[int, tuple[str, int, str, int]],
            outputs: Mapping[str, list[str]]) -> dict[str, str] | Any | None:
    """What arrives on a link: ``{"from", "output"}`` from a real node (Reroute nodes looked through; the
    output named as our node type names it, ``outputs``), or the value of a PrimitiveNode; ``None`` for a
    link from nothing."""
    seen = set()
    src, slot = link[0], link[1]
    while src in raw and raw[src].get("type") == REROUTE and src not in seen:
        seen.add(src)
        upstream = next((s.get("link") for s in raw[src].get("inputs") or [] if isinstance(s, dict)), None)
        if upstream not in links:
            return None
        src, slot = links[upstream][0], links[upstream][1]
    node = raw.get(src)
    if node is None:
        return None
    if node.get("type") == PRIMITIVE:
        values = node.get("widgets_values") or []
        return values[0] if values else None
    ours = outputs.get(src)
    if ours is not None:
        return {"from": src, "output": ours[slot] if 0 <= slot < len(ours) else f"#{slot}"}
    theirs = node.get("outputs") or []
    name = theirs[slot].get("name") if 0 <= slot < len(theirs) and isinstance(theirs[slot], dict) else None
    return {"from": src, "output": str(name or f"#{slot}")}


def _widget_values(values: Any, spec: NodeSpec, seed_modes: dict[str, str]) -> dict[str, Any]:
    """ComfyUI's ``widgets_values`` as our literal inputs: by name when it is an object, else in the order of
    :func:`input_groups` (required, then optional widgets); the value ComfyUI keeps after a seed or integer
    widget ("randomize", "fixed", ...) sets the editor's seed mode."""
    required, optional = input_groups(spec)
    widgets = [p for p in (*required, *optional) if not p.link_only]
    if isinstance(values, dict):
        return {p.name: values[p.name] for p in widgets if p.name in values}
    if not isinstance(values, list):
        return {}
    out: dict[str, Any] = {}
    i = 0
    for port in widgets:
        if i >= len(values):
            break
        out[port.name] = values[i]
        i += 1
        if port.type.name in ("INT", "SEED") and i < len(values) and values[i] in CONTROL_VALUES:
            if port.type.name == "SEED":
                seed_modes[port.name] = "randomize" if values[i] == "randomize" else "fixed"
            i += 1
    return out


def _group(group: dict[str, Any]) -> dict[str, Any] | None:
    bounding = group.get("bounding")
    if not (isinstance(bounding, list) and len(bounding) == 4 and all(isinstance(v, int | float) for v in bounding)):
        return None
    out: dict[str, Any] = {"title": str(group.get("title") or "Group"), "bounding": [float(v) for v in bounding]}
    if isinstance(group.get("color"), str):
        out["color"] = group["color"]
    return out


# --- object_info -------------------------------------------------------------------------------------


def input_groups(spec: NodeSpec) -> tuple[list[PortSpec], list[PortSpec]]:
    """The node's inputs as ComfyUI groups them: required (what must be given: links without a default,
    widgets, which always carry a value) and optional (links and values that may be left out)."""
    required, optional = [], []
    for port in spec.inputs.values():
        may_omit = not port.required and (port.link_only or port.default is None)
        (optional if may_omit else required).append(port)
    return required, optional


def object_info(catalogue: Mapping[str, Any], specs: Iterable[NodeSpec], *, input_files: list[str],
                models: Mapping[str, list[str]]) -> dict[str, Any]:
    """Our node types in the shape of ComfyUI's ``GET /object_info`` (class name = our type id).

    ``catalogue`` is ``Registry.catalogue()``; ``input_files`` the images an image input offers;
    ``models`` the names each model kind offers."""
    out: dict[str, Any] = {}
    for spec in specs:
        schema = catalogue["nodes"].get(spec.type_id)
        if schema is None:
            continue
        ports = {p["name"]: p for p in schema["inputs"]}
        required, optional = input_groups(spec)
        inputs = {"required": {p.name: _comfy_input(ports[p.name], input_files, models) for p in required}}
        if optional:
            inputs["optional"] = {p.name: _comfy_input(ports[p.name], input_files, models) for p in optional}
        outputs = schema["outputs"]
        out[spec.type_id] = {
            "input": inputs,
            "input_order": {group: list(names) for group, names in inputs.items()},
            "output": [_comfy_type(o["type"]) for o in outputs],
            "output_is_list": [False] * len(outputs),
            "output_name": [o["name"] for o in outputs],
            "output_tooltips": [o["description"] for o in outputs],
            "name": spec.type_id,
            "display_name": schema["title"],
            "description": schema["description"],
            "python_module": f"nodegraph.{spec.pack}",
            "category": schema["category"],
            "output_node": schema["output_node"],
            "deprecated": schema.get("deprecated", False),
            "experimental": False,
        }
    return out


def _comfy_type(name: str) -> str:
    return "*" if name == "ANY" else name


def _comfy_input(port: dict[str, Any], input_files: list[str], models: Mapping[str, list[str]]) -> list[Any]:
    """One input as ComfyUI declares it: ``[TYPE, options]``, or ``[[choices], options]`` for a drop-down."""
    opts: dict[str, Any] = {"tooltip": port["description"]}
    if port.get("link"):
        return [_comfy_type(port["type"]), opts]
    if "default" in port and port["default"] is not None:
        opts["default"] = port["default"]
    if port.get("widget") == "model":
        names = list(models.get(port.get("model_kind", ""), []))
        default = port.get("default")
        return [([default] if isinstance(default, str) and default not in names else []) + names, opts]
    if port.get("widget") == "file":
        if port.get("folder", "input") == "input":
            opts["image_upload"] = True
        return [list(input_files), opts]
    if port.get("choices"):
        return [list(port["choices"]), opts]
    kind = port["type"]
    if kind in ("INT", "SEED", "FLOAT"):
        lo = port.get("minimum", port.get("exclusiveMinimum"))
        hi = port.get("maximum", port.get("exclusiveMaximum"))
        opts.update({k: v for k, v in (("min", lo), ("max", hi), ("step", port.get("step"))) if v is not None})
        if kind == "SEED":
            opts["control_after_generate"] = True
        return ["FLOAT" if kind == "FLOAT" else "INT", opts]
    if kind == "STRING":
        if port.get("widget") == "text":
            opts["multiline"] = True
        return ["STRING", opts]
    return [kind, opts]
