"""Executor semantics, asserted from the event stream of real runs through the real plugin loader."""

from __future__ import annotations

import threading
import weakref

import pytest
from helpers import Recorder, chain, link, node, workflow

import nodegraph
from nodegraph import CancelToken, Engine, Settings, WorkflowInvalid


def run(engine: Engine, wf, **kw) -> tuple[nodegraph.RunResult, Recorder]:
    rec = Recorder()
    result = engine.run(wf, sink=rec, **kw)
    return result, rec


def diamond(b_value: float = 2.0):
    return workflow(
        a=node("toy.const", value=1.0),
        b=node("toy.const", value=b_value),
        left=node("toy.add", a=link("a"), b=10.0),
        right=node("toy.add", a=link("b"), b=20.0),
        join=node("toy.add", a=link("left"), b=link("right")),
        out=node("toy.sink", value=link("join")),
    )


def test_first_run_executes_every_needed_node_once(engine):
    result, rec = run(engine, diamond())
    assert result.ok
    assert rec.ran == {"a", "b", "left", "right", "join", "out"}
    assert len(rec.nodes("node_completed")) == 6
    assert result.outputs["out"]["value"] == 33.0
    assert rec.kinds()[0] == "run_started" and rec.kinds()[-1] == "run_finished"


def test_a_run_without_a_sink_gives_the_same_result(settings):
    quiet = Engine.from_settings(settings).run(diamond())
    heard, rec = run(Engine.from_settings(settings), diamond())
    assert quiet.ok and heard.ok
    assert (quiet.executed, quiet.cached, quiet.outputs, quiet.ui) == (heard.executed, heard.cached, heard.outputs,
                                                                       heard.ui)
    assert len(rec.nodes("node_started")) == len(rec.nodes("node_completed")) == 6  # with a sink: every event


def test_node_events_are_the_models_their_constructors_build(engine):
    _, first = run(engine, diamond())
    _, again = run(engine, diamond())
    events = [e for e in [*first, *again] if e.event in ("node_started", "node_completed", "node_cached")]
    assert {e.event for e in events} == {"node_started", "node_completed", "node_cached"}
    for e in events:
        built = type(e)(**{name: getattr(e, name) for name in e.model_fields_set})
        assert built.model_fields_set == e.model_fields_set
        assert built.model_dump(mode="json", exclude={"t"}) == e.model_dump(mode="json", exclude={"t"})


def test_identical_rerun_executes_nothing(engine):
    run(engine, diamond())
    result, rec = run(engine, diamond())
    assert rec.ran == set()
    assert rec.nodes("node_started") == []
    assert rec.cached == {"out"}
    assert result.outputs["out"]["value"] == 33.0


def test_changing_one_widget_reruns_only_descendants(engine):
    run(engine, diamond())
    _, rec = run(engine, diamond(b_value=5.0))
    assert rec.ran == {"b", "right", "join", "out"}
    assert "left" in rec.cached  # the untouched branch comes from the cache


def test_identical_subgraph_in_another_workflow_is_a_hit(engine):
    run(engine, diamond())
    renamed = workflow(
        p=node("toy.const", value=1.0),
        q=node("toy.add", a=link("p"), b=10.0),
        other=node("toy.sink", value=link("q")),
    )
    _, rec = run(engine, renamed)
    assert "q" in rec.cached  # same type, inputs and upstream as `left`, different ids
    assert rec.ran == {"other"}


def test_identical_nodes_of_one_workflow_run_once(engine):
    wf = workflow(
        a1=node("toy.const", value=1.0),
        a2=node("toy.const", value=1.0),
        left=node("toy.add", a=link("a1"), b=10.0),
        right=node("toy.add", a=link("a2"), b=10.0),  # the same key as `left`
        join=node("toy.add", a=link("left"), b=link("right")),
        out=node("toy.sink", value=link("join")),
    )
    result, rec = run(engine, wf)
    assert result.ok and result.outputs["out"]["value"] == 22.0
    assert rec.ran == {"a1", "left", "join", "out"}
    assert "right" in rec.cached  # its twin ran first in the same run


def test_only_ancestors_of_outputs_run(engine):
    wf = diamond()
    wf["nodes"]["unused"] = node("toy.add", a=link("a"), b=1.0)
    _, rec = run(engine, wf)
    assert "unused" not in rec.ran
    assert "unused" not in rec[0].nodes  # not even planned


def test_running_a_chosen_node(engine):
    result, rec = run(engine, diamond(), targets=["left"])
    assert rec.ran == {"a", "left"}
    assert result.outputs == {"left": {"value": 11.0}}


