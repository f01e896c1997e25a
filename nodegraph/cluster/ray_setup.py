"""Importing Ray and starting or joining a cluster, with loopback and token authentication enforced."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from .options import ClusterOptions, ClusterUnavailable

__all__ = ["require_ray", "start_ray"]

log = logging.getLogger(__name__)

INSTALL = "pip install 'nodegraph[ray]' (in a checkout: `make install`)"


def require_ray() -> Any:
    """The ``ray`` module, or :class:`ClusterUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def start_ray(options: ClusterOptions) -> tuple[Any, bool]:
    """Connect this process to Ray as the options say; returns ``(ray, started)`` (``started``: this call
    started Ray, so closing the pool shuts it down). A process already connected (a test's cluster) is
    used as it is. Raises :class:`ClusterUnavailable` when token authentication is off."""
    was = os.environ.get("RAY_AUTH_MODE")
    mode = was or "token"
    if mode.lower() != "token":
        raise ClusterUnavailable(f"RAY_AUTH_MODE={mode}: nodegraph keeps Ray's token authentication on (anyone who "
                                 "reaches an open Ray cluster can run code on it); unset RAY_AUTH_MODE")
    already = "ray" in sys.modules
    os.environ["RAY_AUTH_MODE"] = "token"
    local = options.address is None
    if local:
        # A local instance listens on 127.0.0.1 only: Ray's switch for single-machine clusters. It is read
        # when ray is imported (and by the processes Ray starts), so set it before, and again on the
        # constant if ray was imported already.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray = require_ray()
    if already and was is None and not ray.is_initialized():
        # Ray read its configuration when it was imported; read it again (as ray.init does when it turns
        # token authentication on by default) so that this process authenticates too.
        from ray._raylet import Config

        Config.initialize("")
    started = False
    if not ray.is_initialized():
        if local:
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = False
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False,
                                  "namespace": "nodegraph"}
        if local:
            kwargs.update(num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                          object_store_memory=options.object_store_bytes)
        try:
            ray.init(address="local" if local else options.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterUnavailable(_join_hint(options.address, exc)) from None
        except Exception as exc:
            if type(exc).__name__ == "AuthenticationError":
                raise ClusterUnavailable(_join_hint(options.address, exc)) from None
            raise
        started = True
    _check(ray, local, started)
    return ray, started


def _check(ray: Any, local: bool, started: bool) -> None:
    from ray._raylet import AuthenticationMode, get_authentication_mode

    problem = None
    if get_authentication_mode() != AuthenticationMode.TOKEN:
        problem = "this Ray cluster runs without token authentication; start it with RAY_AUTH_MODE=token"
    elif local:
        addresses = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
        if not addresses <= {"127.0.0.1", "::1"}:
            problem = f"the local Ray instance listens on {', '.join(sorted(addresses))}, not only on loopback"
    if problem is not None:
        if started:
            ray.shutdown()
        raise ClusterUnavailable(problem)


def _join_hint(address: str | None, exc: BaseException) -> str:
    if address is None:
        return f"could not start a local Ray instance: {exc}"
    return (f"could not join the Ray cluster at {address!r}: {exc}. Start it with `ray start --head` (token "
            "authentication on), and give this process the cluster's token: RAY_AUTH_TOKEN=<the output of "
            "`ray get-auth-token` on the head>, or the same ~/.ray/auth_token")
