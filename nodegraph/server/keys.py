"""The app's state, under typed ``web.AppKey``s (no globals: each app owns its engine, store, hub, runner)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..engine import Engine
from .comfy.bridge import ComfyBridge
from .config import ServerConfig
from .hub import Hub
from .runner import JobRunner
from .store import AsyncJobStore

__all__ = ["BRIDGE", "CONFIG", "ENGINE", "HUB", "OPENAPI", "RUNNER", "STORE"]

ENGINE = web.AppKey("nodegraph.engine", Engine)
CONFIG = web.AppKey("nodegraph.config", ServerConfig)
HUB = web.AppKey("nodegraph.hub", Hub)
STORE = web.AppKey("nodegraph.store", AsyncJobStore)
RUNNER = web.AppKey("nodegraph.runner", JobRunner)
OPENAPI = web.AppKey("nodegraph.openapi", dict[str, Any])
BRIDGE = web.AppKey("nodegraph.comfy_bridge", ComfyBridge)  # the ComfyUI clients' WebSocket side
