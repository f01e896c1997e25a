"""Renamed and moved node types: old type ids keep loading, validating and running through pack aliases."""

from __future__ import annotations

import pytest
from helpers import Recorder, link, node, workflow

import nodegraph
from nodegraph import DuplicateNodeType, Engine, Pack, PackError, Port, Registry, Settings, validate
from nodegraph.validation import check


class Double(nodegraph.Node):
    """Doubles a number."""

    name = "double"

    class Inputs(nodegraph.Inputs):
        x: float = Port(1.0, description="A number.")

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="Twice x.")

    def run(self, inputs, ctx):
        return self.Outputs(value=2 * inputs.x)


class Show(nodegraph.Node):
    """Output node."""

    name = "show"
    output_node = True

    class Inputs(nodegraph.Inputs):
        value: nodegraph.ANY = Port(description="Anything.")

    class Outputs(nodegraph.Outputs):
        value: nodegraph.ANY = Port(description="The same value.")

    def run(self, inputs, ctx):
        return self.Outputs(value=inputs.value)


def registry(**aliases: str) -> Registry:
    reg = Registry()
    reg.add_pack(Pack("math2", nodes=[Double, Show], aliases=aliases), "test")
    return reg


def old_workflow() -> dict:
    return workflow(d={"type": "oldpack.twice", "version": 1, "inputs": {"x": 4.0}},
                    s=node("math2.show", value=link("d")))


def test_an_old_type_id_resolves_to_the_node_it_was_renamed_to():
    reg = registry(**{"oldpack.twice": "double"})
    assert reg.get("oldpack.twice") is reg.get("math2.double")
    assert "oldpack.twice" in reg and len(reg) == 2
    assert reg.aliases == {"oldpack.twice": "math2.double"}


def test_validation_rewrites_old_type_ids_to_the_current_ones():
    reg = registry(**{"oldpack.twice": "double"})
    assert validate(old_workflow(), reg).valid
    wf, issues = check(old_workflow(), reg)
    assert issues == [] and wf.nodes["d"].type == "math2.double" and wf.nodes["d"].inputs == {"x": 4.0}


def test_a_workflow_with_an_old_type_id_runs_as_the_new_node(tmp_path):
    engine = Engine(registry(**{"oldpack.twice": "double"}), Settings(output_dir=tmp_path, builtin_packs=False))
    rec = Recorder()
    result = engine.run(old_workflow(), sink=rec)
    assert result.ok and result.outputs["s"]["value"] == 8.0
    assert {e.type for e in rec if e.event == "node_completed" and e.node == "d"} == {"math2.double"}
    # the same workflow written with the new id has the same cache keys: nothing runs again
    new = workflow(d=node("math2.double", x=4.0), s=node("math2.show", value=link("d")))
    again = engine.run(new)
    assert again.ok and again.executed == [] and again.outputs["s"]["value"] == 8.0


def test_the_catalogue_lists_old_ids_as_deprecated_entries_naming_their_replacement():
    cat = registry(**{"oldpack.twice": "double"}).catalogue()
    assert cat["aliases"] == {"oldpack.twice": "math2.double"}
    old, new = cat["nodes"]["oldpack.twice"], cat["nodes"]["math2.double"]
    assert old["deprecated"] and old["replaced_by"] == "math2.double" and old["type"] == "oldpack.twice"
    assert not new["deprecated"] and "replaced_by" not in new
    assert old["inputs"] == new["inputs"] and old["version"] == new["version"]


def test_an_alias_must_name_a_node_of_its_own_pack():
    with pytest.raises(PackError, match="'triple', which is not a node of pack 'math2'"):
        registry(**{"oldpack.thrice": "triple"})


def test_an_alias_may_not_take_a_registered_type_id_or_another_alias():
    reg = registry(**{"oldpack.twice": "double"})
    with pytest.raises(DuplicateNodeType, match="already a node type"):
        reg.add_pack(Pack("other", nodes=[Double], aliases={"math2.show": "double"}), "test2")
    with pytest.raises(DuplicateNodeType, match="already an old name of 'math2.double'"):
        reg.add_pack(Pack("other", nodes=[Double], aliases={"oldpack.twice": "double"}), "test2")
    assert "other.double" not in reg  # all or nothing


def test_a_node_may_not_take_a_type_id_that_is_an_old_name():
    reg = registry(**{"oldpack.double": "double"})
    with pytest.raises(DuplicateNodeType, match="already an old name of 'math2.double'"):
        reg.add_pack(Pack("oldpack", nodes=[Double]), "test2")
