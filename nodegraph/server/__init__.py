"""The HTTP + WebSocket server of ``nodegraph serve``: the editor, the API of docs/api.md, the job queue.

``create_app(engine, config)`` builds the aiohttp app (the tests run it in-process);
``serve(engine, config)`` runs it until stopped. Importing this package never imports torch.
"""

from __future__ import annotations

from .app import create_app, serve
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app", "serve"]
