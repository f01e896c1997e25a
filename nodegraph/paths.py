"""Confining file names to their folder.

Every node input or server route that names a file goes through :func:`safe_join`: the result is
always inside ``base`` after symlinks are resolved, whatever the name contains.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UnsafePath

__all__ = ["safe_join"]


def safe_join(base: str | os.PathLike[str], name: str) -> Path:
    """Join ``name`` (a relative name, ``/`` separated) to ``base`` or raise :class:`UnsafePath`.

    Refused: empty names, NUL bytes, backslashes, absolute paths, drive letters, ``..`` components
    (also when percent-decoding has already happened upstream), and names whose real path, after
    following symlinks, is outside ``base``.
    """
    if not isinstance(name, str) or not name or name.strip() != name:
        raise UnsafePath(f"file name {name!r} is empty or has surrounding spaces; give a name like 'cat.png'")
    if "\x00" in name:
        raise UnsafePath("file name contains a NUL byte; give a plain name like 'cat.png'")
    if "\\" in name:
        raise UnsafePath(f"file name {name!r} contains a backslash; use '/' between folders")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafePath(f"file name {name!r} is absolute; give a name relative to the folder")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"file name {name!r} has an empty, '.' or '..' part; it must stay inside its folder")
    root = Path(os.path.realpath(base))
    target = Path(os.path.realpath(root.joinpath(*parts)))
    if target != root and root not in target.parents:
        raise UnsafePath(f"file name {name!r} resolves outside its folder (a symlink?); refused")
    return target
