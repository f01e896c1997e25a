"""The node base class, its ports, and the spec the registry derives from them.

A node is a class with nested pydantic ``Inputs`` / ``Outputs`` models and a ``run(inputs, ctx)``
method. Everything the engine and the editor need to know (types, defaults, constraints,
descriptions, the JSON Schema) is read from those models once, into a :class:`NodeSpec`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .quickcheck import quick_accept
from .types import PortType, port_type_of

if TYPE_CHECKING:
    from .checking import CheckContext
    from .context import NodeContext
    from .fingerprint import FingerprintContext

__all__ = ["ITEMSIZE", "Inputs", "Node", "NodeSpec", "Outputs", "Port", "PortSpec"]

_NG = "nodegraph"  # key of our extras inside a field's json_schema_extra


class Inputs(BaseModel):
    """Base of a node's ``Inputs`` model. Link values may be any Python object."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", frozen=True, defer_build=True)


class Outputs(BaseModel):
    """Base of a node's ``Outputs`` model. Outputs have names, never positions."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", defer_build=True)


#: Bytes per element of the ``dtype`` names an output's ``shape`` may be declared with.
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "uint8": 1, "bool": 1}

Dim = int | str | None


def Port(  # noqa: N802 - reads like pydantic's Field
    default: Any = ...,
    *,
    description: str = "",
    lazy: bool = False,
    step: float | None = None,
    display: str | None = None,
    shape: tuple[Dim, ...] | None = None,
    dtype: str = "float32",
    **constraints: Any,
) -> Any:
    """Declare a port: a pydantic ``Field`` plus what the engine and the editor need.

    ``default`` makes the input optional. ``lazy=True`` defers evaluating the upstream branch until
    the node asks for it (see :meth:`Node.check_lazy`). Constraints are pydantic's (``ge``, ``le``,
    ``gt``, ``lt``, ``min_length``, ``max_length``, ``pattern``, ...). ``step`` and ``display``
    (``"slider"``) are hints for number widgets.

    ``shape`` (outputs only) declares the array an output holds, one entry per dimension: a number,
    the name of an integer input whose value it is, or ``None`` when only the run knows it; with
    ``dtype`` it lets validation refuse literal inputs that would ask for more memory than a node
    may take (``Settings.max_node_bytes``) before anything runs, e.g.
    ``images: IMAGE = Port(description=..., shape=("batch", "height", "width", 3))``.
    """
    extra: dict[str, Any] = {}
    if lazy:
        extra["lazy"] = True
    if step is not None:
        extra["step"] = step
    if display is not None:
        extra["display"] = display
    if shape is not None:
        if dtype not in ITEMSIZE:
            raise ValueError(f"dtype {dtype!r}: use one of {', '.join(ITEMSIZE)}")
        if not all(d is None or isinstance(d, str | int) for d in shape):
            raise ValueError(f"shape {shape!r}: each dimension is a number, an input's name or None")
        extra["shape"] = list(shape)
        extra["dtype"] = dtype
    return Field(default, description=description, json_schema_extra={_NG: extra} if extra else None,
                 **constraints)


def _never(_: Any) -> bool:
    return False


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
    shape: tuple[Dim, ...] | None = None  # outputs: the declared array shape (see Port)
    dtype: str = "float32"
    _validate: list[Callable[[Any], Any]] = field(default_factory=list, compare=False, repr=False)

    @property
    def link_only(self) -> bool:
        return self.type.link_only

    @functools.cached_property
    def quick(self) -> Callable[[Any], bool]:
        """True for values pydantic would accept unchanged, told without calling it
        (:func:`~nodegraph.quickcheck.quick_accept`); false for the rest, and for every file name
        (whose file validation checks too)."""
        widget = self.type.widget
        if self.type.link_only or (widget is not None and widget.kind == "file"):
            return _never
        return quick_accept(self.annotation) or _never

    def validate_value(self, value: Any) -> Any:
        """Validate (and coerce) a literal value exactly as pydantic would; raises ValidationError."""
        if self.type.link_only or self.quick(value):
            return value
        if not self._validate:  # built on first use: keeps registry start-up cheap
            # The core validator's own method: TypeAdapter.validate_python with no options, minus a
            # layer of Python per call (validation calls it for every literal of every node).
            self._validate.append(TypeAdapter(self.annotation).validator.validate_python)
        return self._validate[0](value)


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
    #: Other words people search for this node by (the editor's search matches them), e.g.
    #: ``("ksampler", "sampler")``: the field's names for what the node does.
    search_aliases: ClassVar[tuple[str, ...]] = ()
    #: The ComfyUI node class this node stands in for when a ComfyUI workflow is imported: only for a
    #: node with the same input names, the same widget order and the same output positions.
    comfy_class: ClassVar[str | None] = None

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
        (:class:`~nodegraph.FingerprintContext`); return ``None`` to always re-run (an exception, or a
        ``sys.exit()`` with a warning, does the same). Called at planning time.
        """
        return None

    def check(self, inputs: dict[str, Any], ctx: CheckContext) -> list[tuple[str | None, str]]:
        """Problems knowable before running that need files (a model folder's layout): ``(port, message)``.

        Receives the literal inputs (defaults filled in) and the folders, with the rules the node finds
        files by, and the nodes upstream (``ctx.source(port)``; :class:`~nodegraph.CheckContext`). Called
        by validation when it is given the folders (the CLI, the server, planning), once the workflow is
        otherwise valid; each problem is an ``invalid_model`` issue. An exception here is ignored (the
        run reports the problem); so is a ``sys.exit()``, with a warning.
        """
        return []

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

    @functools.cached_property
    def link_checks(self) -> dict[str, Callable[[Any], Any] | None]:
        """Per input, in the ``Inputs`` model's field order: what checks a value arriving on a link
        (:meth:`PortSpec.validate_value`), or ``None`` for a link-only port (any object passes)."""
        return {name: None if p.type.link_only else _link_check(p) for name, p in self.inputs.items()}

    @functools.cached_property
    def file_ports(self) -> tuple[str, ...]:
        """The inputs whose literal is a file name (a ``file`` widget), which validation checks on disk."""
        return tuple(name for name, p in self.inputs.items()
                     if p.type.widget is not None and p.type.widget.kind == "file")

    @functools.cached_property
    def sized(self) -> bool:
        """Whether an output declares its ``shape`` (validation then bounds its size)."""
        return any(p.shape is not None for p in self.outputs.values())

    def output_sizes(self, values: dict[str, Any]) -> list[tuple[str, tuple[int, ...], int]]:
        """At least how large the outputs with a declared ``shape`` will be, given the input ``values``
        known before the run: ``(output, dims, bytes)`` each. A dimension named after an input that
        is not in ``values`` (linked) or not a positive integer, or declared ``None``, counts as 1."""
        sizes = []
        for name, port in self.outputs.items():
            if port.shape is None:
                continue
            dims = tuple(_dim(d, values) for d in port.shape)
            sizes.append((name, dims, math.prod(dims) * ITEMSIZE[port.dtype]))
        return sizes

    def schema(self) -> dict[str, Any]:
        """The node's catalogue entry (:class:`nodegraph.catalogue.NodeSchema`) as JSON."""
        from .catalogue import NodeSchema

        return NodeSchema.of(self).model_dump(mode="json", exclude_unset=True)


