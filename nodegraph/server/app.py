"""The aiohttp application (:func:`create_app`) and running it (:func:`serve`).

``create_app`` wires one engine, one job store, one WebSocket hub and one job runner into an app,
under ``web.AppKey``s; the store opens and the runner starts with the app, and both stop with it
(the running job is asked to stop and recorded ``interrupted``). ``serve`` refuses to listen beyond
loopback without a token and runs the app until SIGINT/SIGTERM. Both take the engine and the
:class:`ServerConfig` as objects and change neither; ``nodegraph serve`` builds them from its flags.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from ..engine import Engine
from .config import ServerConfig, is_loopback
from .hub import Hub
from .keys import CONFIG, ENGINE, HUB, OPENAPI, RUNNER, STORE
from .openapi import openapi_document, ws_message_schemas
from .routes import api, body_limit
from .runner import JobRunner
from .security import error_middleware, guard_middleware, security_headers
from .static import editor_file
from .store import AsyncJobStore, SchemaTooNew, StoreLocked

__all__ = ["create_app", "serve"]

log = logging.getLogger("nodegraph.server")

DESCRIPTION = ("The HTTP + WebSocket API of `nodegraph serve` (docs/api.md). JSON in and out; errors are "
               '`{"error": CODE, "message": TEXT}`. WebSocket messages are described by the `WsMessage` schema.')


def create_app(engine: Engine, config: ServerConfig | None = None) -> web.Application:
    """The server app for ``engine`` with ``config`` (limits, folders, token; default ``ServerConfig()``).

    The engine must load models by name only (built with ``Settings(allow_model_paths=False)``): a
    client must not make the server read a path of its choosing. Raises ValueError otherwise.
    """
    if engine.settings.allow_model_paths or engine.models.allow_paths:
        raise ValueError("this engine's model loaders accept file paths (Settings.allow_model_paths is on); a "
                         "server must load models by name only: build its engine with "
                         "Settings(allow_model_paths=False)")
    config = config if config is not None else ServerConfig()
    app = web.Application(middlewares=[error_middleware, guard_middleware(config)],
                          client_max_size=max(config.max_body_bytes, config.max_upload_bytes) + 1024 * 1024)
    hub = Hub(config.ws_queue)
    store = AsyncJobStore(config.data_dir / "jobs.sqlite3")
    app[ENGINE] = engine
    app[CONFIG] = config
    app[HUB] = hub
    app[STORE] = store
    app[RUNNER] = JobRunner(engine, store, hub, config)
    app[OPENAPI] = _openapi()
    api.install(app, body_limit)
    app.router.add_get("/{tail:.+}", editor_file)  # after every API route: the rest of web/
    app.on_response_prepare.append(security_headers)
    app.on_shutdown.append(_close_sockets)  # open WebSockets would otherwise hold the shutdown up
    app.cleanup_ctx.append(_lifecycle)
    return app


def _openapi() -> dict[str, Any]:
    from .. import __version__
    from ..workflow import Workflow

    doc = openapi_document(api, version=__version__, extra_models=(Workflow,), extra_schemas=ws_message_schemas(),
                           description=DESCRIPTION)
    doc["paths"]["/ws"]["get"]["responses"]["101"] = {
        "description": "Switching protocols: a WebSocket whose text frames are WsMessage objects",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WsMessage"}}}}
    return doc


async def _close_sockets(app: web.Application) -> None:
    await app[HUB].close()


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    store, runner, config = app[STORE], app[RUNNER], app[CONFIG]
    config.data_dir.mkdir(parents=True, exist_ok=True)
    await store.open()
    runner.start()
    try:
        yield
    finally:
        await runner.stop()
        await app[HUB].close()
        await store.close()


# --- serving ---------------------------------------------------------------------------------------


def serve(engine: Engine, config: ServerConfig) -> int:
    """Serve ``engine`` as ``config`` says until SIGINT/SIGTERM; returns the exit code (2: refused to start)."""
    logging.getLogger("nodegraph.server").setLevel(logging.INFO)
    if not is_loopback(config.host) and not config.token:
        log.error("refusing to listen on %s without a token: anyone who can reach this address could run "
                  "workflows and read your files. Start with --token SECRET (or NODEGRAPH_TOKEN), or bind "
                  "127.0.0.1.", config.host)
        return 2
    try:
        app = create_app(engine, config)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    for failure in engine.registry.failures:
        log.warning("pack %s failed to load: %s", failure.source, failure.message)
    Path(engine.settings.input_dir).mkdir(parents=True, exist_ok=True)  # uploads land there
    try:
        asyncio.run(_run(app, config))
    except (StoreLocked, SchemaTooNew) as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", config.host, config.port, exc.strerror or exc)
        return 1
    return 0


async def _run(app: web.Application, config: ServerConfig) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        for addr in runner.addresses:
            host, port = addr[0], addr[1]
            shown = f"[{host}]" if ":" in host else host
            log.info("serving the editor and API on http://%s:%d/%s", shown, port,
                     "?token=<your token>" if config.token else "")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: the running job (if any) is interrupted; queued jobs run at the next start")
    finally:
        await runner.cleanup()
