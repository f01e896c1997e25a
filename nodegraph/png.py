"""Workflows embedded in PNG files: output nodes write them, the CLI and the editor read them back."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, BinaryIO

from .atomic import write_replace

__all__ = ["PNG_KEY", "read_png_workflow", "save_png", "write_png"]

PNG_KEY = "nodegraph.workflow"  # tEXt chunk holding the workflow JSON


def save_png(image: Any, path: str | Path, workflow: dict[str, Any] | None = None,
             extra: dict[str, str] | None = None) -> Path:
    """Write a PIL image as PNG, with the workflow JSON (and ``extra`` text) in its metadata.

    The file is replaced atomically: it is the old one or the complete new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_replace(path, lambda f: write_png(image, f, workflow, extra))


def write_png(image: Any, f: BinaryIO, workflow: dict[str, Any] | None = None,
              extra: dict[str, str] | None = None) -> None:
    """Encode a PIL image as PNG into the open file ``f``, with the workflow and ``extra`` as text chunks."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if workflow is not None:
        info.add_text(PNG_KEY, json.dumps(workflow, separators=(",", ":")))
    for key, value in (extra or {}).items():
        info.add_text(key, value)
    image.save(f, format="PNG", pnginfo=info, compress_level=4)


def read_png_workflow(source: str | Path | bytes) -> dict[str, Any] | None:
    """The workflow embedded in a PNG (path or bytes), or ``None`` if it carries none.

    The result is untrusted input: validate it like any workflow before running it.
    """
    from PIL import Image

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        if img.format != "PNG":
            return None
        text = getattr(img, "text", {}).get(PNG_KEY)
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