def _link_check(port: PortSpec) -> Callable[[Any], Any]:
    """:meth:`PortSpec.validate_value` of a widget port, with its quick check bound once (it runs for
    every linked widget value of every node run)."""
    quick, validate = port.quick, port.validate_value

    def check(value: Any) -> Any:
        return value if quick(value) else validate(value)

    return check


def _dim(dim: Dim, values: dict[str, Any]) -> int:
    value = values.get(dim) if isinstance(dim, str) else dim
    return value if type(value) is int and value > 0 else 1


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
            shape=tuple(extra["shape"]) if "shape" in extra else None,
            dtype=extra.get("dtype", "float32"),
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
    aliases = cls.search_aliases
    if not isinstance(aliases, tuple | list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise TypeError(f"{cls.__name__}.search_aliases must be a tuple of non-empty strings, got {aliases!r}")
    if cls.comfy_class is not None and not (isinstance(cls.comfy_class, str) and cls.comfy_class.isidentifier()):
        raise TypeError(f"{cls.__name__}.comfy_class must be a ComfyUI class name like 'SaveImage', "
                        f"got {cls.comfy_class!r}")
    for attr, base in (("Inputs", Inputs), ("Outputs", Outputs)):
        model = getattr(cls, attr, None)
        if not (isinstance(model, type) and issubclass(model, base)):
            raise TypeError(f"{cls.__name__}.{attr} must subclass nodegraph.{attr}")
    type_id = f"{pack}.{cls.name}"
    inputs = _ports(cls.Inputs, cls.__name__, outputs=False)
    outputs = _ports(cls.Outputs, cls.__name__, outputs=True)
    for name, port in outputs.items():
        unknown = [d for d in port.shape or () if isinstance(d, str) and d not in inputs]
        if unknown:
            raise TypeError(f"{cls.__name__}.Outputs.{name}: shape names {unknown}, which are not inputs of the "
                            f"node; its inputs are: {', '.join(inputs) or 'none'}")
    return NodeSpec(type_id=type_id, pack=pack, cls=cls, inputs=inputs, outputs=outputs)