def test_nodes_run_in_the_plans_order(engine, settings):
    orders = []
    for _ in range(2):
        eng = Engine.from_settings(settings)
        result, rec = run(eng, diamond())
        orders.append(rec.nodes("node_started"))
        assert result.executed == orders[-1] == eng.plan(diamond()).order
    # docs/workflows.md: of the nodes whose inputs are ready, the one written first comes next
    assert orders[0] == orders[1] == ["a", "b", "left", "right", "join", "out"]


def test_lazy_input_skips_the_unused_branch(engine):
    wf = workflow(
        yes=node("toy.const", value=1.0),
        no=node("toy.fail", fail=True),
        sw=node("core.switch", condition=True, on_true=link("yes"), on_false=link("no")),
        out=node("toy.sink", value=link("sw")),
    )
    result, rec = run(engine, wf)
    assert result.ok, result.error
    assert "no" not in rec.ran and "no" not in rec.nodes("node_started")
    assert result.outputs["out"]["value"] == 1.0
    wf["nodes"]["sw"]["inputs"]["condition"] = False
    result, rec = run(engine, wf)
    assert result.status == "failed" and result.error.node == "no"


def test_failure_stops_the_run_with_node_type_message_and_traceback(engine):
    wf = workflow(a=node("toy.const", value=1.0), f=node("toy.fail", value=link("a")),
                  out=node("toy.sink", value=link("f")))
    result, rec = run(engine, wf)
    assert result.status == "failed"
    failed = [e for e in rec if e.event == "node_failed"]
    assert len(failed) == 1
    assert (failed[0].node, failed[0].type) == ("f", "toy.fail")
    assert failed[0].message == "toy failure requested"
    assert "Traceback" in failed[0].traceback and "NodeExecutionError" in failed[0].traceback
    assert rec.finished.status == "failed"
    assert "out" not in rec.nodes("node_started")


def test_a_node_that_calls_sys_exit_fails_its_run_and_the_process_goes_on(engine):
    result, rec = run(engine, workflow(x=node("toy.exit", code=3)))
    assert result.status == "failed" and result.error.node == "x" and result.error.error_type == "SystemExit"
    assert "called sys.exit(3)" in result.error.message and "NodeExecutionError" in result.error.message
    assert rec.kinds()[-1] == "run_finished"
    bare, _ = run(engine, workflow(x=node("toy.exit", bare=True)))
    assert bare.status == "failed" and "the node called sys.exit();" in bare.error.message
    again, _ = run(engine, diamond())  # the engine still runs
    assert again.ok


def test_failure_does_not_poison_the_cache_and_recovery_reuses_upstream(engine):
    wf = workflow(a=node("toy.const", value=1.0), b=node("toy.add", a=link("a"), b=1.0),
                  f=node("toy.fail", value=link("b")), out=node("toy.sink", value=link("f")))
    result, _ = run(engine, wf)
    assert result.status == "failed"
    wf["nodes"]["f"]["inputs"]["fail"] = False
    result, rec = run(engine, wf)
    assert result.ok
    assert rec.ran == {"f", "out"}
    assert "b" in rec.cached
    assert result.outputs["out"]["value"] == 2.0


def test_bounded_cache_evicts_least_recently_used(settings):
    settings.cache_bytes = 10_000
    eng = Engine.from_settings(settings)

    def blob(tag):
        return workflow(b=node("toy.blob", nbytes=4000, tag=tag), out=node("toy.sink", value=link("b", "data")))

    run(eng, blob("x"))
    run(eng, blob("y"))
    assert eng.cache.nbytes <= 10_000
    _, rec = run(eng, blob("z"))  # evicts x's entries
    assert eng.cache.evictions > 0 and eng.cache.nbytes <= 10_000
    _, rec = run(eng, blob("x"))
    assert "b" in rec.ran  # x was evicted, so it runs again
    _, rec = run(eng, blob("x"))
    assert rec.ran == set()


def test_entry_larger_than_the_bound_is_not_kept_but_the_run_works(settings):
    settings.cache_bytes = 1000
    eng = Engine.from_settings(settings)
    wf = workflow(b=node("toy.blob", nbytes=5000), out=node("toy.sink", value=link("b", "data")))
    result, _ = run(eng, wf)
    assert result.ok and len(result.outputs["out"]["value"]) == 5000
    assert eng.cache.nbytes <= 1000


