"""Files that appear complete or not at all, and removing what interrupted writes left behind.

A file is written under a hidden temporary name in its own folder, flushed and fsynced, then given
its name: :func:`write_new` links it to the first free name of a sequence (``os.link`` fails when
the name exists, so two writers never take the same one), :func:`write_replace` renames it over
the target. A kill, a full disk or a second Ctrl-C during the write leaves at most a temporary
file, never a truncated file under a real name; :func:`remove_partial` removes those leftovers
(run at start by the server and ``nodegraph run``). A temporary name records the host and process
that wrote it, so the cleanup never touches a write still in progress elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

__all__ = ["is_partial", "remove_partial", "write_new", "write_replace"]

log = logging.getLogger(__name__)

Writer = Callable[[BinaryIO], None]

_SUFFIX = ".ngpart"
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_PARTIAL = re.compile(r"^\..*\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}" + re.escape(_SUFFIX) + "$")
#: A leftover from another host (or a reused process id) is removed once it is older than this.
STALE_SECONDS = 24 * 3600
# link() is not supported by this file system (some FUSE, SMB and FAT mounts): claim, then replace.
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


def write_new(directory: Path, write: Writer, next_name: Callable[[], Path], attempts: int = 100) -> Path:
    """Write a file with ``write(f)`` and give it the first name ``next_name()`` returns that no file
    has yet; returns its path. The file appears under that name complete or not at all."""
    tmp = _write_temp(directory, write)
    try:
        for _ in range(attempts):
            path = next_name()
            try:
                os.link(tmp, path)
            except FileExistsError:
                continue  # another writer took the name between the scan and now
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                if not _claim(path):
                    continue
                os.replace(tmp, path)  # over the empty placeholder we created: a short window, only here
            _fsync_dir(directory)
            return path
        raise FileExistsError(errno.EEXIST, f"no free file name after {attempts} attempts", str(directory))
    finally:
        _unlink(tmp)


def write_replace(path: Path, write: Writer) -> Path:
    """Write ``path`` with ``write(f)``, replacing any file there; readers see the old or the new file."""
    path = Path(path)
    tmp = _write_temp(path.parent, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def is_partial(name: str) -> bool:
    """Whether ``name`` is the temporary name of a write (complete or interrupted)."""
    return _PARTIAL.match(name) is not None


def remove_partial(folders: Iterable[Path]) -> list[Path]:
    """Remove the leftovers of interrupted writes under ``folders`` (recursively); returns them.

    A temporary file of this host is removed when the process that wrote it is gone; one of another
    host (a shared network folder), when it is older than :data:`STALE_SECONDS`.
    """
    removed: list[Path] = []
    now = time.time()
    seen: set[Path] = set()
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir() or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        for root, _dirs, files in os.walk(folder):  # never follows symlinked folders
            for name in files:
                m = _PARTIAL.match(name)
                if m is None:
                    continue
                path = Path(root) / name
                try:
                    stale = now - path.lstat().st_mtime > STALE_SECONDS
                except OSError:
                    continue
                gone = m["host"] == _HOST and not pid_alive(int(m["pid"]))
                if gone or stale:
                    _unlink(path)
                    removed.append(path)
    if removed:
        log.warning("removed %d file(s) left by interrupted writes: %s", len(removed),
                    ", ".join(str(p) for p in removed[:10]) + (" ..." if len(removed) > 10 else ""))
    return removed


def _write_temp(directory: Path, write: Writer) -> Path:
    tmp = Path(directory) / f".{uuid.uuid4().hex[:6]}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}{_SUFFIX}"
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # a full disk, a second Ctrl-C: nothing half-written stays
        _unlink(tmp)
        raise
    return tmp


def _claim(path: Path) -> bool:
    try:
        with open(path, "xb"):
            return True
    except FileExistsError:
        return False


def _fsync_dir(directory: Path) -> None:
    """Make the new name durable (a crash after this keeps it); not every platform can."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host may still run (another user's, or not a pid: yes)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or not a pid at all: leave it to the age rule)
    return True


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
