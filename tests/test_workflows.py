"""Every workflow in workflows/ loads, validates and runs, and writes what it promises."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from nodegraph import Engine, Settings

WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory):
    # One engine for all workflows, as a batch job would have: models load once.
    base = tmp_path_factory.mktemp("wf")
    settings = Settings(input_dir=ROOT / "input", output_dir=base / "output", temp_dir=base / "temp",
                        entry_point_packs=False)
    return Engine.from_settings(settings)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_runs(path, shared_engine, tmp_path):
    engine = shared_engine
    result = engine.validate(path.read_text())
    assert result.valid, result.issues
    run = engine.run(json.loads(path.read_text()), output_dir=tmp_path)
    assert run.ok, run.error
    written = sorted(p for p in tmp_path.rglob("*.png"))
    assert written, f"{path.name} wrote no image"
