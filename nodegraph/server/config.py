"""Server options: where the server keeps its data, what it serves, and its limits.

Engine settings (folders, cache, device) stay in :class:`nodegraph.Settings`; this object holds only
what the HTTP/WebSocket adapter needs. Values come from defaults < ``NODEGRAPH_*`` environment
variables < explicit arguments (the ``nodegraph serve`` flags).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ServerConfig", "default_templates_dir", "default_web_dir", "is_loopback"]

MIB = 1024 * 1024


def default_web_dir() -> Path:
    """The editor's folder: ``web/`` beside the ``nodegraph`` package (a source checkout)."""
    return Path(__file__).resolve().parents[2] / "web"


def default_templates_dir() -> Path:
    """The shipped example workflows: ``workflows/`` beside the ``nodegraph`` package (a source checkout)."""
    return Path(__file__).resolve().parents[2] / "workflows"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerConfig(BaseModel):
    """Everything ``create_app`` needs besides the engine."""

    model_config = ConfigDict(validate_assignment=True)

    host: str = Field("127.0.0.1", description="Address to bind; anything but loopback needs a token.")
    port: int = Field(8188, ge=0, le=65535, description="TCP port (0: any free port).")
    token: str | None = Field(None, min_length=1, description="Shared secret every request must carry.")
    data_dir: Path = Field(Path(".nodegraph"), description="Queue/history database and saved workflows.")
    web_dir: Path = Field(default_factory=default_web_dir, description="The editor's static files.")
    templates_dir: Path = Field(default_factory=default_templates_dir,
                                description="Example workflows the editor offers as templates (*.json).")
    default_template: str = Field("text2image", description="The template a first visit to the editor opens.")
    max_body_bytes: int = Field(16 * MIB, ge=1024, description="Largest JSON request body (413 above).")
    max_upload_bytes: int = Field(32 * MIB, ge=1024, description="Largest uploaded image (413 above).")
    max_image_pixels: int = Field(64_000_000, ge=1, description="Largest uploaded image, in pixels.")
    max_queue: int = Field(1000, ge=1, description="Queued jobs at most (429 above).")
    preview_interval: float = Field(0.25, ge=0.0, description="Seconds between previews of one node.")
    preview_size: int = Field(256, ge=16, le=2048, description="Longest side of a preview, in pixels.")
    ws_queue: int = Field(2000, ge=10, description="Messages buffered per WebSocket client; a client "
                          "that falls further behind is disconnected.")
    shutdown_timeout: float = Field(10.0, ge=0.0, description="Seconds a running job gets to stop on shutdown.")
    store_retry: float = Field(2.0, gt=0.0, description="Seconds between attempts to record a finished job "
                               "while the data folder's disk is full.")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, then ``NODEGRAPH_*`` variables, then ``overrides`` (``None`` values are ignored)."""
        env = os.environ if environ is None else environ
        names = {
            "NODEGRAPH_WEB_DIR": "web_dir", "NODEGRAPH_TEMPLATES_DIR": "templates_dir",
            "NODEGRAPH_MAX_BODY_BYTES": "max_body_bytes",
            "NODEGRAPH_MAX_UPLOAD_BYTES": "max_upload_bytes", "NODEGRAPH_MAX_QUEUE": "max_queue",
            "NODEGRAPH_PREVIEW_INTERVAL": "preview_interval", "NODEGRAPH_TOKEN": "token",
        }
        values: dict[str, Any] = {key: env[var] for var, key in names.items() if env.get(var)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
