"""The workflow format: pydantic models, loading (with format migrations) and saving.

One JSON format serves the editor and headless runs::

    {"format": "nodegraph/1",
     "nodes": {"prompt": {"type": "core.text", "version": 1, "inputs": {"value": "a red circle"}},
               "enc": {"type": "unclip.text_encode", "version": 1,
                       "inputs": {"text": {"from": "prompt", "output": "value"}}}},
     "ui": {}, "meta": {}}

An input value is a literal or a link ``{"from": NODE_ID, "output": OUTPUT_NAME}`` (an object with
exactly those two string keys). A node's optional ``mode`` is ``"bypass"`` (its outputs pass its
matching inputs through) or ``"mute"`` (it does not run, nor what needs it); see :mod:`nodegraph.modes`.
``ui`` fields belong to the editor; the engine ignores them.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FORMAT",
    "Link",
    "LinkRef",
    "NodeEntry",
    "NodeMode",
    "Workflow",
    "WorkflowData",
    "WorkflowFormatError",
    "WorkflowSnapshot",
    "as_link",
    "dump_workflow",
    "load_workflow",
    "migrate",
]

FORMAT = "nodegraph/1"
#: A node's mode: ``bypass`` passes its inputs through to its outputs, ``mute`` leaves it out of runs.
NodeMode = Literal["bypass", "mute"]


class Link(BaseModel):
    """A link from another node's named output."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, defer_build=True)
    from_: str = Field(alias="from")
    output: str


class LinkRef(NamedTuple):
    """A parsed link (cheap: validation and planning parse every input)."""

    from_: str
    output: str


def as_link(value: Any) -> LinkRef | None:
    """The link a raw input value denotes, or ``None`` for a literal."""
    if type(value) is dict and len(value) == 2:
        src = value.get("from")
        out = value.get("output")
        if type(src) is str and type(out) is str:
            return LinkRef(src, out)
    return None


class NodeEntry(BaseModel):
    """One node of a workflow."""

    # Built on first use: validating a plain workflow needs no model (see read_structure).
    model_config = ConfigDict(extra="allow", defer_build=True)
    type: str = Field(min_length=1)
    version: int | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    mode: NodeMode | None = Field(None, description="bypass: the node's outputs pass its matching inputs "
                                  "through; mute: the node and what needs it do not run; absent: it runs.")
    title: str | None = None
    ui: dict[str, Any] = Field(default_factory=dict)


class Workflow(BaseModel):
    """A whole workflow (current format)."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    format: Literal["nodegraph/1"] = FORMAT
    nodes: dict[str, NodeEntry] = Field(default_factory=dict)
    ui: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)


class WorkflowFormatError(ValueError):
    """The input is not a workflow at all; ``code`` is ``invalid_json`` or ``unsupported_format``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- format migrations ---------------------------------------------------------------------------
# Ordered: each takes a dict in format `key` and returns one in the next format. Add new ones at the
# end; never edit an old one.


def _v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
    """nodegraph/0 stored nodes as a list with ids and links as ``[node, output]`` pairs."""
    nodes: dict[str, Any] = {}
    for entry in data.get("nodes", []):
        if not isinstance(entry, dict) or "id" not in entry:
            raise WorkflowFormatError("unsupported_format", "nodegraph/0 node without an 'id'")
        entry = dict(entry)
        node_id = str(entry.pop("id"))
        inputs = {}
        for port, value in (entry.get("inputs") or {}).items():
            if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value) \
                    and port in (entry.get("linked") or []):
                value = {"from": value[0], "output": value[1]}
            inputs[port] = value
        entry.pop("linked", None)
        entry["inputs"] = inputs
        nodes[node_id] = entry
    return {"format": "nodegraph/1", "nodes": nodes, "ui": data.get("ui", {}), "meta": data.get("meta", {})}


