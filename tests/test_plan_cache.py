"""An unchanged workflow is not validated and planned again; anything that changes the plan is seen."""

from __future__ import annotations

import json

import pytest
from helpers import Recorder, chain, link, node, workflow
from PIL import Image

import nodegraph
from nodegraph import Engine, WorkflowInvalid


def run(engine: Engine, wf, **kw) -> Recorder:
    rec = Recorder()
    result = engine.run(wf, sink=rec, **kw)
    assert result.ok, result.error
    return rec


def test_rerunning_the_same_content_reuses_the_plan(engine):
    run(engine, chain(5))
    hits = engine.plans.hits
    rec = run(engine, chain(5))  # a new dict with the same content
    assert engine.plans.hits == hits + 1
    assert rec.ran == set() and rec.cached == {"out"}
    run(engine, json.dumps(chain(5)))  # text is its own entry, then a hit
    run(engine, json.dumps(chain(5)).encode())
    assert engine.plans.hits == hits + 1
    run(engine, json.dumps(chain(5)))
    assert engine.plans.hits == hits + 2


def test_a_workflow_changed_in_place_is_planned_again(engine):
    wf = chain(5)
    run(engine, wf)
    wf["nodes"]["n3"]["inputs"]["b"] = 2.0
    rec = run(engine, wf)
    assert rec.ran == {"n3", "n4", "out"}
    assert engine.plan(wf).nodes["n3"].literals["b"] == 2.0
    wf["nodes"]["n3"]["inputs"]["b"] = 2  # same value, another type: another workflow
    assert engine.plan(wf).nodes["n3"].literals["b"] == 2.0


def test_a_cached_plan_equals_a_fresh_one(engine):
    wf = chain(20)
    first = engine.plan(wf)
    again = engine.plan(wf)
    assert again is not first
    fresh = nodegraph.make_plan(wf, engine.registry, output_dir=str(engine.settings.output_dir.resolve()),
                                settings=engine.settings, folders=engine.settings.folders())
    assert again.order == fresh.order and again.keys() == fresh.keys() and again.targets == fresh.targets


def test_targets_and_output_folder_are_part_of_the_key(engine, tmp_path):
    wf = chain(3)
    assert engine.plan(wf).targets == ["out"]
    assert engine.plan(wf, targets=["n1"]).order == ["n0", "n1"]
    a, b = engine.plan(wf, output_dir=tmp_path / "a"), engine.plan(wf, output_dir=tmp_path / "b")
    assert a.nodes["out"].key != b.nodes["out"].key


def test_node_order_breaks_ties_so_reordered_workflows_are_not_shared(engine):
    wf = workflow(a=node("toy.const", value=1.0), b=node("toy.const", value=2.0),
                  s=node("toy.sink", value=link("a")), t=node("toy.sink", value=link("b")))
    reordered = workflow(**dict(reversed(list(wf["nodes"].items()))))
    assert engine.plan(wf).order != engine.plan(reordered).order


def test_plan_order_is_the_workflow_order_where_the_links_allow_it(engine):
    mostly_sorted = workflow(c=node("toy.const", value=1.0), s=node("toy.sink", value=link("a")),
                         a=node("toy.add", a=link("c"), b=2.0), t=node("toy.sink", value=link("c")))
    # the sink written before its source moves after it; every other node keeps its place
    assert engine.plan(mostly_sorted).order == ["c", "a", "s", "t"]
    consumers_first = workflow(s=node("toy.sink", value=link("a")), a=node("toy.add", a=link("c"), b=2.0),
                               c=node("toy.const", value=1.0))
    plan = engine.plan(consumers_first)
    assert plan.order == ["c", "a", "s"]
    assert plan.nodes["s"].key == engine.plan(mostly_sorted).nodes["s"].key
    assert set(plan.graph.edges) == {("c", "a"), ("a", "s")}


