"""Writing a node's images as PNG files (the workflow embedded) and showing them on the node.

The one place output and preview files are written: numbered names that never overwrite, names
confined to their folder, the workflow and the node id in each file's metadata.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import NodeExecutionError
from .images import to_pil
from .png import save_png

if TYPE_CHECKING:
    from .context import NodeContext

__all__ = ["preview_images", "save_images"]

_PREFIX = r"^[A-Za-z0-9_\-][A-Za-z0-9_\-./]*$"


def save_images(ctx: NodeContext, images: Any, prefix: str = "nodegraph", *,
                folder: Literal["output", "temp"] = "output") -> list[dict[str, str]]:
    """Write IMAGE ``(B, H, W, 3)`` as ``prefix_00001.png``, ``prefix_00002.png``, … in the output (or
    temporary) folder, never overwriting a file, and show them on the node; returns the shown entries.

    ``prefix`` may name subfolders (``run1/cat``); it may not leave the folder.
    """
    if not re.match(_PREFIX, prefix) or ".." in prefix.split("/"):
        raise NodeExecutionError(f"filename prefix {prefix!r}: use letters, digits, '_', '-', '.', and '/' for "
                                 "subfolders (no '..')")
    target = ctx.resolve_file(folder, prefix)
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    subfolder = str(Path(prefix).parent) if "/" in prefix else ""
    written = []
    for img in to_pil(images):
        path = _claim_next(directory, prefix)
        save_png(img, path, ctx.workflow, {"nodegraph.node": ctx.node_id})
        written.append({"filename": path.name, "subfolder": subfolder, "type": folder})
    ctx.show(images=written)
    return written


def preview_images(ctx: NodeContext, images: Any, prefix: str = "preview") -> list[dict[str, str]]:
    """Show images on the node without keeping them: :func:`save_images` into the temporary folder,
    under ``prefix`` and a fresh random part (so no folder scan finds earlier previews)."""
    return save_images(ctx, images, f"{prefix}_{uuid.uuid4().hex[:8]}", folder="temp")


def _claim_next(directory: Path, prefix: str) -> Path:
    """Create and return the next unused ``prefix_NNNNN.png`` in ``directory``."""
    for _ in range(100):  # another process may take a name between scan and create
        path = _next_path(directory, prefix)
        try:
            with open(path, "xb"):
                return path
        except FileExistsError:
            continue
    raise NodeExecutionError(f"could not find a free file name for {prefix!r} in {directory}")


def _next_path(directory: Path, prefix: str) -> Path:
    base = Path(prefix).name
    pattern = re.compile(re.escape(base) + r"_(\d{5,})\.png$")
    highest = 0
    for entry in os.scandir(directory):
        m = pattern.match(entry.name)
        if m:
            highest = max(highest, int(m.group(1)))
    return directory / f"{base}_{highest + 1:05d}.png"
