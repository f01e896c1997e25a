"""The node catalogue as pydantic models: node types, their ports, the packs, and the link rules.

``nodegraph nodes --json`` prints it and the server's ``GET /api/nodes`` serves it; the editor builds
its palette, its widgets and its link checks from it. Everything here is read from the registry
(which derives it from the node classes), so there is no second, hand-written description.
A key that does not apply to a port is left out of the JSON rather than sent as ``null``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .node import _NG
from .types import ANY_TYPE, link_accepts

if TYPE_CHECKING:
    from .node import NodeSpec, PortSpec
    from .registry import PackFailure, PackInfo, Registry

__all__ = ["LinkRules", "NodeCatalogue", "NodeSchema", "PackFailureSchema", "PackSchema", "PortSchema",
           "build_catalogue"]

#: JSON Schema keywords of an input's property copied onto its port (widget limits and defaults).
_SCHEMA_KEYS = ("default", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                "minLength", "maxLength", "pattern")


class PortSchema(BaseModel):
    """One port of a node, as the editor draws it."""

    model_config = ConfigDict(extra="allow")
    name: str
    type: str = Field(description="Type compared on links: IMAGE, INT, FLOAT, STRING, SEED, ENUM, pack types...")
    description: str
    link: bool | None = Field(None, description="Only a link is accepted (no widget).")
    required: bool | None = None
    optional: bool | None = None
    lazy: bool | None = None
    choices: list[Any] | None = None
    widget: str | None = Field(None, description="seed, text or file")
    folder: str | None = None
    extensions: list[str] | None = None
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    # JSON Schema's own spelling for the keywords copied from the port's property:
    exclusiveMinimum: float | None = None
    exclusiveMaximum: float | None = None
    multipleOf: float | None = None
    minLength: int | None = None
    maxLength: int | None = None
    pattern: str | None = None
    step: float | None = None
    display: str | None = None

    @classmethod
    def of(cls, port: PortSpec, prop: dict[str, Any] | None = None) -> PortSchema:
        """The entry of ``port``; ``prop`` is its property in the node's JSON Schema (inputs only)."""
        t = port.type
        keys: dict[str, Any] = {"name": port.name, "type": t.name, "description": port.description}
        if t.link_only:
            keys["link"] = True
        if port.required:
            keys["required"] = True
        if t.optional:
            keys["optional"] = True
        if port.lazy:
            keys["lazy"] = True
        if t.choices:
            keys["choices"] = list(t.choices)
        if t.widget is not None:
            keys["widget"] = t.widget.kind
            if t.widget.folder:
                keys["folder"] = t.widget.folder
            if t.widget.extensions:
                keys["extensions"] = list(t.widget.extensions)
        if prop:
            keys.update({k: prop[k] for k in _SCHEMA_KEYS if k in prop})
            extra = prop.get(_NG, {})
            keys.update({k: extra[k] for k in ("step", "display") if k in extra})
        return cls(**keys)


class NodeSchema(BaseModel):
    """A node type: identity, display, ports, and the JSON Schemas of its inputs and outputs."""

    model_config = ConfigDict(extra="allow")
    type: str
    pack: str
    version: int
    title: str
    category: str
    description: str
    output_node: bool
    volatile: bool = False
    deprecated: bool = False
    replaced_by: str | None = Field(None, description="On an old type id of a renamed node: its current id.")
    inputs: list[PortSchema]
    outputs: list[PortSchema]
    input_schema: dict[str, Any] = Field(default_factory=dict, description="JSON Schema of the inputs.")
    output_schema: dict[str, Any] = Field(default_factory=dict, description="JSON Schema of the outputs.")

    @classmethod
    def of(cls, spec: NodeSpec) -> NodeSchema:
        node = spec.cls
        in_schema = node.Inputs.model_json_schema(mode="validation")
        out_schema = node.Outputs.model_json_schema(mode="serialization")
        props = in_schema.get("properties", {})
        return cls(
            type=spec.type_id, pack=spec.pack, version=spec.version, title=spec.title, category=node.category,
            description=spec.description, output_node=node.output_node, volatile=node.volatile,
            deprecated=node.deprecated,
            inputs=[PortSchema.of(p, props.get(name)) for name, p in spec.inputs.items()],
            outputs=[PortSchema.of(p) for p in spec.outputs.values()],
            input_schema=in_schema, output_schema=out_schema,
        )


class PackSchema(BaseModel):
    """A pack that loaded."""

    name: str
    source: str
    version: str
    description: str
    nodes: list[str]
    web: bool
    evaluations: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, info: PackInfo) -> PackSchema:
        return cls(name=info.name, source=info.source, version=info.version, description=info.description,
                   nodes=list(info.node_types), web=info.web_dir is not None, evaluations=sorted(info.evaluations))


class PackFailureSchema(BaseModel):
    """A pack that did not load, and why."""

    source: str
    message: str
    traceback: str

    @classmethod
    def of(cls, failure: PackFailure) -> PackFailureSchema:
        return cls(source=failure.source, message=failure.message, traceback=failure.traceback)


class LinkRules(BaseModel):
    """Which links validation accepts: an output may feed an input of its own type, ``any`` joins
    every type, and ``accepts`` lists the other output types an input type takes."""

    any: str = Field(ANY_TYPE, description="The type that links to and from every type.")
    accepts: dict[str, list[str]] = Field(description="Input type -> the other output types it accepts.")

    @classmethod
    def current(cls) -> LinkRules:
        return cls(any=ANY_TYPE, accepts={k: sorted(v) for k, v in sorted(link_accepts().items())})


class NodeCatalogue(BaseModel):
    """GET /api/nodes and ``nodegraph nodes --json``."""

    nodes: dict[str, NodeSchema] = Field(description="Type id -> schema. An old id of a renamed node is listed "
                                         "too, as a deprecated copy of its node's schema with `replaced_by`, "
                                         "so an editor that knows only the old id keeps working.")
    aliases: dict[str, str] = Field(default_factory=dict, description="Old type id -> current type id.")
    packs: list[PackSchema]
    failed_packs: list[PackFailureSchema]
    link_rules: LinkRules

    def as_json(self) -> dict[str, Any]:
        """The JSON-ready dict (keys that do not apply to a port are left out)."""
        return self.model_dump(mode="json", exclude_unset=True)


def build_catalogue(registry: Registry) -> NodeCatalogue:
    """The catalogue of everything ``registry`` holds, node types sorted by id."""
    nodes = {spec.type_id: NodeSchema.of(spec) for spec in sorted(registry.specs(), key=lambda s: s.type_id)}
    aliases = dict(sorted(registry.aliases.items()))
    for old, new in aliases.items():
        nodes[old] = nodes[new].model_copy(update={"type": old, "deprecated": True, "replaced_by": new})
    return NodeCatalogue(
        nodes=nodes,
        aliases=aliases,
        packs=[PackSchema.of(p) for p in registry.packs.values()],
        failed_packs=[PackFailureSchema.of(f) for f in registry.failures],
        link_rules=LinkRules.current(),
    )
