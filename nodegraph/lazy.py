"""Names a module exports but imports on first use (PEP 562), so importing it stays cheap.

A pack's public ``api`` module uses this to offer its torch-based library without importing torch
when the pack loads.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of module ``module`` for ``names``: each maps to ``"module:attribute"`` or to
    ``"module"`` (the module itself); a name starting with ``.`` is relative to the module's package::

        __getattr__ = nodegraph.lazy_exports(__name__, {"load": ".models:load", "tiny": ".models.tiny"})
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module-level hook's own name
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        path, _, attribute = target.partition(":")
        loaded = importlib.import_module(path, sys.modules[module].__package__)
        return getattr(loaded, attribute) if attribute else loaded

    return __getattr__
