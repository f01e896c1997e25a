"""Node modes: a bypassed node passes its matching input through, a muted node and what needs it do not run."""

from __future__ import annotations

from helpers import Recorder, link, node, workflow

from nodegraph import dump_workflow, load_workflow, validate


def moded(mode: str, type_: str, **inputs):
    return {**node(type_, **inputs), "mode": mode}


def run(engine, wf, **kw):
    rec = Recorder()
    return engine.run(wf, sink=rec, **kw), rec


def test_a_bypassed_node_passes_its_input_of_the_same_type_through(engine):
    wf = workflow(c=node("toy.const", value=1.0), plus=moded("bypass", "toy.add", a=link("c"), b=10.0),
                  out=node("toy.sink", value=link("plus")))
    result, rec = run(engine, wf)
    assert result.ok and result.outputs["out"]["value"] == 1.0
    assert "plus" not in rec.ran and rec.ran == {"c", "out"}


def test_a_bypassed_node_passes_a_literal_and_chains_of_bypassed_nodes_are_followed(engine):
    wf = workflow(first=moded("bypass", "toy.add", a=5.0, b=1.0), second=moded("bypass", "toy.fail", value=link("first")),
                  out=node("toy.sink", value=link("second")))
    result, rec = run(engine, wf)
    assert result.ok and result.outputs["out"]["value"] == 5.0 and rec.ran == {"out"}


def test_bypassing_gives_the_cache_key_of_linking_around_the_node(engine):
    around = workflow(c=node("toy.const", value=2.0), out=node("toy.sink", value=link("c")))
    bypassed = workflow(c=node("toy.const", value=2.0), f=moded("bypass", "toy.fail", value=link("c")),
                        out=node("toy.sink", value=link("f")))
    assert engine.plan(around).nodes["out"].key == engine.plan(bypassed).nodes["out"].key
    run(engine, around)
    _, rec = run(engine, bypassed)
    assert rec.cached == {"out"} and not rec.ran


def test_a_muted_node_and_what_needs_it_do_not_run_while_other_branches_do(engine):
    wf = workflow(c=node("toy.const", value=3.0), boom=moded("mute", "toy.fail", value=link("c")),
                  needs=node("toy.sink", value=link("boom")), other=node("toy.sink", value=link("c")))
    result, rec = run(engine, wf)
    assert result.ok and rec.ran == {"c", "other"} and result.outputs == {"other": {"value": 3.0}}


def test_an_optional_input_from_a_muted_node_takes_its_default(engine):
    wf = workflow(a=node("toy.const", value=1.0), b=moded("mute", "toy.const", value=100.0),
                  s=node("toy.add", a=link("a"), b=link("b")), out=node("toy.sink", value=link("s")))
    result, rec = run(engine, wf)
    assert result.outputs["out"]["value"] == 1.0 and "b" not in rec.ran


def test_nodes_that_only_fed_a_muted_node_are_not_run(engine):
    wf = workflow(feeder=node("toy.const", value=1.0), m=moded("mute", "toy.sink", value=link("feeder")),
                  c=node("toy.const", value=2.0), out=node("toy.sink", value=link("c")))
    _, rec = run(engine, wf)
    assert rec.ran == {"c", "out"}


def test_muted_nodes_are_not_validated_but_the_nodes_that_run_are(registry):
    wf = workflow(gone=moded("mute", "nopack.nothing", x=1), c=node("toy.const", value="not a number"),
                  out=node("toy.sink", value=link("c")))
    assert [i.code for i in validate(wf, registry).issues] == ["invalid_value"]


def test_muting_every_output_is_reported_with_the_nodes(registry):
    wf = workflow(c=node("toy.const"), a=moded("mute", "toy.sink", value=link("c")),
                  b=node("toy.sink", value=link("gone")) | {"mode": "mute"})
    (issue,) = validate(wf, registry).issues
    assert issue.code == "no_outputs" and "a is muted" in issue.message and "b is muted" in issue.message


def test_asking_for_a_node_that_does_not_run_is_an_issue(registry):
    wf = workflow(c=moded("mute", "toy.const"), out=node("toy.sink", value=link("c")))
    (issue,) = validate(wf, registry, targets=["out"]).issues
    assert issue.code == "no_outputs" and issue.node == "out" and "needs c, which is muted" in issue.message


def test_a_bypassed_node_without_an_input_of_the_output_type_is_reported(registry):
    wf = workflow(b=moded("bypass", "toy.blob", nbytes=4), out=node("toy.sink", value=link("b", "data")))
    (issue,) = validate(wf, registry).issues
    assert (issue.code, issue.node, issue.port) == ("bypass_no_input", "out", "value")
    assert "no ANY input to pass through" in issue.message


def test_an_invalid_mode_is_a_structure_issue_and_modes_survive_a_round_trip(registry):
    wf = workflow(c=moded("sleep", "toy.const"))
    assert [i.code for i in validate(wf, registry).issues] == ["invalid_workflow"]
    wf = workflow(c=moded("bypass", "toy.const"), d=node("toy.const"))
    dumped = dump_workflow(load_workflow(wf))
    assert dumped["nodes"]["c"]["mode"] == "bypass" and "mode" not in dumped["nodes"]["d"]


def test_the_workflow_a_run_embeds_keeps_the_modes(engine):
    wf = workflow(c=node("toy.const"), f=moded("bypass", "toy.fail", value=link("c")), out=node("toy.sink", value=link("f")))
    assert engine.plan(wf).workflow.nodes["f"].mode == "bypass"


def test_a_literal_passed_through_must_fit_the_type_the_consumer_takes(registry):
    wf = workflow(c=moded("bypass", "toy.const", value=2.0), out=node("core.save_image", images=link("c")))
    (issue,) = validate(wf, registry).issues
    assert (issue.code, issue.node, issue.port) == ("type_mismatch", "out", "images") and "FLOAT" in issue.message
