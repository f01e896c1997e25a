"""Confining file names to their folder, and listing what a folder holds.

Every node input or server route that names a file goes through :func:`safe_join`: the result is
always inside ``base`` after symlinks are resolved, whatever the name contains.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UnsafePath

__all__ = ["list_files", "safe_join"]


def safe_join(base: str | os.PathLike[str], name: str, *, hidden: bool = True) -> Path:
    """Join ``name`` (a relative name, ``/`` separated) to ``base`` or raise :class:`UnsafePath`.

    Refused: empty names, NUL bytes, backslashes, absolute paths, drive letters, ``..`` components
    (also when percent-decoding has already happened upstream), and names whose real path, after
    following symlinks, is outside ``base``; with ``hidden=False`` also names with a part that
    starts with ``.``.
    """
    if not hidden and isinstance(name, str) and any(part.startswith(".") for part in name.split("/")):
        raise UnsafePath(f"file name {name!r} has a hidden ('.') part; refused")
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


def list_files(folder: str | os.PathLike[str], extensions: tuple[str, ...] = (), limit: int = 10_000) -> list[str]:
    """Names of the files under ``folder``, subfolders included (``/``-separated, sorted), those with
    one of ``extensions`` when given; hidden names and symlinks out of the folder are left out."""
    if not os.path.isdir(folder):
        return []
    root = Path(os.path.realpath(folder))
    exts = tuple(e.lower() for e in extensions)
    names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        for fn in sorted(filenames):
            if fn.startswith(".") or (exts and not fn.lower().endswith(exts)):
                continue
            name = (rel / fn).as_posix()
            try:
                safe_join(root, name)
            except UnsafePath:
                continue
            names.append(name)
            if len(names) >= limit:
                return names
    return names