MIGRATIONS: list[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("nodegraph/0", "nodegraph/1", _v0_to_v1),
]


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Upgrade a workflow dict from any known older format to :data:`FORMAT`."""
    fmt = data.get("format")
    for old, new, step in MIGRATIONS:
        if fmt == old:
            data = step(data)
            fmt = new
    if fmt != FORMAT:
        known = ", ".join([FORMAT] + [m[0] for m in MIGRATIONS])
        raise WorkflowFormatError(
            "unsupported_format",
            f"unsupported workflow format {fmt!r}; this version reads {known}. "
            "Was this file written by a newer nodegraph, or is it not a nodegraph workflow?")
    return data


def parse_source(source: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """JSON text or a dict → a dict in the current format; raises :class:`WorkflowFormatError`."""
    if isinstance(source, bytes | bytearray):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WorkflowFormatError("invalid_json", f"the file is not UTF-8 text ({exc}); "
                                      "is it an image? load a PNG with its embedded workflow instead") from exc
    if isinstance(source, str):
        try:
            source = json.loads(source)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise WorkflowFormatError("invalid_json", f"the file is not valid JSON: {exc}") from None
    if not isinstance(source, dict):
        raise WorkflowFormatError("unsupported_format", f"a workflow is a JSON object with a 'format' key, "
                                  f"found a JSON {type(source).__name__}")
    if "format" not in source:
        hint = ""
        if all(isinstance(v, dict) and "class_type" in v for v in source.values()) and source:
            hint = " (this looks like a ComfyUI API-format prompt, which nodegraph does not read)"
        raise WorkflowFormatError("unsupported_format", "the object has no 'format' key; a nodegraph "
                                  f"workflow starts with {{\"format\": \"{FORMAT}\", \"nodes\": {{...}}}}{hint}")
    return migrate(source)


class NodeData:
    """A node entry as :class:`NodeEntry` reads it, taken from a dict whose structure is known to be
    one :class:`NodeEntry` accepts unchanged (see :func:`read_structure`); no model is built."""

    __slots__ = ("inputs", "mode", "raw", "type", "version")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.type: str = raw["type"]
        self.version: int | None = raw.get("version")
        self.inputs: dict[str, Any] = raw.get("inputs", _EMPTY)
        self.mode: NodeMode | None = raw.get("mode")

    def model(self) -> NodeEntry:
        return NodeEntry.model_validate(self.raw)


_EMPTY: dict[str, Any] = {}  # shared, never modified: the inputs of a node that gives none


class WorkflowData:
    """A current-format workflow dict whose structure :class:`Workflow` accepts unchanged, read
    without building the pydantic models (validating a big workflow builds thousands of them and
    needs none): ``nodes`` gives what validation reads, :meth:`model` the :class:`Workflow`."""

    __slots__ = ("data", "nodes", "upgraded")

    def __init__(self, data: dict[str, Any], nodes: dict[str, NodeData | NodeEntry],
                 upgraded: dict[str, NodeEntry] | None = None) -> None:
        self.data = data
        self.nodes = nodes
        self.upgraded = upgraded or {}  # node -> its entry as this install reads it, where that differs

    def model(self) -> Workflow:
        wf = Workflow.model_validate(self.data)
        if self.upgraded:
            wf = wf.model_copy(update={"nodes": {**wf.nodes, **self.upgraded}})
        return wf


class WorkflowSnapshot:
    """A workflow dict's content at one moment, kept as its pickle (whoever owns the dict may change
    it later), and the node entries this install reads differently from it (``upgraded``, node ->
    entry); :meth:`model` gives the :class:`Workflow`, as :class:`WorkflowData` would have."""

    __slots__ = ("pickled", "upgraded")

    def __init__(self, pickled: bytes, upgraded: dict[str, NodeEntry] | None = None) -> None:
        self.pickled = pickled
        self.upgraded = upgraded or {}

    def model(self) -> Workflow:
        return WorkflowData(parse_source(pickle.loads(self.pickled)), {}, self.upgraded).model()


def as_model(workflow: Workflow | WorkflowData | WorkflowSnapshot) -> Workflow:
    """The :class:`Workflow` model of any form."""
    return workflow if isinstance(workflow, Workflow) else workflow.model()


_MODES = (None, "bypass", "mute")


def _str_keys(value: Any) -> bool:
    return type(value) is dict and all(type(k) is str for k in value)


def read_structure(data: dict[str, Any]) -> WorkflowData | None:
    """``data`` (current format) as :class:`WorkflowData` when every value is one :class:`Workflow`
    takes as it is; ``None`` when pydantic must judge it (a missing or wrong field, or a value it
    would convert), so its answer and its error messages stay the only ones."""
    nodes = data.get("nodes", _EMPTY)
    if type(nodes) is not dict or data.get("format") != FORMAT:
        return None
    for key in ("ui", "meta"):
        if key in data and not _str_keys(data[key]):
            return None
    read: dict[str, NodeData] = {}
    for nid, raw in nodes.items():
        if type(nid) is not str or type(raw) is not dict:
            return None
        t = raw.get("type")
        if type(t) is not str or not t:
            return None
        if len(raw) > 2 or "inputs" not in raw:  # the usual node is {type, inputs}: two dict lookups
            v = raw.get("version")
            if (v is not None and type(v) is not int) or raw.get("mode") not in _MODES:
                return None
            title = raw.get("title")
            if (title is not None and type(title) is not str) or ("ui" in raw and not _str_keys(raw["ui"])):
                return None
        inputs = raw.get("inputs", _EMPTY)
        if type(inputs) is not dict:
            return None
        for k in inputs:
            if type(k) is not str:
                return None
        read[nid] = NodeData(raw)
    return WorkflowData(data, read)


def load_workflow(source: str | bytes | dict[str, Any]) -> Workflow:
    """Parse and migrate; raises :class:`WorkflowFormatError` or pydantic's ValidationError."""
    return Workflow.model_validate(parse_source(source))


def dump_workflow(workflow: Workflow) -> dict[str, Any]:
    """The workflow as a JSON-ready dict (links written as ``{"from", "output"}``)."""
    return workflow.model_dump(mode="json", by_alias=True, exclude_none=True)
