"""Renamed and moved node types: old type ids keep loading, validating and running through pack aliases."""

from __future__ import annotations

import pytest
from helpers import Recorder, link, node, workflow

import nodegraph
from nodegraph import DuplicateNodeType, Engine, Pack, PackError, Registry, Settings, validate
from nodegraph.validation import check


@pytest.fixture
def nodes(engine) -> list[type[nodegraph.Node]]:
    """The toy pack's add (a + b) and sink node classes, registered again under a pack of their own."""
    return [engine.registry.get("toy.add").cls, engine.registry.get("toy.sink").cls]


def registry(nodes, **aliases: str) -> Registry:
    reg = Registry()
    reg.add_pack(Pack("math2", nodes=nodes, aliases=aliases), "test")
    return reg


def old_workflow() -> dict:
    return workflow(d={"type": "oldpack.plus", "version": 1, "inputs": {"a": 4.0, "b": 4.0}},
                    s=node("math2.sink", value=link("d")))


def test_an_old_type_id_resolves_to_the_node_it_was_renamed_to(nodes):
    reg = registry(nodes, **{"oldpack.plus": "add"})
    assert reg.get("oldpack.plus") is reg.get("math2.add")
    assert "oldpack.plus" in reg and len(reg) == 2
    assert reg.aliases == {"oldpack.plus": "math2.add"}


def test_validation_rewrites_old_type_ids_to_the_current_ones(nodes):
    reg = registry(nodes, **{"oldpack.plus": "add"})
    assert validate(old_workflow(), reg).valid
    wf, issues = check(old_workflow(), reg)
    assert issues == [] and wf.nodes["d"].type == "math2.add" and wf.nodes["d"].inputs == {"a": 4.0, "b": 4.0}


def test_a_workflow_with_an_old_type_id_runs_as_the_new_node(nodes, tmp_path):
    engine = Engine(registry(nodes, **{"oldpack.plus": "add"}), Settings(output_dir=tmp_path, builtin_packs=False))
    rec = Recorder()
    result = engine.run(old_workflow(), sink=rec)
    assert result.ok and result.outputs["s"]["value"] == 8.0
    assert {e.type for e in rec if e.event == "node_completed" and e.node == "d"} == {"math2.add"}
    # the same workflow written with the new id has the same cache keys: nothing runs again
    new = workflow(d=node("math2.add", a=4.0, b=4.0), s=node("math2.sink", value=link("d")))
    again = engine.run(new)
    assert again.ok and again.executed == [] and again.outputs["s"]["value"] == 8.0


def test_the_catalogue_lists_old_ids_as_deprecated_entries_naming_their_replacement(nodes):
    cat = registry(nodes, **{"oldpack.plus": "add"}).catalogue()
    assert cat["aliases"] == {"oldpack.plus": "math2.add"}
    old, new = cat["nodes"]["oldpack.plus"], cat["nodes"]["math2.add"]
    assert old["deprecated"] and old["replaced_by"] == "math2.add" and old["type"] == "oldpack.plus"
    assert not new["deprecated"] and "replaced_by" not in new
    assert old["inputs"] == new["inputs"] and old["version"] == new["version"]


def test_an_alias_must_name_a_node_of_its_own_pack(nodes):
    with pytest.raises(PackError, match="'subtract', which is not a node of pack 'math2'"):
        registry(nodes, **{"oldpack.minus": "subtract"})


def test_an_alias_may_not_take_a_registered_type_id_or_another_alias(nodes):
    reg = registry(nodes, **{"oldpack.plus": "add"})
    with pytest.raises(DuplicateNodeType, match="already a node type"):
        reg.add_pack(Pack("other", nodes=nodes[:1], aliases={"math2.sink": "add"}), "test2")
    with pytest.raises(DuplicateNodeType, match="already an old name of 'math2.add'"):
        reg.add_pack(Pack("other", nodes=nodes[:1], aliases={"oldpack.plus": "add"}), "test2")
    assert "other.add" not in reg  # all or nothing


def test_a_node_may_not_take_a_type_id_that_is_an_old_name(nodes):
    reg = registry(nodes, **{"oldpack.add": "add"})
    with pytest.raises(DuplicateNodeType, match="already an old name of 'math2.add'"):
        reg.add_pack(Pack("oldpack", nodes=nodes[:1]), "test2")
