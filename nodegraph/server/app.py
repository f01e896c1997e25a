"""The aiohttp application (:func:`create_app`) and ``nodegraph serve`` (:func:`serve`).

``create_app`` wires one engine, one job store, one WebSocket hub and one job runner into an app,
under ``web.AppKey``s; the store opens and the runner starts with the app, and both stop with it
(the running job is asked to stop and recorded ``interrupted``). ``serve`` reads the command-line
arguments, refuses to listen beyond loopback without a token, and runs the app until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from ..config import Settings
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


def create_app(engine: Engine, settings: Settings | None = None, *, data_dir: str | Path,
               token: str | None = None, config: ServerConfig | None = None, **options: Any) -> web.Application:
    """The server app for ``engine``. ``options`` are :class:`ServerConfig` fields (limits, web_dir...).

    ``settings`` defaults to ``engine.settings``; the server turns ``allow_model_paths`` off on both
    (model loaders then accept only names inside the model folders).
    """
    settings = settings if settings is not None else engine.settings
    settings.allow_model_paths = False
    engine.settings.allow_model_paths = False
    engine.models.allow_paths = False
    base = config.model_dump() if config is not None else {}
    config = ServerConfig(**{**base, **options, "data_dir": Path(data_dir), "token": token or base.get("token")})

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


# --- nodegraph serve -----------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(output_dir=getattr(args, "output_dir", None),
                                 input_dir=getattr(args, "input_dir", None))
    if getattr(args, "nodes_dir", None):
        settings.nodes_dirs = [*settings.nodes_dirs, *args.nodes_dir]
    if getattr(args, "models_dir", None):
        settings.model_dirs = [*args.models_dir, *settings.model_dirs]
    settings.allow_model_paths = False
    return settings


def serve(args: argparse.Namespace) -> int:
    """``nodegraph serve``: returns the exit code (2 when refusing to start)."""
    logging.getLogger("nodegraph.server").setLevel(logging.INFO)
    try:
        config = ServerConfig.from_env(host=args.host, port=args.port, token=args.token, data_dir=args.data_dir)
    except ValueError as exc:
        log.error("invalid server options: %s", exc)
        return 2
    if not is_loopback(config.host) and not config.token:
        log.error("refusing to listen on %s without a token: anyone who can reach this address could run "
                  "workflows and read your files. Start with --token SECRET (or NODEGRAPH_TOKEN), or bind "
                  "127.0.0.1.", config.host)
        return 2
    settings = _settings(args)
    settings.input_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine.from_settings(settings)
    for failure in engine.registry.failures:
        log.warning("pack %s failed to load: %s", failure.source, failure.message)
    app = create_app(engine, settings, data_dir=config.data_dir, token=config.token, config=config)
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
