"""The narrow facade a node gets while it runs: progress, cancellation, models, folders."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import Cancelled
from .paths import safe_join

if TYPE_CHECKING:
    from .config import Settings
    from .events import EventSink
    from .modelstore import ModelStore

__all__ = ["CancelToken", "NodeContext", "context_factory"]


class CancelToken:
    """Cooperative cancellation shared by a run and whoever may cancel it (CLI, server)."""

    def __init__(self) -> None:
        self._set = False  # a plain flag (set from any thread): runs check it before every node
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._set = True

    @property
    def cancelled(self) -> bool:
        return self._set

    def raise_if_cancelled(self) -> None:
        if self._set:
            raise Cancelled(self.reason or "cancelled")


class _RunPart(NamedTuple):
    """The part of a :class:`NodeContext` that every node of a run shares."""

    run_id: str
    settings: Settings
    models: ModelStore
    output_dir: Path
    cancel: CancelToken
    sink: EventSink


class NodeContext:
    """What a running node may use. One per node execution; nodes must not keep it."""

    def __init__(
        self,
        *,
        node_id: str,
        type_id: str,
        run_id: str,
        settings: Settings,
        models: ModelStore,
        cancel: CancelToken,
        sink: EventSink,
        output_dir: Path,
        workflow: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.node_id = node_id
        self.type_id = type_id
        self._run = _RunPart(run_id, settings, models, output_dir, cancel, sink)
        self._workflow = workflow
        self.ui: dict[str, Any] = {}

    # What every node of a run shares, kept once per run (the executor makes a context per node).
    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def settings(self) -> Settings:
        return self._run.settings

    @property
    def models(self) -> ModelStore:
        return self._run.models

    @property
    def output_dir(self) -> Path:
        return self._run.output_dir

    @property
    def workflow(self) -> dict[str, Any] | None:
        """The workflow being run as JSON (output nodes embed it in the files they write).

        The engine may pass a function instead of the JSON: it is serialised on first use, so
        output nodes that never embed it do not pay for it.
        """
        if callable(self._workflow):
            self._workflow = self._workflow()
        return self._workflow

    @property
    def log(self) -> logging.Logger:
        """A logger named after the node type."""
        return logging.getLogger(f"nodegraph.node.{self.type_id}")

    # -- progress and cancellation ---------------------------------------------------------------
    def progress(self, step: int, total: int | None = None, preview: Any = None) -> None:
        """Report progress (``step`` of ``total``), optionally with a preview IMAGE; may raise Cancelled."""
        from .events import Progress  # here: packs import this module, `nodegraph validate` needs no events

        self._run.cancel.raise_if_cancelled()
        self._run.sink(Progress(run_id=self.run_id, node=self.node_id, step=step, total=total, preview=preview))

    @property
    def cancelled(self) -> bool:
        return self._run.cancel.cancelled

    def check_cancelled(self) -> None:
        """Raise :class:`~nodegraph.Cancelled` if the run was cancelled."""
        self._run.cancel.raise_if_cancelled()

    # -- UI payload ------------------------------------------------------------------------------
    def show(self, **items: Any) -> None:
        """Attach JSON data for the editor to this node's result, e.g. ``images=[{...}]``.

        Lists under the same name are concatenated. It is cached with the outputs.
        """
        for name, value in items.items():
            if isinstance(value, list) and isinstance(self.ui.get(name), list):
                self.ui[name] = self.ui[name] + value
            else:
                self.ui[name] = value

    # -- files -----------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.settings.device

    @property
    def input_dir(self) -> Path:
        return Path(self.settings.input_dir)

    @property
    def temp_dir(self) -> Path:
        return Path(self.settings.temp_dir)

    def resolve_file(self, folder: str, name: str) -> Path:
        """The path of ``name`` inside ``folder`` ("input", "output", "temp"), confined to it."""
        base = self.settings.folders(self.output_dir).get(folder)
        if base is None:
            raise ValueError(f"unknown folder {folder!r}; use 'input', 'output' or 'temp'")
        return safe_join(base, name)


def context_factory(*, run_id: str, settings: Settings, models: ModelStore, cancel: CancelToken, sink: EventSink,
                    output_dir: Path) -> Callable[[str, str, Any], NodeContext]:
    """``make(node_id, type_id, workflow)``: the :class:`NodeContext` of one node of a run, as
    ``NodeContext(...)`` with these arguments makes it, but built without a keyword call per node
    (the executor makes one for every node it runs); the run's shared part is made once."""
    part = _RunPart(run_id, settings, models, output_dir, cancel, sink)
    new = object.__new__

    def make(node_id: str, type_id: str, workflow: Any = None) -> NodeContext:
        ctx = new(NodeContext)
        ctx.__dict__ = {"node_id": node_id, "type_id": type_id, "_run": part, "_workflow": workflow, "ui": {}}
        return ctx

    return make