def test_volatile_node_reruns_every_time(engine):
    wf = workflow(c=node("toy.clock"), out=node("toy.sink", value=link("c")))
    first, _ = run(engine, wf)
    second, rec = run(engine, wf)
    assert "c" in rec.ran and "out" in rec.ran
    assert first.outputs["out"]["value"] != second.outputs["out"]["value"]


def test_cancel_between_nodes(engine):
    token = CancelToken()
    token.cancel()
    result, rec = run(engine, diamond(), cancel=token)
    assert result.status == "cancelled"
    assert rec.ran == set() and rec.finished.status == "cancelled"


def test_cancel_inside_progress_callback(engine):
    token = CancelToken()
    rec = Recorder()

    def sink(event):
        rec(event)
        if event.event == "progress" and event.step == 2:
            token.cancel()

    wf = workflow(s=node("toy.steps", steps=50), out=node("toy.sink", value=link("s")))
    result = engine.run(wf, sink=sink, cancel=token)
    assert result.status == "cancelled"
    steps = [e.step for e in rec if e.event == "progress"]
    assert steps == [1, 2]  # the third progress call raised
    # Nothing cached from the cancelled node: the next run does the work.
    result, rec = run(engine, wf)
    assert result.ok and "s" in rec.ran


def test_a_cancel_while_the_last_node_runs_cancels_the_run(engine):
    token = CancelToken()

    def sink(event):
        if event.event == "node_started" and event.node == "out":
            token.cancel()  # the last node never looks at the token again: it completes

    wf = workflow(c=node("toy.const", value=1.0), out=node("toy.sink", value=link("c")))
    result = engine.run(wf, sink=sink, cancel=token)
    assert result.status == "cancelled" and result.executed == ["c", "out"]
    result, rec = run(engine, wf)  # what it made is kept: the next run takes it from the cache
    assert result.ok and rec.cached == {"out"} and rec.ran == set()


def test_cancel_from_another_thread(engine):
    token = CancelToken()
    started = threading.Event()

    def sink(event):
        if event.event == "progress":
            started.set()

    wf = workflow(s=node("toy.steps", steps=1000, delay=0.01), out=node("toy.sink", value=link("s")))
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", engine.run(wf, sink=sink, cancel=token)))
    t.start()
    assert started.wait(10)
    token.cancel()
    t.join(10)
    assert box["r"].status == "cancelled"


def test_progress_events_carry_step_and_total(engine):
    wf = workflow(s=node("toy.steps", steps=3), out=node("toy.sink", value=link("s")))
    _, rec = run(engine, wf)
    assert [(e.step, e.total) for e in rec if e.event == "progress"] == [(1, 3), (2, 3), (3, 3)]


def test_linked_widget_value_is_validated_at_run_time(engine):
    wf = workflow(i=node("core.int", value=0), s=node("toy.steps", steps=link("i")),
                  out=node("toy.sink", value=link("s")))
    result, _ = run(engine, wf)
    assert result.status == "failed" and result.error.node == "s"
    assert "steps" in result.error.message and "greater than or equal to 1" in result.error.message


def test_invalid_workflow_raises_with_every_issue(engine):
    with pytest.raises(WorkflowInvalid) as info:
        engine.run(workflow(a=node("toy.nope"), s=node("toy.sink")))
    assert {i.code for i in info.value.issues} == {"unknown_node_type", "missing_input"}


def test_100k_node_chain_runs_without_recursion(engine):
    result, rec = run(engine, chain(100_000))
    assert result.ok
    assert result.outputs["out"]["value"] == 100_000.0
    # and a fully cached re-run touches only the output node
    _, rec = run(engine, chain(100_000))
    assert rec.ran == set() and rec.cached == {"out"}


def test_a_long_run_leaves_the_heap_unfrozen_and_collects_its_garbage_after(engine):
    import gc

    from nodegraph.heap import refreeze

    class Cycle:
        pass

    before = gc.get_freeze_count()
    refreeze()  # outside a run: freezes nothing
    assert gc.get_freeze_count() == before
    garbage = Cycle()
    garbage.me = garbage
    probe = weakref.ref(garbage)
    del garbage  # cyclic garbage, alive until a collection finds it
    result, rec = run(engine, chain(3 * 4096))  # several refreezes while it runs
    assert result.ok and len(rec.ran) == 3 * 4096 + 1
    assert gc.get_freeze_count() == before  # the heap is given back to the collector
    gc.collect()
    assert probe() is None


