"""Validation: one test per issue code (asserting the exact set of codes), plus property tests."""

from __future__ import annotations

import json
import re

import pytest
from helpers import link, node, workflow
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nodegraph
import nodegraph.node
from nodegraph import FingerprintContext, Node, Port, validate
from nodegraph.validation import CODES, ValidationResult, analyse


def codes(result: ValidationResult) -> set[str]:
    return {i.code for i in result.issues}


def test_valid_workflow_has_no_issues(registry):
    wf = workflow(a=node("toy.const", value=1), s=node("toy.sink", value=link("a")))
    result = validate(wf, registry)
    assert result.valid and result.issues == []


def test_invalid_json(registry):
    assert codes(validate('{"format": "nodegraph/1", "nodes": {', registry)) == {"invalid_json"}


def test_unsupported_format(registry):
    assert codes(validate({"format": "nodegraph/99", "nodes": {}}, registry)) == {"unsupported_format"}
    assert codes(validate("[1, 2, 3]", registry)) == {"unsupported_format"}
    assert codes(validate({"nodes": {}}, registry)) == {"unsupported_format"}


def test_invalid_workflow_structure(registry):
    result = validate({"format": "nodegraph/1", "nodes": {"a": {"inputs": {}}}}, registry)
    assert codes(result) == {"invalid_workflow"}
    assert result.issues[0].node == "a"


def test_unknown_node_type_suggests_a_close_name(registry):
    wf = workflow(a=node("toy.cnst", value=1), s=node("toy.sink", value=link("a")))
    result = validate(wf, registry)
    assert codes(result) == {"unknown_node_type"}
    assert "toy.const" in result.issues[0].message


def test_version_mismatch(registry):
    wf = workflow(a={"type": "toy.const", "version": 7, "inputs": {"value": 1}}, s=node("toy.sink", value=link("a")))
    result = validate(wf, registry)
    assert codes(result) == {"version_mismatch"}
    assert "version 7" in result.issues[0].message


def test_unknown_port(registry):
    wf = workflow(a=node("toy.const", valeu=1), s=node("toy.sink", value=link("a")))
    result = validate(wf, registry)
    assert codes(result) == {"unknown_port"}
    assert "'value'" in result.issues[0].message  # did you mean


def test_missing_input(registry):
    wf = workflow(s=node("toy.sink"))
    result = validate(wf, registry)
    assert codes(result) == {"missing_input"}
    assert (result.issues[0].node, result.issues[0].port) == ("s", "value")


def test_type_mismatch_on_link(registry):
    wf = workflow(t=node("core.string", value="x"), a=node("toy.add", a=link("t")), s=node("toy.sink", value=link("a")))
    result = validate(wf, registry)
    assert codes(result) == {"type_mismatch"}
    msg = result.issues[0].message
    assert "a.a expects FLOAT but t.value is STRING" in msg
    assert "connect the `value` output of a" in msg  # names a node type that produces a FLOAT


def test_a_type_mismatch_suggests_the_nodes_of_the_pack_that_defines_the_wanted_type(registry):
    wf = workflow(img=node("core.load_image", image="x.png"),
                  dec=node("unclip.decoder", decoder=link("img", "image"), image_embedding=link("img", "image"),
                           conditioning=link("img", "image")),
                  s=node("core.preview_image", images=link("dec", "images")))
    result = validate(wf, registry)
    msg = next(i.message for i in result.issues if i.port == "image_embedding")
    assert "dec.image_embedding expects unclip.EMBEDDING but img.image is IMAGE" in msg
    suggested = re.findall(r"output of an? (\S+) node", msg)
    assert len(suggested) == 3 and all(t.startswith("unclip.") for t in suggested), msg
    assert "the `embedding` output of an unclip." in msg  # "an" before a vowel


def test_an_unknown_target_names_the_close_node_or_the_nodes_there(registry):
    wf = workflow(out=node("toy.const", value=1.0), s=node("toy.sink", value=link("out")))
    result = validate(wf, registry, targets=["outt"])
    assert codes(result) == {"unknown_target"}
    assert result.issues[0].message == "asked to run node 'outt', which is not in the workflow; did you mean 'out'?"
    result = validate(wf, registry, targets=["zzz"])
    assert result.issues[0].message.endswith("which is not in the workflow; its nodes are: out, s")


