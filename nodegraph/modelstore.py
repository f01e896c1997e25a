"""The model store: finds models by name, loads each once, keeps a bounded amount in memory.

Nodes never keep models themselves: a loader node calls ``ctx.models.load(key, fn)`` and gets the
shared instance. Names are resolved inside the configured model folders (confined, like every file
name); absolute or ``./`` paths are accepted only when ``allow_paths`` is on (the CLI default).

The store is bounded by a number of models and, optionally, by bytes (the weights' size, counted
without importing torch); beyond either bound the least recently used models are unloaded. A
handle from :meth:`ModelStore.handle` holds its model weakly, so the output cache's copy of a
loader's result does not pin an evicted model: the handle loads it again when next used.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import NodeExecutionError, UnsafePath
from .issues import close_matches
from .paths import safe_join
from .threads import apply_torch_threads
from .types import ModelKind

__all__ = ["ModelHandle", "ModelStore", "find_model", "list_model_kind", "list_models", "model_nbytes"]

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
    close = close_matches(name, available)
    raise NodeExecutionError(
        f"model {name!r} not found in {', '.join(str(d) for d in dirs) or '(no model folders)'}; "
        + (f"did you mean {close[0]!r}? " if close else "")
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


def list_model_kind(dirs: Iterable[Path], kind: ModelKind) -> list[str]:
    """The names of the models of ``kind`` in ``dirs``, as its loader resolves them: folders holding one of
    its markers (in ``<dir>/<folder>/``, then ``<dir>/``) and files with one of its extensions (in
    ``<dir>/<folder>/``; at the top level for a kind without a folder). First folder wins a name."""
    names: list[str] = []
    for base in map(Path, dirs):
        roots = ([(base / kind.folder, True)] if kind.folder else []) + [(base, not kind.folder)]
        for root, files_here in roots:
            if not root.is_dir():
                continue
            for child in sorted(root.iterdir()):
                if child.name.startswith(".") or child.name in names:
                    continue
                if child.is_dir():
                    ok = any((child / marker).exists() for marker in kind.markers)
                else:
                    ok = files_here and child.name.lower().endswith(tuple(e.lower() for e in kind.extensions))
                if ok:
                    names.append(child.name)
    return names


_MAX_VISIT = 100_000


def model_nbytes(obj: Any) -> int:
    """Bytes of the tensors a loaded model holds: ``__nodegraph_nbytes__`` if it has one, else the
    parameters and buffers of every torch module found in its attributes (each tensor once)."""
    return sum(model_tensors(obj).values())


def model_tensors(obj: Any) -> dict[int, int]:
    """The memory a loaded model's tensors hold, by storage pointer → bytes (what :func:`model_nbytes`
    sums). Two models that share weights (a LoRA-patched copy and its base) share keys. A model with
    ``__nodegraph_nbytes__`` is one entry of its own. Taken at load: a model converted in place later
    (which no node does) would be counted as it was."""
    hook = getattr(type(obj), "__nodegraph_nbytes__", None)
    if hook is not None and not isinstance(obj, ModelHandle):
        return {-id(obj): int(hook(obj))}
    tensors: dict[int, int] = {}
    seen_obj: set[int] = set()
    stack, visited = [obj], 0
    while stack and visited < _MAX_VISIT:
        x = stack.pop()
        if id(x) in seen_obj or x is None or isinstance(x, str | bytes | int | float | bool):
            continue
        seen_obj.add(id(x))
        visited += 1
        if callable(getattr(x, "parameters", None)) and callable(getattr(x, "buffers", None)):
            for t in (*x.parameters(), *x.buffers()):  # a torch.nn.Module, without importing torch
                storage = t.untyped_storage()  # views of one storage count it once, whole
                tensors[storage.data_ptr()] = max(tensors.get(storage.data_ptr(), 0), storage.nbytes())
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list | tuple | set | frozenset):
            stack.extend(x)
        elif hasattr(x, "__dict__"):
            stack.extend(vars(x).values())
    return tensors


class ModelStore:
    """Thread-safe; each key is loaded at most once at a time; least recently used models are unloaded
    beyond ``max_items`` models or ``max_bytes`` bytes of weights (``None``: no byte bound). The model
    just loaded always stays, even alone above the byte bound. Weights several models share (a LoRA-patched
    copy and its base) count once."""

    def __init__(self, dirs: Iterable[Path], *, max_items: int = 8, max_bytes: int | None = None,
                 allow_paths: bool = True, threads: int | None = None) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.allow_paths = allow_paths
        self.threads = threads  # torch intra-op threads, set once a loader has imported torch
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._sizes: dict[str, dict[int, int]] = {}  # key → its tensors (model_tensors), with max_bytes
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

    def list_kind(self, kind: ModelKind) -> list[str]:
        """The names of the models of ``kind`` (:func:`list_model_kind`)."""
        return list_model_kind(self.dirs, kind)

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
            apply_torch_threads(self.threads)  # the node goes on to compute with the model
            self.loads += 1
            size = model_tensors(model) if self.max_bytes is not None else {}
            with self._lock:
                self._models[key] = model
                self._sizes[key] = size
                self._evict()
            return model

    def handle(self, key: str, loader: Callable[[], Any], name: str, kind: str,
               info: dict[str, Any] | None = None) -> ModelHandle:
        """The model for ``key`` as a handle that does not keep it in memory once the store unloads it
        (it is loaded again, with ``loader``, when the handle is next used)."""
        model = self.load(key, loader)
        return ModelHandle(model, name, kind, info or {}, reload=lambda alive: self._use(key, loader, alive))

    def _use(self, key: str, loader: Callable[[], Any], alive: Any) -> Any:
        """A handle's model is being used: most recently used now; back in the store if it was unloaded
        but is still in memory (someone holds it), loaded again if it is gone."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            if alive is not None:
                self._models[key] = alive
                self._sizes[key] = model_tensors(alive) if self.max_bytes is not None else {}
                self._evict()
                return alive
        return self.load(key, loader)

    def _evict(self) -> None:
        # called with the lock held; the newest model (last) is never evicted
        while len(self._models) > 1 and (len(self._models) > self.max_items or (
                self.max_bytes is not None and self._nbytes() > self.max_bytes)):
            before = self._nbytes()
            evicted = next(iter(self._models))
            if len(self._models) <= self.max_items:  # over the byte bound: the oldest model that frees memory
                # (a base whose weights a LoRA copy also holds frees nothing, and would only load again)
                evicted = next((k for k in list(self._models)[:-1] if self._nbytes(without=k) < before), evicted)
            self._models.pop(evicted)
            self._sizes.pop(evicted, None)
            log.info("unloading model %s (%.1f MB)", evicted, (before - self._nbytes()) / 1e6)

    def _nbytes(self, without: str | None = None) -> int:
        held: dict[int, int] = {}
        for key, tensors in self._sizes.items():
            if key != without:
                held.update(tensors)
        return sum(held.values())

    def nbytes(self) -> int:
        """Bytes of the loaded models' weights, shared ones once (counted only when ``max_bytes`` is set)."""
        with self._lock:
            return self._nbytes()

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._sizes.clear()


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A loaded model as it flows on a link: the cache keeps a reference, never counts or copies it.

    ``model`` is whatever the loader returned; ``name`` the model's name or path; ``kind`` e.g.
    ``"unclip.prior"``; ``info`` small facts to show (sizes, source layout). With ``reload`` (see
    :meth:`ModelStore.handle`) the handle holds the model weakly and every use goes through
    ``reload(model or None)``, which marks it used in the store and loads it again if it is gone.
    """

    _model: Any
    name: str
    kind: str
    info: dict[str, Any] = field(default_factory=dict)
    reload: Callable[[Any], Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.reload is not None:
            try:
                object.__setattr__(self, "_model", weakref.ref(self._model))
            except TypeError:  # not weak-referenceable: hold it
                object.__setattr__(self, "reload", None)

    @property
    def model(self) -> Any:
        if self.reload is None:
            return self._model
        model = self.reload(self._model())
        object.__setattr__(self, "_model", weakref.ref(model))
        return model

    def __nodegraph_nbytes__(self) -> int:
        return 0  # owned by the model store

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (sent to another process, e.g. a cluster worker's outputs), a handle carries the model
        # itself: the store that loaded it, and its weak reference, stay behind.
        return (ModelHandle, (self.model, self.name, self.kind, dict(self.info)))
