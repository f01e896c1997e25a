"""The registry: node type id → spec, the packs they came from, and packs that failed to load.

A pack may keep old type ids working after a rename or a move (``Pack(aliases={old: name})``): the
registry resolves an alias to the node's spec, validation rewrites the workflow to the new id, and
the catalogue lists the old id as a deprecated entry naming its replacement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DuplicateNodeType, PackError
from .issues import close_matches
from .node import Node, NodeSpec, derive_spec
from .types import ModelKind

__all__ = ["Pack", "PackFailure", "PackInfo", "Registry"]


@dataclass(frozen=True)
class Pack:
    """What a pack module exports as ``PACK``.

    ``name`` namespaces its node types (``name.node``); ``web`` is a folder of front-end extension
    files (relative to the module), served by the server under ``/extensions/<name>/``;
    ``evaluations`` maps a name to ``"module:function"`` run by ``nodegraph eval NAME [ARGS]``
    (the function takes the argument list and returns an exit code); ``aliases`` maps old type ids
    (any pack's namespace, for a node that moved) to the ``name`` of one of this pack's nodes.
    """

    name: str
    nodes: Sequence[type[Node]]
    version: str = "0"
    description: str = ""
    web: str | None = None
    evaluations: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)


@dataclass
class PackInfo:
    """A pack that loaded: where from, and which node types it registered."""

    name: str
    source: str  # "builtin:nodes.core", "entry-point:dist-name", "dir:/path/to/pack"
    version: str
    description: str
    node_types: list[str] = field(default_factory=list)
    web_dir: Path | None = None
    evaluations: dict[str, str] = field(default_factory=dict)


@dataclass
class PackFailure:
    """A pack that did not load: which one, why, and the traceback."""

    source: str
    message: str
    traceback: str = ""


class Registry:
    """Node specs by type id. Registering a pack is all-or-nothing."""

    def __init__(self) -> None:
        self._specs: dict[str, NodeSpec] = {}
        self._aliases: dict[str, str] = {}  # old type id -> current type id
        self._packs: dict[str, PackInfo] = {}
        self._failures: list[PackFailure] = []
        #: Bumped whenever node types or aliases change: what was validated against an older
        #: generation (a cached plan) must be validated again.
        self.generation = 0

    def add_pack(self, pack: Pack, source: str, web_dir: Path | None = None) -> PackInfo:
        """Register every node of ``pack``; raises :class:`PackError` and registers nothing on error."""
        if not isinstance(pack, Pack):
            raise PackError(f"{source}: PACK must be a nodegraph.Pack, got {type(pack).__name__}")
        if not pack.name or not pack.name.replace("_", "a").isalnum() or not pack.name.islower():
            raise PackError(f"{source}: pack name {pack.name!r} must be a lower-case identifier like 'mypack'")
        if pack.name in self._packs:
            other = self._packs[pack.name]
            raise PackError(f"pack name {pack.name!r} is defined twice: by {other.source} and by {source}; "
                            "rename one of them (pack names namespace node type ids)")
        specs: list[NodeSpec] = []
        for cls in pack.nodes:
            try:
                spec = derive_spec(cls, pack.name)
            except TypeError as exc:
                raise PackError(f"{source}: {exc}") from exc
            if spec.type_id in self._aliases:
                raise DuplicateNodeType(
                    f"node type {spec.type_id!r} of {source} is already an old name of "
                    f"{self._aliases[spec.type_id]!r}; give the node class another `name`")
            if spec.type_id in self._specs or any(s.type_id == spec.type_id for s in specs):
                first = self._specs.get(spec.type_id)
                owner = self._packs[first.pack].source if first else source
                raise DuplicateNodeType(
                    f"node type {spec.type_id!r} is defined twice: by {owner} and by {source}; "
                    "give one of the node classes another `name`")
            specs.append(spec)
        aliases = self._check_aliases(pack, source, {s.cls.name: s.type_id for s in specs})
        for spec in specs:
            self._specs[spec.type_id] = spec
        self._aliases.update(aliases)
        self.generation += 1
        info = PackInfo(pack.name, source, pack.version, pack.description, [s.type_id for s in specs], web_dir,
                        dict(pack.evaluations))
        self._packs[pack.name] = info
        return info

    def _check_aliases(self, pack: Pack, source: str, names: dict[str, str]) -> dict[str, str]:
        aliases: dict[str, str] = {}
        for old, name in pack.aliases.items():
            if name not in names:
                raise PackError(f"{source}: alias {old!r} names {name!r}, which is not a node of pack "
                                f"{pack.name!r}; its nodes are: {', '.join(names) or 'none'}")
            if old in self._specs or old in names.values() or old in self._aliases:
                taken = "a node type" if old not in self._aliases else f"an old name of {self._aliases[old]!r}"
                raise DuplicateNodeType(f"{source}: alias {old!r} is already {taken}; drop the alias")
            aliases[old] = names[name]
        return aliases

    def add_failure(self, source: str, message: str, traceback: str = "") -> None:
        self._failures.append(PackFailure(source, message, traceback))

    @property
    def packs(self) -> dict[str, PackInfo]:
        """The packs that loaded, by name."""
        return self._packs

    @property
    def failures(self) -> list[PackFailure]:
        """The packs that did not load."""
        return self._failures

    @failures.setter
    def failures(self, value: list[PackFailure]) -> None:
        self._failures = value

    @packs.setter
    def packs(self, value: dict[str, PackInfo]) -> None:
        self._packs = value

    def get(self, type_id: str) -> NodeSpec | None:
        """The spec of ``type_id``, or of the node it is an old name of; ``None`` if unknown."""
        spec = self._specs.get(type_id)
        if spec is None and type_id in self._aliases:
            spec = self._specs[self._aliases[type_id]]
        return spec

    def __contains__(self, type_id: object) -> bool:
        return type_id in self._specs or type_id in self._aliases

    @property
    def aliases(self) -> dict[str, str]:
        """Old type id → current type id, for every rename the packs declare."""
        return dict(self._aliases)

    def __len__(self) -> int:
        return len(self._specs)

    def specs(self) -> list[NodeSpec]:
        return list(self._specs.values())

    def model_kinds(self) -> dict[str, ModelKind]:
        """The model kinds the node types' model inputs declare (``nodegraph.ModelName``), by name."""
        kinds: dict[str, ModelKind] = {}
        for spec in self._specs.values():
            for port in spec.inputs.values():
                widget = port.type.widget
                if widget is not None and widget.model is not None:
                    kinds.setdefault(widget.model.name, widget.model)
        return kinds

    def suggest(self, type_id: str) -> list[str]:
        """Registered type ids that look like ``type_id`` (for 'did you mean' messages)."""
        return close_matches(type_id, self._specs, n=3)

    def catalogue(self) -> dict[str, Any]:
        """The node catalogue as JSON (:class:`nodegraph.catalogue.NodeCatalogue`): every node's
        schema, the old ids of renamed nodes, the packs, the packs that failed, and the link rules."""
        from .catalogue import build_catalogue

        return build_catalogue(self).as_json()
