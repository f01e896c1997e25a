"""An index of which pack provides which node type, cached on disk, so that a command needing a few
node types (``nodegraph validate``) imports only the packs that provide them.

Importing every pack builds every node class (pydantic models) and costs most of a short command's
start. The index records, per pack that loaded, how to import it and the type ids (and old ids) it
registers. It is keyed by nodegraph's version, the Python version, the places searched, and the
path, modification time and size of every file of every pack (the ``.py`` files of ``nodes/``, of
each ``--nodes-dir`` pack, of each entry-point pack's package) and of the ``sys.path`` folders (a
distribution installed or removed changes its folder). Any difference, a new file included, and
the packs load as usual and the index is written again. It is written only after a load in which
every pack loaded: a pack that fails is never skipped or hidden, and its failure is reported by the
full load every time.

The file lives in the user cache folder (``$XDG_CACHE_HOME/nodegraph``, default
``~/.cache/nodegraph``); a cache folder that cannot be written only costs the speed-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .registry import PackFailure, PackInfo, Registry

__all__ = ["IndexedRegistry", "index_path", "indexed_registry", "write_index"]

log = logging.getLogger(__name__)

_FORMAT = 1


def index_path(builtin: bool, entry_points: bool, dirs: Iterable[Path]) -> Path:
    """Where the index of this set of places is kept (per Python environment and checkout, so that
    several do not overwrite each other's)."""
    from .plugins import BUILTIN_PACKAGE

    spec = importlib.util.find_spec(BUILTIN_PACKAGE) if builtin else None
    builtin_at = list(spec.submodule_search_locations or []) if spec else []
    places = json.dumps([sys.prefix, builtin_at, entry_points, [str(Path(d).resolve()) for d in dirs]])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nodegraph"
    return base / f"packs-{hashlib.sha1(places.encode()).hexdigest()[:16]}.json"


def _files(root: Path) -> list[list[Any]]:
    """``[path, mtime_ns, size]`` of every ``.py`` file under ``root`` (or of ``root`` itself), sorted."""
    if root.is_file():
        st = root.stat()
        return [[str(root), st.st_mtime_ns, st.st_size]]
    found = []
    for folder, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                st = os.stat(path)
                found.append([path, st.st_mtime_ns, st.st_size])
    return found


def _stamp(builtin: bool, entry_points: bool, dirs: Iterable[Path], package_roots: Iterable[str]) -> dict[str, Any]:
    """What the index is valid for (see the module docstring)."""
    from . import __version__
    from .plugins import BUILTIN_PACKAGE, _dir_packs

    files: list[list[Any]] = []
    if builtin:
        spec = importlib.util.find_spec(BUILTIN_PACKAGE)
        for location in (spec.submodule_search_locations or []) if spec else []:
            files += _files(Path(location))
    listed = []
    for folder in dirs:
        packs = _dir_packs(Path(folder))
        listed.append([str(folder), [str(p) for p in packs]])
        for path in packs:
            files += _files(path)
    for root in package_roots:
        files += _files(Path(root))
    # Where distributions are installed (entry-point packs); sys.path[0] is the script's or the
    # current folder, which says nothing about them.
    site = [[p, os.stat(p).st_mtime_ns] for p in sys.path[1:] if p and os.path.isdir(p)]
    return {"format": _FORMAT, "nodegraph": __version__, "python": sys.version, "dirs": listed, "files": files,
            "sys_path": site if entry_points else []}


class IndexedRegistry(Registry):
    """A registry that imports a pack the first time one of its node types is asked for.

    Anything that needs every node type (listing them, the catalogue, suggestions, the packs and
    their failures) imports every pack first, so it answers as a fully loaded registry does.
    """

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        super().__init__()
        self._entries: list[dict[str, Any] | None] = list(entries)
        self._sources = [entry["source"] for entry in entries]
        self._complete = False
        self._owner: dict[str, int] = {}
        for i, entry in enumerate(entries):
            for type_id in [*entry["types"], *entry["aliases"]]:
                self._owner[type_id] = i

    def _load(self, index: int) -> None:
        entry = self._entries[index]
        if entry is None:
            return
        self._entries[index] = None
        from .plugins import _attempt, _import_path

        kind, target = entry["kind"], entry["target"]
        if kind == "dir":
            load = lambda: _import_path(Path(target))  # noqa: E731
        elif kind == "entry-point":
            module, _, attr = target.partition(":")
            load = lambda: _attr(importlib.import_module(module), attr)  # noqa: E731
        else:
            load = lambda: importlib.import_module(target)  # noqa: E731
        _attempt(self, entry["source"], load)

    def load_all(self) -> None:
        """Import every pack not imported yet; then everything is listed in the order of a full load."""
        if self._complete:
            return
        self._complete = True
        for i in range(len(self._entries)):
            self._load(i)
        position = {source: i for i, source in enumerate(self._sources)}
        packs = sorted(self._packs.values(), key=lambda info: position.get(info.source, len(position)))
        rank = {info.name: i for i, info in enumerate(packs)}
        self._packs = {info.name: info for info in packs}
        self._specs = {t: self._specs[t] for info in packs for t in info.node_types}
        self._aliases = dict(sorted(self._aliases.items(), key=lambda kv: rank[self._specs[kv[1]].pack]))

    def get(self, type_id: str):  # noqa: ANN201 - as Registry.get
        spec = super().get(type_id)
        if spec is None and (index := self._owner.get(type_id)) is not None:
            self._load(index)
            spec = super().get(type_id)
        return spec

    def __contains__(self, type_id: object) -> bool:
        return type_id in self._owner or super().__contains__(type_id)

    @property
    def packs(self) -> dict[str, PackInfo]:
        self.load_all()
        return self._packs

    @property
    def failures(self) -> list[PackFailure]:
        self.load_all()
        return self._failures

    @property
    def aliases(self) -> dict[str, str]:
        self.load_all()
        return super().aliases

    def __len__(self) -> int:
        self.load_all()
        return super().__len__()

    def specs(self):  # noqa: ANN201 - as Registry.specs
        self.load_all()
        return super().specs()

    def suggest(self, type_id: str) -> list[str]:
        self.load_all()
        return super().suggest(type_id)


def _attr(module: Any, attr: str) -> Any:
    value = module
    for part in filter(None, attr.split(".")):
        value = getattr(value, part)
    return value


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def indexed_registry(builtin: bool, entry_points: bool, dirs: Iterable[Path]) -> IndexedRegistry | None:
    """A registry from the index of these places, or ``None`` when there is none or it is stale."""
    dirs = [Path(d) for d in dirs]
    index = _read(index_path(builtin, entry_points, dirs))
    if not isinstance(index, dict) or index.get("stamp", {}).get("format") != _FORMAT:
        return None
    try:
        stamp = _stamp(builtin, entry_points, dirs, index.get("package_roots", []))
    except OSError:  # a file recorded is gone
        return None
    if stamp != index["stamp"]:
        return None
    return IndexedRegistry(index["packs"])


def write_index(registry: Registry, builtin: bool, entry_points: bool, dirs: Iterable[Path]) -> None:
    """Record the packs of a full load of these places (only when every pack loaded)."""
    dirs = [Path(d) for d in dirs]
    path = index_path(builtin, entry_points, dirs)
    if registry.failures:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return
    targets = _entry_point_targets() if entry_points else {}
    packs, roots = [], []
    for info in registry.packs.values():
        kind, _, rest = info.source.partition(":")
        if kind == "builtin":
            target = rest
        elif kind == "dir":
            target = rest
        elif kind == "entry-point" and info.source in targets:
            target = targets[info.source]
            module = sys.modules.get(target.partition(":")[0].split(".")[0])
            if module is None or not getattr(module, "__file__", None):
                return  # a pack this index cannot watch: no index
            file = Path(module.__file__)
            roots.append(str(file.parent if file.name == "__init__.py" else file))
        else:
            return
        aliases = [old for old, new in registry.aliases.items() if new in info.node_types]
        packs.append({"source": info.source, "kind": kind, "target": target, "types": info.node_types,
                      "aliases": aliases})
    try:
        index = {"stamp": _stamp(builtin, entry_points, dirs, roots), "package_roots": roots, "packs": packs}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("pack index not written to %s: %s", path, exc)


def _entry_point_targets() -> dict[str, str]:
    import importlib.metadata

    from .plugins import ENTRY_POINT_GROUP

    return {f"entry-point:{ep.dist.name if ep.dist is not None else '?'}:{ep.name}": ep.value
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
