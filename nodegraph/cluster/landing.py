"""Files that came back from workers, written into the head's folders.

Each file appears under its final name only once complete (written to a hidden temporary name in
the same folder, synced, then hard-linked to the final name, which fails rather than overwrites),
numbered like the local executor numbers them (``prefix_00007.png`` continues the folder's
sequence). A run re-run after its worker was lost sends the same files again: they keep the names
they got the first time and are written once.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from pathlib import Path

from ..errors import NodeExecutionError
from ..paths import safe_join
from ..saving import _next_path
from .wire import OutFile

__all__ = ["Lander", "write_new"]

_NUMBERED = re.compile(r"^(?P<base>.+)_\d{5,}\.png$")


class Lander:
    """Writes workers' files for the runs of one head; thread-safe."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, str, str, str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()

    def land(self, run_id: str, node: str, files: list[OutFile], output_dir: Path,
             temp_dir: Path) -> list[tuple[str, str]]:
        """Write ``files`` of ``node`` (``output`` ones into ``output_dir``, ``temp`` ones into ``temp_dir``);
        returns their ``(subfolder, filename)`` on the head, in order."""
        names = []
        for f in files:
            key = (run_id, node, f.folder, f.subfolder, f.filename)
            with self._lock:
                known = self._names.get(key)
            if known is None:
                base = Path(output_dir if f.folder == "output" else temp_dir)
                directory = safe_join(base, f.subfolder) if f.subfolder else base
                known = (f.subfolder, write_new(directory, f.filename, f.data).name)
                with self._lock:
                    self._names[key] = known
            names.append(known)
        return names

    def forget(self, run_id: str) -> None:
        """The run is over: its files will not be sent again."""
        with self._lock:
            for key in [k for k in self._names if k[0] == run_id]:
                del self._names[key]


def write_new(directory: Path, filename: str, data: bytes) -> Path:
    """Write ``data`` atomically under a name that does not exist yet: ``filename`` renumbered in the folder's
    sequence when it looks like ``prefix_00001.png``, else ``filename`` or ``stem_2.ext``, ``stem_3.ext``..."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{uuid.uuid4().hex}.part"
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        numbered = _NUMBERED.match(filename)
        for attempt in range(1, 101):  # another writer may take a name between the scan and the link
            if numbered:
                path = _next_path(directory, numbered["base"])
            else:
                stem, dot, ext = filename.rpartition(".") if "." in filename else (filename, "", "")
                path = directory / (filename if attempt == 1 else f"{stem}_{attempt}{dot}{ext}")
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                continue
        raise NodeExecutionError(f"could not find a free file name for {filename!r} in {directory}")
    finally:
        tmp.unlink(missing_ok=True)
