"""Running plans on a Ray cluster: the second executor, an adapter beside ``server/``.

The head (``nodegraph run`` or ``nodegraph serve``) validates and plans exactly as with the local
executor; :class:`~nodegraph.cluster.executor.RayExecutor` ships each plan as plain data (the
workflow JSON, targets, key inputs, and the input files it names) to a worker — a Ray actor with
its own engine, model store and output cache — and forwards the worker's events to the head's
sinks. Files the nodes write travel back through Ray's object store and land in the head's
folders. No code travels: nodegraph and the packs are installed on every node, and the head
refuses a worker whose packs differ from its own.

Importing this package never imports ray (``pip install 'nodegraph[ray]'`` adds it); the engine
core never imports it at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ClusterOptions", "ClusterUnavailable", "connect"]

if TYPE_CHECKING:
    from .options import ClusterOptions, ClusterUnavailable


def __getattr__(name: str) -> Any:  # the options load on first use: `nodegraph --help` stays instant
    if name in ("ClusterOptions", "ClusterUnavailable"):
        from . import options

        return getattr(options, name)
    raise AttributeError(f"module 'nodegraph.cluster' has no attribute {name!r}")


def connect(options: ClusterOptions, engine: Any, *, spread: bool = False, preview_interval: float | None = None):
    """Start (or join) the cluster, start the workers and return a :class:`RayExecutor` for ``engine``'s
    registry and settings; ``engine.executor = connect(...)`` makes the engine run plans there.

    Raises :class:`ClusterUnavailable` with the reason and the fix (Ray missing, cluster unreachable,
    token authentication off, every worker refused)."""
    from .executor import RayExecutor
    from .pool import WorkerPool

    pool = WorkerPool(options, engine.registry, engine.settings)
    pool.start()
    return RayExecutor(pool, engine.settings, spread=spread, preview_interval=preview_interval)
