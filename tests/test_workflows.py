"""Every workflow in workflows/ loads, validates and runs, and writes what it promises."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from nodegraph import Engine, Settings
from nodegraph.config import default_model_dirs
from nodes.kandinsky.models.tiny import cached_models_dir

WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory):
    # One engine for all workflows, as a batch job would have: models load once.
    base = tmp_path_factory.mktemp("wf")
    # the Kandinsky workflows name the published folders; tiny random ones stand in for them
    settings = Settings(model_dirs=[cached_models_dir(), *default_model_dirs()], input_dir=ROOT / "input",
                        output_dir=base / "output", temp_dir=base / "temp", entry_point_packs=False)
    return Engine.from_settings(settings)


def tiny_sizes(data):
    """The Kandinsky workflows at 2 steps and 64 px: their real 512 px and 50 steps take minutes on the
    tiny random folders (a 512 px MoVQ decode alone is 7 s on one core). The training nodes
    (DreamBooth, Imagic) at 2 steps: their figures come from `python -m eval personalise`."""
    for entry in data["nodes"].values():
        if entry["type"].startswith("personalise."):
            for port, value in (("steps", 2), ("batch", 2), ("class_images", 2), ("class_steps", 2)):
                if port in entry["inputs"] or entry["type"] == "personalise.dreambooth":
                    entry["inputs"][port] = value
        if entry["type"].startswith("kandinsky."):
            for port, value in (("steps", 2), ("width", 64), ("height", 64)):
                if entry["inputs"].get(port):
                    entry["inputs"][port] = value
    return data


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_runs(path, shared_engine, tmp_path):
    engine = shared_engine
    result = engine.validate(path.read_text())
    assert result.valid, result.issues
    run = engine.run(tiny_sizes(json.loads(path.read_text())), output_dir=tmp_path)
    assert run.ok, run.error
    written = sorted(p for p in tmp_path.rglob("*.png"))
    assert written, f"{path.name} wrote no image"


OLD_IDS = {"unclip.load_clip": "unclip.clip_loader", "unclip.load_prior": "unclip.prior_loader",
           "unclip.load_decoder": "unclip.decoder_loader", "unclip.load_upsampler": "unclip.upsampler_loader",
           "sam.load_sam": "sam.loader", "controlnet.load_controlnet": "controlnet.loader",
           "shapes.factor_color": "edit.factor_color", "shapes.embedding_recolor": "edit.embedding_recolor"}


@pytest.mark.parametrize("name", ["text2image.json", "controlnet.json", "sam_mask.json", "text2image_factored.json",
                                  "recolor.json"])
def test_a_workflow_saved_with_old_type_ids_validates_as_the_new_ones(name, shared_engine):
    data = json.loads((ROOT / "workflows" / name).read_text())
    current = {nid: n["type"] for nid, n in data["nodes"].items()}
    for n in data["nodes"].values():
        n["type"] = OLD_IDS.get(n["type"], n["type"])
    assert current != {nid: n["type"] for nid, n in data["nodes"].items()}  # the file uses renamed ids
    from nodegraph.validation import check

    wf, issues = check(data, shared_engine.registry)
    assert issues == [] and {nid: n.type for nid, n in wf.nodes.items()} == current
