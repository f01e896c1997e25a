"""The model store: finds models by name, loads each once, keeps a bounded number in memory.

Nodes never keep models themselves: a loader node calls ``ctx.models.load(key, fn)`` and gets the
shared instance. Names are resolved inside the configured model folders (confined, like every file
name); absolute or ``./`` paths are accepted only when ``allow_paths`` is on (the CLI default).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import NodeExecutionError, UnsafePath
from .paths import safe_join

__all__ = ["ModelHandle", "ModelStore", "find_model", "list_models"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def find_model(dirs: Iterable[Path], name: str, kind: str | None = None, *, allow_paths: bool = True) -> Path:
    """Path of model ``name`` in ``dirs`` (under ``<dir>/<kind>/``, then ``<dir>/``), or a path when
    ``allow_paths``; raises :class:`NodeExecutionError` (or :class:`UnsafePath`) saying what is available."""
    dirs = [Path(d) for d in dirs]
    if not isinstance(name, str) or not name:
        raise NodeExecutionError("no model name given; pick one of: " + ", ".join(list_models(dirs, kind)))
    if os.path.isabs(name) or name.startswith(("./", "../", "~")):
        if not allow_paths:
            raise UnsafePath(f"model {name!r}: paths are not allowed here; use a name from the model "
                             "folders: " + ", ".join(list_models(dirs, kind)))
        path = Path(name).expanduser()
        if not path.exists():
            raise NodeExecutionError(f"model path {path} does not exist")
        return path
    for base in dirs:
        for root in ([base / kind] if kind else []) + [base]:
            if root.is_dir() and (path := safe_join(root, name)).exists():
                return path
    available = list_models(dirs, kind)
    raise NodeExecutionError(
        f"model {name!r} not found in {', '.join(str(d) for d in dirs) or '(no model folders)'}; "
        + (f"available: {', '.join(available)}" if available else "add it to a model folder")
        + ("" if not allow_paths else ", or give a path"))


def list_models(dirs: Iterable[Path], kind: str | None = None) -> list[str]:
    """Model names available for ``kind`` in ``dirs`` (entries of ``<dir>/<kind>/``, else of ``<dir>/``)."""
    names: list[str] = []
    for base in map(Path, dirs):
        root = base / kind if kind and (base / kind).is_dir() else base
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if not child.name.startswith(".") and child.name not in names:
                names.append(child.name)
    return names


class ModelStore:
    """Thread-safe; each key is loaded at most once at a time, least-recently-used beyond ``max_items``."""

    def __init__(self, dirs: Iterable[Path], *, max_items: int = 8, allow_paths: bool = True) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.max_items = max_items
        self.allow_paths = allow_paths
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.loads = 0

    # -- finding ---------------------------------------------------------------------------------
    def resolve(self, name: str, kind: str | None = None) -> Path:
        """Path of model ``name`` (looked up under ``<dir>/<kind>/`` then ``<dir>/``), or a clear error."""
        return find_model(self.dirs, name, kind, allow_paths=self.allow_paths)

    def list(self, kind: str | None = None) -> list[str]:
        """Model names available for ``kind`` (entries of ``<dir>/<kind>/``, else of ``<dir>/``)."""
        return list_models(self.dirs, kind)

    # -- loading ---------------------------------------------------------------------------------
    def load(self, key: str, loader: Callable[[], T]) -> T:
        """The model for ``key``, calling ``loader()`` only if it is not in memory yet."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            log.info("loading model %s", key)
            model = loader()
            self.loads += 1
            with self._lock:
                self._models[key] = model
                while len(self._models) > self.max_items:
                    evicted, _ = self._models.popitem(last=False)
                    log.info("unloading model %s", evicted)
            return model

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A loaded model as it flows on a link: the cache keeps a reference, never counts or copies it.

    ``model`` is whatever the loader returned; ``name`` the model's name or path; ``kind`` e.g.
    ``"unclip.prior"``; ``info`` small facts to show (sizes, source layout).
    """

    model: Any
    name: str
    kind: str
    info: dict[str, Any] = field(default_factory=dict)

    def __nodegraph_nbytes__(self) -> int:
        return 0  # owned by the model store