def test_volatile_nodes_get_new_keys_on_every_run(engine):
    wf = workflow(c=node("toy.clock"), s=node("toy.sink", value=link("c")))
    run(engine, wf)
    hits = engine.plans.hits
    rec = run(engine, wf)
    assert engine.plans.hits == hits + 1
    assert rec.ran == {"c", "s"}  # re-run, as without the plan cache


def test_a_deleted_input_file_is_reported_by_a_cached_plan(engine, settings):
    Image.new("RGB", (4, 4)).save(settings.input_dir / "a.png")
    wf = workflow(l=node("core.load_image", image="a.png"), s=node("toy.sink", value=link("l", "width")))
    run(engine, wf)
    run(engine, wf)
    (settings.input_dir / "a.png").unlink()
    with pytest.raises(WorkflowInvalid) as info:
        engine.plan(wf)
    assert [i.code for i in info.value.issues] == ["file_not_found"]


def test_adding_a_pack_drops_cached_plans(engine):
    wf = chain(3)
    engine.plan(wf)
    assert len(engine.plans) == 1

    class Extra(nodegraph.Node):
        """A node of a pack added later."""

        name = "extra"

        class Inputs(nodegraph.Inputs):
            pass

        class Outputs(nodegraph.Outputs):
            value: float = nodegraph.Port()

        def run(self, inputs, ctx):
            return self.Outputs(value=1.0)

    engine.registry.add_pack(nodegraph.Pack("later", nodes=[Extra]), "test")
    hits = engine.plans.hits
    engine.plan(wf)
    assert engine.plans.hits == hits and len(engine.plans) == 1


def test_invalid_workflows_are_not_cached(engine):
    wf = workflow(a=node("toy.nope"), s=node("toy.sink", value=link("a")))
    for _ in range(2):
        with pytest.raises(WorkflowInvalid):
            engine.plan(wf)
    assert len(engine.plans) == 0


def test_a_plan_shows_the_workflow_as_it_was_planned_after_the_caller_changes_the_dict(engine):
    wf = chain(5)
    wf["meta"]["note"] = ["kept"]
    first = engine.plan(wf)
    wf["nodes"]["n3"]["inputs"]["b"] = 2.0  # the caller edits its dict after planning
    wf["meta"]["note"].append("edited")
    assert first.workflow.nodes["n3"].inputs["b"] == 1.0
    hits = engine.plans.hits
    again = engine.plan(chain(5) | {"meta": {"note": ["kept"]}})  # the old content: the kept plan
    assert engine.plans.hits == hits + 1
    assert again.workflow.nodes["n3"].inputs["b"] == 1.0
    assert again.workflow.meta == {"note": ["kept"]}



def test_a_plan_is_built_from_a_workflow_model_as_before(engine):
    planned = engine.plan(chain(3))
    model = nodegraph.load_workflow(chain(3))
    plan = nodegraph.Plan(workflow=model, nodes=planned.nodes, order=planned.order, targets=planned.targets)
    assert plan.workflow is model and plan.source is model
    assert engine.executor.execute(plan).ok
    with pytest.raises(TypeError, match="source= .*nodes="):
        nodegraph.Plan(nodes=planned.nodes, order=planned.order, targets=planned.targets)


def test_shared_objects_and_copies_of_them_are_the_same_content(engine):
    shared = [1, 2]
    wf = chain(3)
    wf["meta"] = {"a": shared, "b": shared}
    engine.plan(wf)
    hits = engine.plans.hits
    engine.plan(chain(3) | {"meta": {"a": [1, 2], "b": [1, 2]}})
    assert engine.plans.hits == hits + 1
    cyclic = chain(3)
    cyclic["meta"]["self"] = cyclic["meta"]  # no pickle: planned every time, never a crash
    kept = len(engine.plans)
    assert engine.plan(cyclic).order == ["n0", "n1", "n2", "out"]
    assert len(engine.plans) == kept