def test_every_did_you_mean_tries_the_name_in_another_case_first(registry, tmp_path):
    """One helper (nodegraph.issues.close_names): difflib alone finds nothing for `OUT` against `out`."""
    from nodegraph import apply_overrides
    from nodegraph.issues import close_names
    from nodegraph.modelstore import find_model

    wf = workflow(out=node("toy.const", VALUE=1.0), s=node("toy.sink", value=link("out")))
    [issue] = validate(wf, registry, targets=["s"]).issues
    assert issue.message.endswith("has no input 'VALUE'; did you mean 'value'?")
    wf["nodes"]["out"]["inputs"] = {"value": 1.0}
    assert validate(wf, registry, targets=["OUT"]).issues[0].message.endswith("did you mean 'out'?")
    assert apply_overrides(wf, {"OUT.value": 2.0})[1][0].message.endswith("did you mean 'out'?")
    assert registry.suggest("TOY.CONST")[0] == "toy.const"
    (tmp_path / "SD").mkdir()
    with pytest.raises(nodegraph.NodeExecutionError, match="did you mean 'SD'"):
        find_model([tmp_path], "sd")
    many = [f"n{i}" for i in range(25)]
    assert close_names("zzz", many, listing="nodes are") == f"nodes are: {', '.join(many[:20])} and 5 more"
    assert close_names("zzz", [], listing="its inputs are") == "its inputs are: none"


def test_type_mismatch_literal_on_link_port(registry):
    wf = workflow(s=node("core.image_grid", images=3), o=node("toy.sink", value=link("s", "image")))
    result = validate(wf, registry)
    assert codes(result) == {"type_mismatch"}
    assert "expects a link of type IMAGE" in result.issues[0].message


def test_image_output_into_float_input_is_a_type_mismatch(registry):
    wf = workflow(c=node("core.solid_color"), a=node("toy.add", a=link("c", "images")), s=node("toy.sink", value=link("a")))
    result = validate(wf, registry)
    assert codes(result) == {"type_mismatch"}
    assert "a.a expects FLOAT but c.images is IMAGE" in result.issues[0].message


def test_invalid_value_reports_the_constraint(registry):
    wf = workflow(a=node("toy.add", b=1e12), s=node("toy.sink", value=link("a")))
    result = validate(wf, registry)
    assert codes(result) == {"invalid_value"}
    assert "less than or equal to 1000000000" in result.issues[0].message


def test_every_seed_port_is_bounded_by_max_seed(registry):
    from nodegraph import MAX_SEED

    seeds = [(spec.type_id, name) for spec in registry.specs() for name, p in spec.inputs.items()
             if p.type.name == "SEED"]
    assert len(seeds) >= 8
    for type_id, port in seeds:
        ok = workflow(a=node(type_id, **{port: MAX_SEED}))
        bad = workflow(a=node(type_id, **{port: MAX_SEED + 1}))
        assert not any(i.port == port for i in validate(ok, registry).issues), type_id
        issues = [i for i in validate(bad, registry).issues if i.port == port]
        assert [i.code for i in issues] == ["invalid_value"] and f"<= {MAX_SEED}" in issues[0].message, type_id


def test_dangling_link_to_missing_node_and_missing_output(registry):
    wf = workflow(a=node("toy.add", a=link("ghost"), b=link("c", "nope")), c=node("toy.const"),
                  s=node("toy.sink", value=link("a")))
    result = validate(wf, registry)
    assert codes(result) == {"dangling_link"}
    assert len(result.issues) == 2


def test_cycle_names_the_nodes_on_it(registry):
    wf = workflow(x=node("toy.add", a=link("z")), y=node("toy.add", a=link("x")), z=node("toy.add", a=link("y")),
                  s=node("toy.sink", value=link("z")))
    result = validate(wf, registry)
    assert codes(result) == {"cycle"}
    assert all(n in result.issues[0].message for n in ("x", "y", "z"))


def test_a_node_linked_to_itself_is_a_cycle(registry):
    wf = workflow(c=node("toy.const"), x=node("toy.add", a=link("c"), b=link("x")), s=node("toy.sink", value=link("x")))
    result = validate(wf, registry)
    assert [(i.code, i.node) for i in result.issues] == [("cycle", "x")]


def test_links_to_nodes_written_later_or_muted_still_order_the_plan(registry):
    wf = workflow(s=node("toy.sink", value=link("a")), a=node("toy.add", a=link("c"), b=link("m")),
                  c=node("toy.const"), m={**node("toy.const"), "mode": "mute"})
    analysis, issues = analyse(wf, registry)
    assert [i.code for i in issues] == []
    assert analysis.order.index("c") < analysis.order.index("a") < analysis.order.index("s")


def test_a_wrong_type_link_on_a_cycle_reports_both(registry):
    wf = workflow(x=node("toy.add", a=link("w")), f=node("core.format", template="{a}", a=link("x")),
                  w=node("core.switch", condition=True, on_true=link("f"), on_false=link("f")),
                  s=node("toy.sink", value=link("x")))
    result = validate(wf, registry)
    assert [(i.code, i.node, i.port) for i in result.issues] == [("type_mismatch", "f", "a"), ("cycle", "x", None)]
    assert "x → f → w" in result.issues[1].message


