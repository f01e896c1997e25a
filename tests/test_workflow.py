"""The workflow format: load/save round trip and ordered format migrations."""

from __future__ import annotations

import json

import pytest
from helpers import link, node, workflow

from nodegraph import FORMAT, dump_workflow, load_workflow, validate
from nodegraph.workflow import MIGRATIONS, WorkflowFormatError, as_link, migrate


def test_round_trip_keeps_ui_and_meta():
    wf = workflow(p={"type": "core.text", "version": 1, "inputs": {"value": "a red circle"},
                     "ui": {"pos": [40, 80]}, "title": "Prompt"},
                  s=node("core.show", value=link("p")))
    wf["ui"] = {"zoom": 1.5}
    wf["meta"] = {"author": "me"}
    again = dump_workflow(load_workflow(json.dumps(wf)))
    assert again["nodes"]["p"]["ui"] == {"pos": [40, 80]}
    assert again["nodes"]["p"]["title"] == "Prompt"
    assert again["nodes"]["s"]["inputs"]["value"] == {"from": "p", "output": "value"}
    assert again["ui"] == {"zoom": 1.5} and again["meta"] == {"author": "me"}
    assert again["format"] == FORMAT


def test_links_are_objects_with_exactly_from_and_output():
    assert as_link({"from": "a", "output": "b"}) == ("a", "b")
    assert as_link({"from": "a", "output": "b", "x": 1}) is None
    assert as_link({"from": "a"}) is None
    assert as_link(["a", "b"]) is None


def test_v0_workflows_are_migrated(registry):
    v0 = {
        "format": "nodegraph/0",
        "nodes": [
            {"id": "p", "type": "core.text", "inputs": {"value": "hello"}},
            {"id": "s", "type": "core.show", "inputs": {"value": ["p", "value"]}, "linked": ["value"]},
        ],
    }
    data = migrate(v0)
    assert data["format"] == FORMAT
    assert data["nodes"]["s"]["inputs"]["value"] == {"from": "p", "output": "value"}
    assert validate(v0, registry).valid


def test_migrations_are_ordered_and_end_at_the_current_format():
    assert MIGRATIONS[-1][1] == FORMAT
    for (_, new), (old, _) in zip([(m[0], m[1]) for m in MIGRATIONS], [(m[0], m[1]) for m in MIGRATIONS[1:]], strict=False):
        assert new == old


def test_unknown_format_is_refused_with_a_reason():
    with pytest.raises(WorkflowFormatError) as info:
        load_workflow({"format": "nodegraph/42", "nodes": {}})
    assert info.value.code == "unsupported_format" and "nodegraph/1" in info.value.message


def test_comfyui_api_prompt_gets_a_helpful_message(registry):
    result = validate({"3": {"class_type": "KSampler", "inputs": {}}}, registry)
    assert "ComfyUI" in result.issues[0].message


def test_upgrading_returns_a_new_dict_and_leaves_the_callers_alone(registry):
    from nodegraph.upgrade import upgrade_workflow

    old = {"format": "nodegraph/1", "nodes": {"a": {"type": "toy.const", "version": 1, "inputs": {"value": 1}}},
           "extra": {"kept": True}}
    before = json.loads(json.dumps(old))
    new, issues = upgrade_workflow(old, registry)
    assert issues == [] and new == before and new is not old
    new["nodes"]["a"]["inputs"]["value"] = 2
    assert old == before


def test_an_upgrade_writes_the_current_id_of_a_type_the_registry_resolves_from_an_old_one(registry, monkeypatch):
    from nodegraph.upgrade import upgrade_workflow

    current = registry.get

    def get(type_id):  # a registry that knows toy.const's old name, as a pack's alias would tell it
        return current("toy.const" if type_id == "toy.old_const" else type_id)

    monkeypatch.setattr(registry, "get", get)
    old = {"format": "nodegraph/1", "nodes": {"a": {"type": "toy.old_const", "inputs": {"value": 2}}}}
    new, issues = upgrade_workflow(old, registry)
    assert issues == [] and new["nodes"]["a"] == {"type": "toy.const", "inputs": {"value": 2}}
    assert [i.code for i in validate(old, registry).issues] == ["no_outputs"]  # resolved there too


_ODD_NODES = [
    {"type": "core.show"},
    {"type": "core.show", "inputs": {"value": 1}, "version": 1, "mode": "mute", "title": "t", "ui": {"x": 1}},
    {"type": "core.show", "inputs": {}, "extra": [1, 2]},
    {"type": ""}, {"type": 5}, {"inputs": {}}, {"type": "core.show", "inputs": []},
    {"type": "core.show", "version": "2"}, {"type": "core.show", "version": True},
    {"type": "core.show", "version": 2.0}, {"type": "core.show", "mode": "off"}, {"type": "core.show", "mode": None},
    {"type": "core.show", "title": 3}, {"type": "core.show", "ui": []}, {"type": "core.show", "inputs": {1: 2}},
    "core.show", None,
]


@pytest.mark.parametrize("raw", _ODD_NODES, ids=repr)
def test_the_model_free_read_takes_only_what_the_model_takes_unchanged(raw):
    from nodegraph.workflow import Workflow, read_structure

    data = {"format": FORMAT, "nodes": {"n": raw}}
    light = read_structure(data)
    if light is None:
        assert raw not in _ODD_NODES[:3]  # plain nodes are read without the model
        return  # pydantic judges it, as before
    model = Workflow.model_validate(data).nodes["n"]
    entry = light.nodes["n"]
    assert (entry.type, entry.version, entry.inputs, entry.mode) == (model.type, model.version, model.inputs,
                                                                     model.mode)
    assert light.model() == Workflow.model_validate(data)


def test_structure_errors_are_reported_by_the_model_as_before(registry):
    result = validate({"format": FORMAT, "nodes": {"a": {"type": "core.show", "version": "x"},
                                                   "b": {"inputs": {}}}}, registry)
    assert not result.valid
    assert {(i.code, i.node) for i in result.issues} == {("invalid_workflow", "a"), ("invalid_workflow", "b")}
    assert all("each node needs a string 'type'" in i.message for i in result.issues)


def test_every_allowed_pydantic_rebuilds_deferred_models_under_a_lock():
    """The workflow, Inputs and Outputs models are built on first use (``defer_build``), which the
    server's threads may reach at once: model_rebuild is thread-safe from pydantic 2.14.0b1 on
    (pydantic#13438), so the dependency's lower bound is there."""
    import tomllib
    from pathlib import Path

    import pydantic
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    spec = next(r for r in map(Requirement, project["project"]["dependencies"]) if r.name == "pydantic").specifier
    lower = [Version(s.version) for s in spec if s.operator in (">=", ">", "==", "~=")]
    assert lower and min(lower) >= Version("2.14.0b1"), str(spec)
    assert spec.contains(pydantic.VERSION, prereleases=True)
