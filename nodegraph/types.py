"""Port types: the data that flows on links, and the kinds of widget values.

A *link type* is a name (``"IMAGE"``, ``"unclip.PRIOR"``) attached to an annotation with
``typing.Annotated``; any Python object can flow on such a link, the name is what the editor and
validation compare. A *widget* is a literal value typed the usual pydantic way (``int``, ``float``,
``str``, ``bool``, ``Literal[...]``) plus a few markers (:data:`Seed`, :data:`Text`, :func:`FileName`)
that tell the editor which control to draw.

Nothing here imports numpy or torch: packs describe their tensors in words and import heavy
libraries inside ``run``.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import Field

__all__ = [
    "ANY",
    "ANY_TYPE",
    "FileName",
    "IMAGE",
    "ImageFile",
    "LinkType",
    "MASK",
    "MAX_SEED",
    "Seed",
    "Text",
    "WidgetKind",
    "compatible",
    "link_accepts",
    "link_type",
    "port_type_of",
]


@dataclass(frozen=True)
class LinkType:
    """Marker for data that only arrives on links (never typed in as a literal).

    ``example`` builds a small valid value; the contract test over every registered node uses it.
    """

    name: str
    description: str = ""
    example: Callable[[], Any] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class WidgetKind:
    """Marker that refines how a literal (widget) port is edited: seed, multi-line text, file name."""

    kind: str  # "seed" | "text" | "file"
    folder: str | None = None  # for "file": "input", "output" or a model folder such as "models"
    extensions: tuple[str, ...] = ()


def link_type(name: str, description: str = "", example: Callable[[], Any] | None = None) -> Any:
    """Declare a link type for annotations: ``Prior = link_type("unclip.PRIOR", "A loaded prior.")``."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"link type name {name!r} must be dotted identifiers, e.g. 'mypack.THING'")
    return Annotated[Any, LinkType(name, description, example)]


def _example_image() -> Any:
    import numpy as np

    return np.full((1, 8, 8, 3), 0.5, dtype=np.float32)


def _example_mask() -> Any:
    import numpy as np

    mask = np.zeros((1, 8, 8), dtype=np.float32)
    mask[:, 2:6, 2:6] = 1.0
    return mask


#: RGB images: numpy float32 array (B, H, W, 3) with values in [0, 1].
IMAGE = link_type("IMAGE", "RGB images, numpy float32 (B, H, W, 3) in [0, 1].", _example_image)
#: Masks: numpy float32 array (B, H, W) with values in [0, 1]; 1 marks the selected region.
MASK = link_type("MASK", "Masks, numpy float32 (B, H, W) in [0, 1]; 1 = selected.", _example_mask)
#: The type name that links to and from every type.
ANY_TYPE = "ANY"
#: Accepts a link of any type (e.g. the inputs of a switch).
ANY = link_type(ANY_TYPE, "Any value.", lambda: 0)

#: The largest seed: 2**53 − 1, the largest integer a JSON number (a JavaScript double) holds exactly.
MAX_SEED = 2**53 - 1
#: A random seed in [0, MAX_SEED]. The editor offers "randomize" / "fixed"; the value is part of the cache key.
Seed = Annotated[int, WidgetKind("seed"), Field(ge=0, le=MAX_SEED)]
#: Multi-line text (prompts).
Text = Annotated[str, WidgetKind("text")]


def FileName(folder: str, extensions: tuple[str, ...] = ()) -> Any:  # noqa: N802 - reads as a type
    """A file name inside one of the engine's folders (``"input"``, ``"output"``, ``"models"``).

    The value is a name relative to that folder; node code resolves it with
    ``ctx.resolve_file(folder, name)``, which refuses anything that escapes the folder.
    """
    return Annotated[str, WidgetKind("file", folder, tuple(extensions))]


#: An image file in the input folder (the editor shows an upload button and a thumbnail).
ImageFile = FileName("input", (".png", ".jpg", ".jpeg", ".webp", ".bmp"))


# --- introspection used by the registry ------------------------------------------------------


@dataclass(frozen=True)
class PortType:
    """What the engine knows about one port's annotation."""

    name: str  # type name compared on links: "IMAGE", "INT", "FLOAT", "STRING", "BOOLEAN", "ENUM", ...
    link_only: bool  # True for link types: a literal is not accepted
    optional: bool  # annotation admits None
    choices: tuple[Any, ...] = ()
    widget: WidgetKind | None = None
    link: LinkType | None = None


_SCALARS = {int: "INT", float: "FLOAT", str: "STRING", bool: "BOOLEAN"}


def port_type_of(annotation: Any) -> PortType:
    """Classify a pydantic field annotation into a :class:`PortType`."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) != len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"port annotation {annotation!r}: unions other than `X | None` are not supported")
        annotation = args[0]
        origin = typing.get_origin(annotation)

    widget: WidgetKind | None = None
    if origin is Annotated:
        base, *meta = typing.get_args(annotation)
        for m in meta:
            if isinstance(m, LinkType):
                return PortType(m.name, True, optional, link=m)
            if isinstance(m, WidgetKind):
                widget = m
        annotation = base
        origin = typing.get_origin(annotation)

    if origin is Literal:
        return PortType("ENUM", False, optional, tuple(typing.get_args(annotation)), widget)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return PortType("ENUM", False, optional, tuple(m.value for m in annotation), widget)
    if annotation in _SCALARS:
        name = _SCALARS[annotation]
        if widget is not None and widget.kind == "seed":
            name = "SEED"
        return PortType(name, False, optional, (), widget)
    if annotation is Any:
        return PortType(ANY_TYPE, False, optional, (), widget)
    if origin in (list, tuple) or annotation in (list, tuple, dict) or origin is dict:
        return PortType("JSON", False, optional, (), widget)
    raise TypeError(
        f"port annotation {annotation!r} is neither a widget type (int, float, str, bool, Literal, Enum, "
        "list) nor a link type; declare data that flows on links with nodegraph.link_type(...)"
    )


# Which output types a port of a given type accepts, besides its own name (served to the editor in
# the catalogue's link rules).
_ACCEPTS: dict[str, frozenset[str]] = {
    "FLOAT": frozenset({"INT"}),
    "SEED": frozenset({"INT"}),
    "INT": frozenset({"SEED"}),
    "ENUM": frozenset({"STRING"}),
    "JSON": frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"}),
}


def compatible(output_type: str, input_type: str) -> bool:
    """Whether an output of ``output_type`` may be linked into an input of ``input_type``."""
    if input_type == ANY_TYPE or output_type == ANY_TYPE or output_type == input_type:
        return True
    return output_type in _ACCEPTS.get(input_type, frozenset())


def link_accepts() -> dict[str, frozenset[str]]:
    """Input type -> the output types it accepts besides its own (and :data:`ANY_TYPE`)."""
    return dict(_ACCEPTS)
