"""The HTTP + WebSocket server of ``nodegraph serve``: the editor, the API of docs/api.md, the job queue.

``create_app(engine, data_dir=...)`` builds the aiohttp app (used by the tests in-process);
``serve(args)`` runs it for the command line. Importing this package never imports torch.
"""

from __future__ import annotations

from .app import create_app, serve
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app", "serve"]
