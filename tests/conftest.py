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


@pytest.fixture(autouse=True, scope="session")
def _fit_cache(tmp_path_factory):
    """Fitted Shapes colour maps go to a folder of this test session, not the user's cache."""
    import os

    old = os.environ.get("NODEGRAPH_FIT_CACHE")
    os.environ["NODEGRAPH_FIT_CACHE"] = str(tmp_path_factory.mktemp("fits"))
    yield
    if old is None:
        os.environ.pop("NODEGRAPH_FIT_CACHE", None)
    else:
        os.environ["NODEGRAPH_FIT_CACHE"] = old


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