def test_output_dir_is_part_of_output_node_keys(engine, tmp_path):
    wf = workflow(c=node("core.solid_color", width=4, height=4),
                  s={"type": "core.save_image", "inputs": {"images": link("c", "images"), "filename_prefix": "x"}})
    run(engine, wf, output_dir=tmp_path / "one")
    _, rec = run(engine, wf, output_dir=tmp_path / "two")
    assert rec.ran == {"s"} and "c" in rec.cached
    assert (tmp_path / "two" / "x_00001.png").exists()


def test_settings_bound_the_cache(tmp_path):
    s = Settings(cache_bytes=12345, builtin_packs=False, entry_point_packs=False, output_dir=tmp_path)
    assert Engine.from_settings(s).cache.max_bytes == 12345


def test_inputs_are_built_as_model_construct_builds_them(registry):
    from nodegraph.construct import construct

    for spec in registry.specs():
        model = spec.cls.Inputs
        values = {name: (port.default if not port.required else object()) for name, port in spec.inputs.items()}
        fast, slow = construct(model, dict(values)), model.model_construct(**values)
        assert type(fast) is type(slow)
        assert list(fast.__dict__.items()) == list(slow.__dict__.items()), spec.type_id
        assert fast.model_fields_set == slow.model_fields_set
        assert fast.__pydantic_extra__ == slow.__pydantic_extra__
        assert fast.__pydantic_private__ == slow.__pydantic_private__
    # values that leave a field out: model_construct's own defaults
    math = registry.get("core.math").cls.Inputs
    assert construct(math, {"a": 1.0}).__dict__ == math.model_construct(a=1.0).__dict__


def test_node_inputs_mixing_links_and_literals_are_built_as_model_construct_builds_them(registry):
    from nodegraph.executor import node_inputs
    from nodegraph.plan import PlanNode

    for spec in registry.specs():
        values = {name: (port.default if not port.required else object()) for name, port in spec.inputs.items()}
        linkable = [n for n, p in spec.inputs.items() if p.type.link_only or not p.required]
        linked = set(linkable[::2])  # every other one arrives on a link, in whatever order the dicts hold
        pn = PlanNode("n", spec, {n: v for n, v in reversed(values.items()) if n not in linked},
                      {n: ("up", n) for n in sorted(linked)})
        built = node_inputs(pn, {"up": {n: values[n] for n in linked}})
        expected = spec.cls.Inputs.model_construct(**values)
        assert list(built.__dict__.items()) == list(expected.__dict__.items()), spec.type_id
        assert built.model_fields_set == expected.model_fields_set


def test_a_runs_node_contexts_equal_the_ones_the_constructor_makes(engine, tmp_path):
    from nodegraph.context import NodeContext, context_factory

    shared = dict(run_id="r", settings=engine.settings, models=engine.models, cancel=CancelToken(),
                  sink=print, output_dir=tmp_path)
    made = context_factory(**shared)("n1", "core.math", {"format": "nodegraph/1"})
    direct = NodeContext(node_id="n1", type_id="core.math", workflow={"format": "nodegraph/1"}, **shared)
    assert type(made) is NodeContext and vars(made).keys() == vars(direct).keys()
    for name in ("node_id", "type_id", "run_id", "settings", "models", "output_dir", "workflow", "ui", "cancelled"):
        assert getattr(made, name) == getattr(direct, name), name
    assert made.ui is not context_factory(**shared)("n2", "core.math").ui


def test_putting_a_key_again_replaces_it_counts_it_once_and_makes_it_most_recent():
    from nodegraph.cache import OutputCache

    cache = OutputCache(max_bytes=10_000)
    cache.put("a", {"v": "x" * 100})
    cache.put("b", {"v": "y" * 100})
    size = cache.nbytes
    cache.put("a", {"v": "z" * 100})
    assert cache.nbytes == size and len(cache) == 2 and cache.get("a").outputs == {"v": "z" * 100}
    cache.max_bytes = size - 1  # the next put evicts the least recently used: "b", not "a"
    cache.put("a", {"v": "w" * 100})
    assert "b" not in cache and "a" in cache


def test_a_plans_consumer_counts_are_the_links_of_its_nodes(engine):
    from dataclasses import replace

    wf = diamond()
    wf["nodes"]["unused"] = node("toy.add", a=link("a"), b=link("join"))  # reads two needed nodes, not needed
    for targets in (None, ["join", "left", "join"]):
        plan = engine.plan(wf, targets=targets)
        assert plan.consumers() == replace(plan, _consumers=None).consumers(), targets
