"""What a volatile node's ``fingerprint`` sees at planning time, and the file signature loaders return.

A fingerprint is computed before anything runs, for every volatile node of a plan: it gets the
folders (read-only) and finds files as the node will when it runs, nothing else of the engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .modelstore import find_model
from .paths import safe_join

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["FingerprintContext", "file_signature"]


@dataclass(frozen=True)
class FingerprintContext:
    """The folders a fingerprint may look at, and the rules the running node will find files by."""

    model_dirs: tuple[Path, ...]
    input_dir: Path
    allow_model_paths: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> FingerprintContext:
        return cls(tuple(Path(d) for d in settings.model_dirs), Path(settings.input_dir), settings.allow_model_paths)

    def resolve_model(self, name: str, kind: str | None = None) -> Path:
        """The path ``ctx.models.resolve(name, kind)`` gives when the node runs (same errors)."""
        return find_model(self.model_dirs, name, kind, allow_paths=self.allow_model_paths)

    def resolve_input(self, name: str) -> Path:
        """The path ``ctx.resolve_file("input", name)`` gives when the node runs (confined to the folder)."""
        return safe_join(self.input_dir, name)


def file_signature(path: str | os.PathLike[str], limit: int = 2000) -> str:
    """The path, then the size and modification time of the file, or the relative names, sizes and
    modification times of the files under the folder (the first ``limit``, in a stable order): it
    changes when they do, without reading their contents."""
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"
    parts: list[str] = [str(path)]
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            file = Path(root) / name
            try:
                st = file.stat()
            except OSError:  # removed while we walk: the next plan sees the change
                continue
            parts.append(f"{file.relative_to(path).as_posix()}:{st.st_size}:{st.st_mtime_ns}")
            if len(parts) > limit:
                return "|".join(parts)
    return "|".join(parts)
