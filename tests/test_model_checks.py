"""Model names are checked at validation: a loader whose model is not in the model folders fails the
workflow before anything runs, with the close name and what is there."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, TESTS
from helpers import link, node, workflow

import nodegraph
from nodegraph.config import Settings
from nodegraph.plugins import load_settings_packs
from nodegraph.validation import validate_for

MODELS = ROOT / "models"

# (node type, its model port, a name that is there, the same misspelt)
LOADERS = [
    ("unclip.load_clip", "model", "shapes-unclip", "shapes-unclp"),
    ("unclip.load_prior", "model", "shapes-unclip", "shapes-unclip2"),
    ("unclip.load_decoder", "model", "shapes-unclip", "shapes-unclipp"),
    ("unclip.load_upsampler", "model", "shapes-unclip-sr256", "shapes-unclip-sr265"),
    ("unclip.load_ar_prior", "model", "shapes-unclip", "shapes_unclip"),
    ("sam.load_sam", "model", "sam-shapes", "sam-shape"),
    ("controlnet.load_controlnet", "controlnet", "controlnet-shapes", "controlnet-shape"),
    ("instruct.load", "model", "shapes-ip2p", "shapes-ipp2p"),
]


@pytest.fixture(scope="module")
def registry():
    settings = Settings(model_dirs=[MODELS], nodes_dirs=[TESTS / "packs"])
    return settings, load_settings_packs(settings)


def _output(registry, type_id):
    return next(iter(registry[1].get(type_id).outputs))


def issues(registry, wf):
    settings, reg = registry
    return validate_for(wf, reg, settings).issues


@pytest.mark.parametrize(("type_id", "port", "good", "bad"), LOADERS)
def test_a_loader_names_a_missing_model_at_validation(registry, type_id, port, good, bad):
    wf = workflow(l=node(type_id, **{port: good}), s=node("toy.sink", value=link("l", _output(registry, type_id))))
    assert not [i for i in issues(registry, wf) if i.code == "invalid_model"]
    wf["nodes"]["l"]["inputs"][port] = bad
    found = [i for i in issues(registry, wf) if i.code == "invalid_model"]
    assert [(i.node, i.port) for i in found] == [("l", port)]
    assert f"model {bad!r} not found" in found[0].message and f"did you mean {good!r}?" in found[0].message


def test_a_lora_name_is_checked_unless_none_or_linked(registry):
    def wf(lora):
        return workflow(d=node("unclip.load_decoder"), l=node("lora.load_lora", decoder=link("d", "decoder"), lora=lora),
                        s=node("toy.sink", value=link("l", "decoder")))

    for name in ("shapes-pink", "shapes-pink.safetensors", "none"):
        assert not [i for i in issues(registry, wf(name)) if i.code == "invalid_model"], name
    linked = wf("none")
    linked["nodes"]["n"] = node("core.string", value="shapes-pnk")
    linked["nodes"]["l"]["inputs"]["lora"] = link("n")  # known when it runs (e.g. a DreamBooth training's output)
    assert not [i for i in issues(registry, linked) if i.code == "invalid_model"]
    found = [i for i in issues(registry, wf("shapes-pnk")) if i.code == "invalid_model"]
    assert [(i.node, i.port) for i in found] == [("l", "lora")] and "not found" in found[0].message


def test_a_model_path_that_does_not_exist_is_named(registry, tmp_path):
    wf = workflow(l=node("unclip.load_decoder", model=str(tmp_path / "nowhere")),
                  s=node("toy.sink", value=link("l", "decoder")))
    found = [i for i in issues(registry, wf) if i.code == "invalid_model"]
    assert len(found) == 1 and "does not exist" in found[0].message


def test_check_context_missing_model_is_public_api(tmp_path):
    (tmp_path / "thing").mkdir()
    ctx = nodegraph.CheckContext((tmp_path,), tmp_path)
    assert ctx.missing_model("model", "thing") == []
    assert ctx.missing_model("model", 3) == []  # not a literal name: not checked
    [(port, why)] = ctx.missing_model("model", "thin")
    assert port == "model" and "did you mean 'thing'?" in why


def test_a_path_where_paths_are_not_allowed_is_named(registry):
    settings, reg = registry
    wf = workflow(l=node("unclip.load_decoder", model=str(MODELS / "shapes-unclip")),
                  s=node("toy.sink", value=link("l", "decoder")))
    assert not validate_for(wf, reg, settings).issues
    server = settings.model_copy(update={"allow_model_paths": False})
    found = validate_for(wf, reg, server).issues
    assert [i.code for i in found] == ["invalid_model"] and "paths are not allowed here" in found[0].message


def test_only_the_nodes_a_run_executes_are_checked(registry):
    # a loose loader, one only another target needs, one on an untaken (lazy) switch branch: none runs
    def wf(**extra):
        return workflow(c=node("toy.const", value=1.0), s=node("toy.sink", value=link("c")), **extra)

    missing = node("unclip.load_clip", model="my-karlo")
    assert not issues(registry, wf(spare=missing))
    other = wf(spare=missing, t=node("toy.sink", value=link("spare", "clip")))
    settings, reg = registry
    assert not validate_for(other, reg, settings, targets=["s"]).issues
    assert [i.node for i in validate_for(other, reg, settings, targets=["t"]).issues] == ["spare"]
    assert [i.node for i in issues(registry, other)] == ["spare"]  # without targets: every output node
    switch = wf(spare=missing, sw=node("core.switch", condition=True, on_true=link("c"), on_false=link("spare", "clip")),
                u=node("toy.sink", value=link("sw")))
    assert not issues(registry, switch)


def test_a_kandinsky_loader_names_a_missing_folder_before_anything_loads(tmp_path):
    # the shipped Kandinsky workflows, where the published folders are not: each loader that runs is named
    empty = Settings(model_dirs=[tmp_path], nodes_dirs=[TESTS / "packs"])
    reg = load_settings_packs(empty)
    for path in sorted((ROOT / "workflows").glob("kandinsky_*.json")):
        wf = json.loads(path.read_text())
        loaders = {nid for nid, n in wf["nodes"].items() if n["type"].startswith("kandinsky.load_")}
        found = validate_for(wf, reg, empty).issues
        assert found and {i.code for i in found} == {"invalid_model"} and {i.node for i in found} <= loaders, path
        assert all("docs/checkpoints.md#kandinsky-22" in i.message for i in found)
    from nodes.kandinsky.models.tiny import cached_models_dir

    settings = Settings(model_dirs=[cached_models_dir()], nodes_dirs=[TESTS / "packs"])
    reg = load_settings_packs(settings)

    def wf(name):
        return workflow(p=node("kandinsky.load_prior", model=name), s=node("toy.sink", value=link("p", "prior")))

    assert not validate_for(wf("kandinsky-2-2-prior"), reg, settings).issues
    found = validate_for(wf("kandinsky-2-2-prio"), reg, settings).issues
    assert [(i.code, i.node, i.port) for i in found] == [("invalid_model", "p", "model")]
    assert "did you mean 'kandinsky-2-2-prior'?" in found[0].message and "docs/checkpoints.md" in found[0].message
