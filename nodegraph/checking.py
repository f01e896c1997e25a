"""What a node's own check (:meth:`~nodegraph.Node.check`) sees at validation: folders and upstream nodes.

A check reads files (a model folder's configs) but never loads or runs anything. It gets the folders
as a fingerprint does, with the rules the running node finds files by, and can follow the links
upward: ``ctx.source(port)`` is the node feeding an input, with its type id and literal inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import NodegraphError
from .fingerprint import FingerprintContext

__all__ = ["CheckContext", "Upstream"]


def _unlinked(port: str) -> Upstream | None:
    return None


@dataclass(frozen=True)
class Upstream:
    """A node feeding a linked input, as a check sees it: its type id, its literal inputs (defaults filled
    in) and, through :meth:`source`, the nodes feeding it in turn."""

    type: str
    inputs: Mapping[str, Any]
    sources: Callable[[str], Upstream | None] = field(default=_unlinked, repr=False, compare=False)

    def source(self, port: str) -> Upstream | None:
        """The node feeding this node's input ``port`` (``None``: a literal, or nothing)."""
        return self.sources(port)


@dataclass(frozen=True)
class CheckContext(FingerprintContext):
    """The folders a check may read, with the rules the running node will find files by
    (:class:`FingerprintContext`), and the nodes feeding the checked one."""

    sources: Callable[[str], Upstream | None] = field(default=_unlinked, repr=False, compare=False)

    def source(self, port: str) -> Upstream | None:
        """The node feeding input ``port`` of the checked node (``None``: a literal, or nothing)."""
        return self.sources(port)

    def missing_model(self, port: str, name: Any, kind: str | None = None) -> list[tuple[str | None, str]]:
        """``[(port, why)]`` when the running node would not find model ``name`` (``ctx.models.resolve(name,
        kind)``: not in the model folders, or a path that does not exist or is not allowed), else ``[]``;
        a loader's :meth:`~nodegraph.Node.check` in one line. A name that is not a literal is not checked."""
        if not isinstance(name, str):
            return []
        try:
            self.resolve_model(name, kind)
        except NodegraphError as exc:
            return [(port, str(exc))]
        return []
