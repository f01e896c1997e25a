"""The node base class, its ports, and the spec the registry derives from them.

A node is a class with nested pydantic ``Inputs`` / ``Outputs`` models and a ``run(inputs, ctx)``
method. Everything the engine and the editor need to know (types, defaults, constraints,
descriptions, the JSON Schema) is read from those models once, into a :class:`NodeSpec`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .types import PortType, port_type_of

if TYPE_CHECKING:
    from .context import NodeContext
    from .fingerprint import FingerprintContext

__all__ = ["Inputs", "Node", "NodeSpec", "Outputs", "Port", "PortSpec"]

_NG = "nodegraph"  # key of our extras inside a field's json_schema_extra


class Inputs(BaseModel):
    """Base of a node's ``Inputs`` model. Link values may be any Python object."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", frozen=True)


class Outputs(BaseModel):
    """Base of a node's ``Outputs`` model. Outputs have names, never positions."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")


def Port(  # noqa: N802 - reads like pydantic's Field
    default: Any = ...,
    *,
    description: str = "",
    lazy: bool = False,
    step: float | None = None,
    display: str | None = None,
    **constraints: Any,
) -> Any:
    """Declare a port: a pydantic ``Field`` plus what the engine and the editor need.

    ``default`` makes the input optional. ``lazy=True`` defers evaluating the upstream branch until
    the node asks for it (see :meth:`Node.check_lazy`). Constraints are pydantic's (``ge``, ``le``,
    ``gt``, ``lt``, ``min_length``, ``max_length``, ``pattern``, ...). ``step`` and ``display``
    (``"slider"``) are hints for number widgets.
    """
    extra: dict[str, Any] = {}
    if lazy:
        extra["lazy"] = True
    if step is not None:
        extra["step"] = step
    if display is not None:
        extra["display"] = display
    return Field(default, description=description, json_schema_extra={_NG: extra} if extra else None,
                 **constraints)


@dataclass(frozen=True)
class PortSpec:
    """One port as the engine sees it."""

    name: str
    type: PortType
    description: str
    required: bool
    default: Any = None
    lazy: bool = False
    annotation: Any = field(default=None, compare=False)  # full annotation, constraints included
    _adapter: list[TypeAdapter] = field(default_factory=list, compare=False, repr=False)

    @property
    def link_only(self) -> bool:
        return self.type.link_only

    def validate_value(self, value: Any) -> Any:
        """Validate (and coerce) a literal value exactly as pydantic would; raises ValidationError."""
        if self.type.link_only:
            return value
        if not self._adapter:  # built on first use: keeps registry start-up cheap
            self._adapter.append(TypeAdapter(self.annotation))
        return self._adapter[0].validate_python(value)


class Node:
    """Base class of every node.

    Subclasses set ``name`` (the registry prefixes the pack: ``"unclip.prior"``), ``version``,
    ``category``, nested ``Inputs`` and ``Outputs`` models, and implement :meth:`run`. The class
    docstring is the description shown as a tooltip. Nodes keep no state between runs.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    category: ClassVar[str] = "misc"
    title: ClassVar[str | None] = None  # display name; defaults to the class name split into words
    #: A node with side effects (saving files) that anchors what a run executes.
    output_node: ClassVar[bool] = False
    #: The result may change with identical inputs (reads a file, the clock, the network).
    #: Such a node is re-run every time unless it implements :meth:`fingerprint`.
    volatile: ClassVar[bool] = False
    deprecated: ClassVar[bool] = False

    class Inputs(Inputs):
        pass

    class Outputs(Outputs):
        pass

    def run(self, inputs: Any, ctx: NodeContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.run is not implemented")

    def check_lazy(self, inputs: Any, ctx: NodeContext) -> list[str]:
        """Names of lazy inputs this node needs, given the inputs evaluated so far.

        Called before ``run`` while lazy inputs are still unevaluated (they hold ``None``); the
        engine evaluates what is returned and asks again until nothing new is needed. The default
        asks for every lazy input.
        """
        return lazy_input_names(type(self))

    def fingerprint(self, inputs: dict[str, Any], ctx: FingerprintContext) -> str | None:
        """For volatile nodes: a string that changes when the result would (e.g. a file's hash).

        Receives the literal inputs (linked inputs are absent: their upstream cache keys are already
        part of the node's key) and the folders, with the rules the node finds files by
        (:class:`~nodegraph.FingerprintContext`); return ``None`` to always re-run. Called at
        planning time.
        """
        return None

    @classmethod
    def migrate(cls, from_version: int, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """Upgrade a workflow's inputs saved with an older ``version``; ``None`` if not possible."""
        return None


@dataclass(frozen=True)
class NodeSpec:
    """Everything derived once from a node class."""

    type_id: str
    pack: str
    cls: type[Node]
    inputs: dict[str, PortSpec]
    outputs: dict[str, PortSpec]

    @property
    def version(self) -> int:
        return self.cls.version

    @functools.cached_property
    def lazy_ports(self) -> frozenset[str]:
        return frozenset(name for name, p in self.inputs.items() if p.lazy)

    @property
    def output_node(self) -> bool:
        return self.cls.output_node

    @property
    def title(self) -> str:
        """The display name: ``Node.title``, else the class name split into words."""
        return self.cls.title or _words(self.cls.__name__)

    @property
    def description(self) -> str:
        """The class docstring (the editor's tooltip)."""
        return (self.cls.__doc__ or "").strip()

    def schema(self) -> dict[str, Any]:
        """The node's catalogue entry (:class:`nodegraph.catalogue.NodeSchema`) as JSON."""
        from .catalogue import NodeSchema

        return NodeSchema.of(self).model_dump(mode="json", exclude_unset=True)


def _words(name: str) -> str:
    words: list[str] = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            words.append(" ")
        words.append(ch)
    return "".join(words)


def _ports(model: type[BaseModel], owner: str, outputs: bool) -> dict[str, PortSpec]:
    ports: dict[str, PortSpec] = {}
    for name, info in model.model_fields.items():
        # pydantic moves Annotated metadata (our markers, constraints) into info.metadata.
        full = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        try:
            ptype = port_type_of(full)
        except TypeError as exc:
            raise TypeError(f"{owner}.{'Outputs' if outputs else 'Inputs'}.{name}: {exc}") from None
        extra = (info.json_schema_extra or {}).get(_NG, {}) if isinstance(info.json_schema_extra, dict) else {}
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        ports[name] = PortSpec(
            name=name,
            type=ptype,
            description=info.description or "",
            required=required and not outputs,
            default=default,
            lazy=bool(extra.get("lazy")),
            annotation=full,
        )
    return ports


def lazy_input_names(cls: type[Node]) -> list[str]:
    """Names of the inputs of ``cls`` declared with ``Port(lazy=True)``."""
    names = []
    for name, info in cls.Inputs.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(_NG, {}).get("lazy"):
            names.append(name)
    return names


def derive_spec(cls: type[Node], pack: str) -> NodeSpec:
    """Build the :class:`NodeSpec` of ``cls`` in ``pack``; raises TypeError on a malformed node."""
    if not isinstance(cls, type) or not issubclass(cls, Node):
        raise TypeError(f"{cls!r} is not a nodegraph.Node subclass")
    if not cls.name or not cls.name.replace("_", "a").isalnum() or cls.name[0].isdigit():
        raise TypeError(f"{cls.__name__}.name must be a lower-case identifier like 'prior', got {cls.name!r}")
    if not isinstance(cls.version, int) or cls.version < 1:
        raise TypeError(f"{cls.__name__}.version must be a positive integer")
    for attr, base in (("Inputs", Inputs), ("Outputs", Outputs)):
        model = getattr(cls, attr, None)
        if not (isinstance(model, type) and issubclass(model, base)):
            raise TypeError(f"{cls.__name__}.{attr} must subclass nodegraph.{attr}")
    type_id = f"{pack}.{cls.name}"
    return NodeSpec(
        type_id=type_id,
        pack=pack,
        cls=cls,
        inputs=_ports(cls.Inputs, cls.__name__, outputs=False),
        outputs=_ports(cls.Outputs, cls.__name__, outputs=True),
    )
