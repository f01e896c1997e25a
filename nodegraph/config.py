"""Settings: one object, passed in, read from defaults < environment (``NODEGRAPH_*``) < flags."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Settings", "default_model_dirs"]

GIB = 1024**3


def default_model_dirs() -> list[Path]:
    """``./models`` and the ``models/`` folder beside the installed packs (a source checkout)."""
    dirs = [Path.cwd() / "models"]
    spec = importlib.util.find_spec("nodes")  # finds the built-in packs without importing them
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            dirs.append(Path(loc).resolve().parent / "models")
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


class Settings(BaseModel):
    """Where things live and how much memory the engine may keep."""

    model_config = ConfigDict(validate_assignment=True)

    model_dirs: list[Path] = Field(default_factory=default_model_dirs,
                                   description="Folders searched for models by name, first wins.")
    input_dir: Path = Field(Path("input"), description="Folder of input images (uploads, LoadImage).")
    output_dir: Path = Field(Path("output"), description="Folder where output nodes write files.")
    temp_dir: Path = Field(Path("output") / ".temp", description="Folder for previews.")
    nodes_dirs: list[Path] = Field(default_factory=list, description="Extra pack folders (like custom_nodes/).")
    builtin_packs: bool = Field(True, description="Load the built-in packs of nodes/.")
    entry_point_packs: bool = Field(True, description="Load packs of the `nodegraph.packs` entry-point group.")
    cache_bytes: int = Field(2 * GIB, ge=0, description="Bound of the output cache, in estimated bytes.")
    model_cache_items: int = Field(8, ge=1, description="Loaded models kept in memory.")
    device: str = Field("cpu", description="Torch device for model packs.")
    threads: int | None = Field(None, ge=1, description="Torch intra-op threads (None: torch default).")
    allow_model_paths: bool = Field(
        True, description="Model loaders accept absolute/local paths besides names in model_dirs "
        "(a server's engine has it off).")

    def folders(self, output_dir: Path | None = None) -> dict[str, Path]:
        """The folders that file-name inputs name: ``input``, ``output`` (``output_dir`` when given,
        e.g. a run's), ``temp``."""
        return {"input": Path(self.input_dir), "output": Path(output_dir or self.output_dir),
                "temp": Path(self.temp_dir)}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``NODEGRAPH_*`` environment variables, then ``overrides`` (flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        paths = {"NODEGRAPH_MODELS_DIR": "model_dirs", "NODEGRAPH_NODES_DIRS": "nodes_dirs"}
        for var, key in paths.items():
            if env.get(var):
                values[key] = [Path(p) for p in env[var].split(os.pathsep) if p]
        for var, key in (("NODEGRAPH_INPUT_DIR", "input_dir"), ("NODEGRAPH_OUTPUT_DIR", "output_dir"),
                         ("NODEGRAPH_TEMP_DIR", "temp_dir"), ("NODEGRAPH_CACHE_BYTES", "cache_bytes"),
                         ("NODEGRAPH_DEVICE", "device"), ("NODEGRAPH_THREADS", "threads")):
            if env.get(var):
                values[key] = env[var]
        if "NODEGRAPH_MODELS_DIR" in env and "model_dirs" in values:
            # Explicit folders first, then the defaults so shipped models stay reachable by name.
            values["model_dirs"] = values["model_dirs"] + [d for d in default_model_dirs()
                                                           if d not in values["model_dirs"]]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "output_dir" in values and "temp_dir" not in values:
            values["temp_dir"] = Path(values["output_dir"]) / ".temp"
        return cls(**values)
