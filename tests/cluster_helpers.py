"""Shared pieces of the cluster tests (no tests here): a head engine and the Ray environment.

Ray's token authentication stays on in every test: the tests give their clusters a token of their
own (``RAY_AUTH_TOKEN``) instead of writing one into the home folder. Each test module starts Ray
once (module-scoped fixtures): starting it costs seconds on this machine.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TESTS

from nodegraph import Engine, Settings

PACKS = TESTS / "packs"
MIB = 1024 * 1024


def head_engine(tmp: Path, **overrides: Any) -> Engine:
    """The head's engine: built-in packs and the toy pack; a server's rules (models by name only)."""
    (tmp / "input").mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = dict(model_dirs=[ROOT / "models"], input_dir=tmp / "input", output_dir=tmp / "output",
                                  temp_dir=tmp / "temp", nodes_dirs=[PACKS], entry_point_packs=False,
                                  cache_bytes=64 * MIB, allow_model_paths=False)
    values.update(overrides)
    engine = Engine.from_settings(Settings(**values))
    assert not engine.registry.failures, [f.message for f in engine.registry.failures]
    return engine


def worker_settings(**extra: Any) -> dict[str, Any]:
    """What the head's flags would send the workers: its packs and models folders."""
    return {"nodes_dirs": [str(PACKS)], "entry_point_packs": False, "model_dirs": [str(ROOT / "models")],
            "cache_bytes": 64 * MIB, **extra}


@pytest.fixture(scope="module")
def ray_env() -> None:
    """A token for the test clusters, in the environment Ray reads it from. Ray keeps the token it read
    for the life of the process, so every module of the process uses the same one."""
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))


def wait_idle(executor: Any, timeout: float = 120) -> None:
    """Wait until every worker that is not lost or refused is idle (e.g. a replacement has started)."""
    deadline = time.monotonic() + timeout
    while any(w["state"] in ("starting", "busy") for w in executor.describe()["workers"]):
        assert time.monotonic() < deadline, executor.describe()
        time.sleep(0.1)


def png_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative name, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def shape(events: list[Any]) -> list[tuple]:
    """A run's events without timestamps and placements: what a local run of it must match."""
    return [(e.event, getattr(e, "node", None), getattr(e, "step", None)) for e in events if e.event != "run_placed"]


def placements(events: list[Any]) -> list[tuple[str, int]]:
    """``(worker, attempt)`` of each ``run_placed`` event."""
    return [(e.worker, e.attempt) for e in events if e.event == "run_placed"]
