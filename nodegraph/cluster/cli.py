"""The ``--executor ray`` flags of ``nodegraph run`` and ``nodegraph serve``, and attaching the executor."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .options import ClusterOptions

__all__ = ["add_arguments", "attach", "options_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cluster (--executor ray; needs pip install 'nodegraph[ray]')")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where workflows run: this process (default) or the workers of a Ray cluster")
    g.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="join a running Ray cluster ('auto' or HOST:PORT); default: start a local instance "
                   "on 127.0.0.1 sized to this machine")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="workers to start (default: one per GPU, else one per --worker-cpus CPUs)")
    g.add_argument("--worker-gpus", type=float, default=None, metavar="G", help="GPUs per worker (default 1 "
                   "when the cluster has GPUs, else 0)")
    g.add_argument("--worker-cpus", type=float, default=None, metavar="C",
                   help="CPUs per worker, and its torch threads (default 1)")


def options_from_args(args: argparse.Namespace) -> ClusterOptions:
    """The cluster options of the flags; ``--models-dir``/``--nodes-dir`` apply to the workers too."""
    from .options import ClusterOptions

    worker: dict[str, Any] = {}
    if getattr(args, "models_dir", None):
        worker["model_dirs"] = [str(p.resolve()) for p in args.models_dir]
    if getattr(args, "nodes_dir", None):
        worker["nodes_dirs"] = [str(p.resolve()) for p in args.nodes_dir]
    return ClusterOptions(address=args.ray_address, workers=args.workers, worker_gpus=args.worker_gpus,
                          worker_cpus=args.worker_cpus, worker_settings=worker)


def attach(engine: Any, args: argparse.Namespace, *, spread: bool = False,
           preview_interval: float | None = None) -> Any:
    """Make ``engine`` run its plans on a cluster as the flags say; returns the executor (close it)."""
    from . import connect

    executor = connect(options_from_args(args), engine, spread=spread, preview_interval=preview_interval)
    engine.executor = executor
    return executor
