"""Pack discovery: the built-in ``nodes/`` packs, the ``nodegraph.packs`` entry points, extra folders.

A pack is a module (or package) that exports ``PACK = nodegraph.Pack(...)``. A pack that fails to
import or register is recorded in ``registry.failures`` with its traceback; every other pack still
loads.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import pkgutil
import re
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from .errors import PackError
from .registry import Pack, Registry

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["ENTRY_POINT_GROUP", "load_packs", "load_settings_packs"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "nodegraph.packs"
BUILTIN_PACKAGE = "nodes"


def _register_module(registry: Registry, module: ModuleType | Pack, source: str) -> None:
    pack = module if isinstance(module, Pack) else getattr(module, "PACK", None)
    if pack is None:
        raise PackError(f"{source}: the module defines no PACK; add `PACK = nodegraph.Pack(name, nodes=[...])`")
    web_dir = None
    if isinstance(pack, Pack) and pack.web and isinstance(module, ModuleType) and module.__file__:
        candidate = Path(module.__file__).resolve().parent / pack.web
        web_dir = candidate if candidate.is_dir() else None
    registry.add_pack(pack, source, web_dir)


def _attempt(registry: Registry, source: str, load) -> None:
    try:
        _register_module(registry, load(), source)
    except PackError as exc:
        log.warning("pack %s not loaded: %s", source, exc)
        registry.add_failure(source, str(exc), traceback.format_exc())
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a broken pack (even one calling sys.exit) must not stop the others
        log.warning("pack %s failed to import: %s: %s", source, type(exc).__name__, exc)
        registry.add_failure(source, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _builtin_modules() -> list[str]:
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    names = []
    for info in pkgutil.iter_modules(list(spec.submodule_search_locations)):
        if not info.name.startswith("_"):
            names.append(f"{BUILTIN_PACKAGE}.{info.name}")
    return sorted(names)


def _import_path(path: Path) -> ModuleType:
    """Import a pack from a folder (package with ``__init__.py``) or a single ``.py`` file."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"nodegraph_ext_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(name, path / "__init__.py",
                                                      submodule_search_locations=[str(path)])
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PackError(f"dir:{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec, so the pack's relative imports work
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _dir_packs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith((".", "_")):
            continue
        if child.is_dir() and (child / "__init__.py").is_file():
            found.append(child)
        elif child.suffix == ".py" and child.is_file():
            found.append(child)
    return found


def load_settings_packs(settings: Settings, *, indexed: bool = False) -> Registry:
    """A registry of the packs from the places ``settings`` names.

    ``indexed``: when the cached pack index of these places is current, a registry that imports a
    pack only when one of its node types is asked for (:mod:`nodegraph.packindex`); otherwise every
    pack loads and the index is written for the next time.
    """
    places = dict(builtin=settings.builtin_packs, entry_points=settings.entry_point_packs,
                  dirs=list(settings.nodes_dirs))
    if not indexed:
        return load_packs(Registry(), **places)
    from .packindex import indexed_registry, write_index

    registry = indexed_registry(**places)
    if registry is None:
        registry = load_packs(Registry(), **places)
        write_index(registry, **places)
    return registry


def load_packs(
    registry: Registry,
    *,
    builtin: bool = True,
    entry_points: bool = True,
    dirs: Iterable[Path] = (),
) -> Registry:
    """Load packs from the three places into ``registry`` (built-in first, then entry points, then dirs)."""
    if builtin:
        for modname in _builtin_modules():
            _attempt(registry, f"builtin:{modname}", lambda m=modname: importlib.import_module(m))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "?"
            _attempt(registry, f"entry-point:{dist}:{ep.name}", ep.load)
    for folder in dirs:
        folder = Path(folder)
        if not folder.is_dir():
            registry.add_failure(f"dir:{folder}", f"pack folder {folder} does not exist; check --nodes-dir")
            continue
        for path in _dir_packs(folder):
            _attempt(registry, f"dir:{path}", lambda p=path: _import_path(p))
    return registry