def test_literal_file_names_are_checked_against_the_folders_given(registry, tmp_path):
    folders = {"input": tmp_path / "in", "output": tmp_path / "out", "temp": tmp_path / "temp"}
    (folders["input"] / "sub").mkdir(parents=True)
    (folders["input"] / "sub" / "a.png").write_bytes(b"")  # validation looks for the file, never reads it

    def load(name):
        return workflow(l=node("core.load_image", image=name), s=node("toy.sink", value=link("l", "width")))

    assert validate(load("sub/a.png"), registry, folders=folders).valid
    assert validate(load("nope.png"), registry).valid  # no folders given: names are not checked
    result = validate(load("a.png"), registry, folders=folders)
    assert [(i.code, i.node, i.port) for i in result.issues] == [("file_not_found", "l", "image")]
    assert "did you mean 'sub/a.png'?" in result.issues[0].message
    for name in (".a.png", "sub/../../a.png", "/etc/passwd"):
        assert codes(validate(load(name), registry, folders=folders)) == {"unsafe_path"}, name
    folders["input"] = tmp_path / "empty"
    folders["input"].mkdir()
    result = validate(load("a.png"), registry, folders=folders)
    assert codes(result) == {"file_not_found"} and "has no such files" in result.issues[0].message
    folders["input"] = tmp_path / "missing"  # e.g. the default ./input, run from another folder
    result = validate(load("a.png"), registry, folders=folders)
    assert codes(result) == {"file_not_found"}
    assert f"the input folder ({tmp_path / 'missing'}) does not exist" in result.issues[0].message
    assert "--input-dir, NODEGRAPH_INPUT_DIR" in result.issues[0].message


class Folder(Node):
    """A model folder: its `kind` file says what it holds."""

    name = "folder"

    class Inputs(nodegraph.Inputs):
        model: str = Port("good", description="A folder in the model folders.")
        width: int = Port(8, description="Unused here: defaults reach the check.")

    class Outputs(nodegraph.Outputs):
        value: float = Port(description="A number.")

    def check(self, inputs, ctx):
        kind = (ctx.resolve_model(inputs["model"]) / "kind").read_text()
        return [] if kind == "model" else [("model", f"{inputs['model']} holds {kind}, width {inputs['width']}")]


class Pair(Node):
    """Compares the folder two links upstream with its own."""

    name = "pair"
    output_node = True

    class Inputs(nodegraph.Inputs):
        value: float = Port(description="From Folder, through toy.add.")
        model: str = Port("good", description="A folder.")

    class Outputs(nodegraph.Outputs):
        pass

    def check(self, inputs, ctx):
        add = ctx.source("value")
        folder = add.source("a") if add is not None else None
        if add is None or add.type != "toy.add" or folder is None or add.source("b") is not None:
            raise AssertionError("not the upstream this test builds")
        if folder.inputs["model"] != inputs["model"]:
            return [(None, f"{folder.inputs['model']} upstream, {inputs['model']} here")]
        return []


def test_nodes_check_the_files_they_name_given_the_folders(registry, tmp_path):
    for name, kind in (("good", "model"), ("other", "model"), ("bad", "notes")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "kind").write_text(kind)
    registry.add_pack(nodegraph.Pack("mine", nodes=[Folder, Pair]), "test:mine")
    files = FingerprintContext((tmp_path,), tmp_path / "input")

    def wf(folder="good", pair="good"):
        return workflow(f=node("mine.folder", model=folder), a=node("toy.add", a=link("f")),
                        p=node("mine.pair", value=link("a"), model=pair))

    assert validate(wf("bad", "bad"), registry).valid  # without the folders, nothing reads files
    assert validate(wf(), registry, files=files).valid
    result = validate(wf("bad", "bad"), registry, files=files)
    assert [(i.code, i.node, i.port, i.message) for i in result.issues] == [
        ("invalid_model", "f", "model", "f: bad holds notes, width 8")]
    result = validate(wf("other"), registry, files=files)  # looks two links upstream
    assert [(i.code, i.node, i.message) for i in result.issues] == [
        ("invalid_model", "p", "p: other upstream, good here")]
    # a check that breaks (a folder not there) is the run's to report; other issues come first
    assert validate(wf("missing", "missing"), registry, files=files).valid
    broken = wf("bad", "bad")
    broken["nodes"]["a"]["inputs"]["b"] = "x"
    assert codes(validate(broken, registry, files=files)) == {"invalid_value"}


def test_no_outputs(registry):
    result = validate(workflow(a=node("toy.const")), registry)
    assert codes(result) == {"no_outputs"}


