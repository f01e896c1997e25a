"""Settings: one object, passed in, read from defaults < environment (``NODEGRAPH_*``) < flags."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Settings", "default_max_node_bytes", "default_model_dirs", "parse_bytes"]

GIB = 1024**3
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


def parse_bytes(text: str, what: str = "size") -> int:
    """'12GiB', '8G', '500MB' or a plain number of bytes → bytes (k/M/G are powers of 1000)."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*", text.lower())
    if m is None:
        raise ValueError(f"{what}={text!r}: expected a size such as 12GiB, 8G, 500MB or a number of bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


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


def default_max_node_bytes() -> int:
    """Half of this machine's physical memory (8 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (AttributeError, ValueError, OSError):
        return 8 * GIB


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
    max_node_bytes: int = Field(default_factory=default_max_node_bytes, ge=1,
                                description="Most memory one node's declared outputs may take, judged at "
                                "validation from its literal inputs (default: half the machine's memory).")
    model_cache_items: int = Field(8, ge=1, description="Loaded models kept in memory.")
    model_memory: int | None = Field(None, ge=0, description="Bound of the loaded models' weights, in bytes "
                                     "(least recently used models are unloaded beyond it); None: no bound.")
    device: str = Field("cpu", description="Torch device for model packs.")
    threads: int | None = Field(None, ge=1, description="Torch intra-op threads, set where torch is first used "
                                "by a run (None: torch's default).")
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
                         ("NODEGRAPH_MAX_NODE_BYTES", "max_node_bytes"),
                         ("NODEGRAPH_DEVICE", "device"), ("NODEGRAPH_THREADS", "threads")):
            if env.get(var):
                values[key] = env[var]
        if env.get("NODEGRAPH_MODEL_MEMORY"):
            values["model_memory"] = parse_bytes(env["NODEGRAPH_MODEL_MEMORY"], "NODEGRAPH_MODEL_MEMORY")
        if "NODEGRAPH_MODELS_DIR" in env and "model_dirs" in values:
            # Explicit folders first, then the defaults so shipped models stay reachable by name.
            values["model_dirs"] = values["model_dirs"] + [d for d in default_model_dirs()
                                                           if d not in values["model_dirs"]]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "output_dir" in values and "temp_dir" not in values:
            values["temp_dir"] = Path(values["output_dir"]) / ".temp"
        return cls(**values)
