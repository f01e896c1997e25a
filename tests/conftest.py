"""Shared fixtures: an engine with the real plugin loader, the built-in packs and the toy pack."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))  # `import helpers`

import nodegraph  # noqa: E402
from nodegraph import Engine, Settings  # noqa: E402


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "input").mkdir()
    return Settings(
        model_dirs=[ROOT / "models"],
        input_dir=tmp_path / "input",
        output_dir=tmp_path / "output",
        temp_dir=tmp_path / "temp",
        nodes_dirs=[TESTS / "packs"],
        entry_point_packs=False,
        cache_bytes=64 * 1024 * 1024,
    )


@pytest.fixture
def engine(settings: Settings) -> Engine:
    eng = Engine.from_settings(settings)
    assert not eng.registry.failures, [f.message for f in eng.registry.failures]
    return eng


@pytest.fixture
def registry(engine: Engine) -> nodegraph.Registry:
    return engine.registry