def test_every_issue_is_collected_in_one_pass(registry):
    wf = workflow(
        a=node("toy.nope"),
        b=node("toy.add", zz=1, b="x"),
        c=node("toy.sink", value=link("ghost")),
        d=node("toy.sink"),
    )
    assert codes(validate(wf, registry)) == {"unknown_node_type", "unknown_port", "invalid_value",
                                             "dangling_link", "missing_input"}


def test_all_codes_are_documented():
    assert {"invalid_json", "unsupported_format", "unknown_node_type", "version_mismatch", "unknown_port",
            "missing_input", "type_mismatch", "invalid_value", "dangling_link", "cycle", "no_outputs"} <= set(CODES)


def test_long_chain_validates_without_recursion(registry):
    n = 100_000
    nodes = {"n0": node("toy.const", value=1)}
    for i in range(1, n):
        nodes[f"n{i}"] = node("toy.add", a=link(f"n{i - 1}"), b=1)
    nodes["s"] = node("toy.sink", value=link(f"n{n - 1}"))
    assert validate(workflow(**nodes), registry).valid


# --- property-based: whatever comes in, the answer is a ValidationResult --------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(json_values)
def test_random_json_gives_a_structured_result(registry, value):
    for source in (value, json.dumps(value)):
        result = validate(source, registry)
        assert isinstance(result, ValidationResult)
        assert result.valid is False or isinstance(value, dict)


BASE = workflow(
    a=node("toy.const", value=1),
    b=node("toy.add", a=link("a"), b=2),
    c=node("core.switch", condition=True, on_true=link("b"), on_false=link("a")),
    s=node("toy.sink", value=link("c")),
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = list(_paths(BASE))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), json_values | st.sampled_from(["a", "b", "ghost", "value"])),
                min_size=1, max_size=4))
def test_mutated_workflows_give_a_structured_result(registry, mutations):
    wf = json.loads(json.dumps(BASE))
    for path, value in mutations:
        if not path:
            wf = value
            continue
        target = wf
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    result = validate(wf, registry)
    assert isinstance(result, ValidationResult)
    for issue in result.issues:
        assert issue.code in CODES and issue.message


@pytest.mark.parametrize("text", ["", "null", "\x00", "{" * 100_000, '{"format": "nodegraph/1", "nodes": []}'])
def test_hostile_text_gives_a_structured_result(registry, text):
    result = validate(text, registry)
    assert not result.valid


def test_too_large_literal_sizes_are_refused_before_anything_runs(engine):
    wf = workflow(c=node("core.solid_color", width=8192, height=8192, batch=256),
                  s=node("core.save_image", images=link("c", "images")))
    result = engine.validate(wf)  # the default bound is half the machine's memory: 192 GiB is more
    assert codes(result) == {"too_large"}
    issue = result.issues[0]
    assert issue.node == "c" and "256 × 8192 × 8192 × 3 float32 = 192.0 GiB" in issue.message
    assert "lower batch, height or width" in issue.message
    with pytest.raises(nodegraph.WorkflowInvalid, match="192.0 GiB"):
        engine.run(wf)
    assert not engine.settings.output_dir.exists() or not any(engine.settings.output_dir.iterdir())


def test_the_size_bound_reads_the_defaults_and_counts_linked_dimensions_as_one(registry):
    small = 64 * 64 * 3 * 4 - 1
    big = workflow(n=node("toy.noise", size=64), s=node("toy.sink", value=link("n", "images")))
    result = validate(big, registry, max_node_bytes=small)
    assert codes(result) == {"too_large"} and result.issues[0].port in ("batch", "size")
    default = workflow(n=node("toy.noise"), s=node("toy.sink", value=link("n", "images")))  # 16 × 16 × 3
    assert validate(default, registry, max_node_bytes=16 * 16 * 3 * 4).valid
    assert not validate(default, registry, max_node_bytes=16 * 16 * 3 * 4 - 1).valid
    linked = workflow(k=node("toy.const", value=1.0), n=node("toy.noise", size=64),
                      s=node("toy.sink", value=link("n", "images")))
    linked["nodes"]["n"]["inputs"]["batch"] = link("k")  # not known before the run: counts 1
    assert "too_large" not in codes(validate(linked, registry, max_node_bytes=64 * 64 * 3 * 4))


def test_a_shape_naming_no_input_is_refused_when_the_pack_loads():
    class Bad(nodegraph.Node):
        name = "bad"

        class Inputs(nodegraph.Inputs):
            size: int = nodegraph.Port(8, description="Side.")

        class Outputs(nodegraph.Outputs):
            images: nodegraph.IMAGE = nodegraph.Port(description="Images.", shape=("batch", "size", "size", 3))

        def run(self, inputs, ctx):
            raise AssertionError

    with pytest.raises(TypeError, match=r"shape names \['batch'\].*its inputs are: size"):
        nodegraph.node.derive_spec(Bad, "x")
