"""One contract test over every registered node (built-in packs, the toy pack, the sample pack).

The contract is `nodegraph.testing.check_node`, the same a third-party pack runs on its own nodes.
"""

from __future__ import annotations

import pytest
from conftest import TESTS

import nodegraph
from nodegraph import Engine, Port, Settings
from nodegraph.config import default_model_dirs
from nodegraph.testing import check_node, pack_registry

_SETTINGS = Settings(nodes_dirs=[TESTS / "packs", TESTS / "sample_pack"], entry_point_packs=False)
_REGISTRY = Engine.from_settings(_SETTINGS).registry
SPECS = {s.type_id: s for s in _REGISTRY.specs()}


def test_every_pack_loaded():
    assert not _REGISTRY.failures, [f.message for f in _REGISTRY.failures]


@pytest.mark.parametrize("type_id", sorted(SPECS))
def test_node_contract(type_id, tmp_path):
    inputs, settings = {"toy.fail": {"fail": False}, "toy.exit": {"at": "nowhere"}}.get(type_id), None
    if type_id.startswith("kandinsky."):
        from nodes.kandinsky.models.tiny import cached_models_dir

        # the tiny folders under the published names, at tiny sizes: 512 px and 50 steps take minutes
        ports = SPECS[type_id].inputs
        inputs = {k: v for k, v in (("steps", 4), ("width", 64), ("height", 64)) if k in ports}
        settings = Settings(model_dirs=[cached_models_dir(), *default_model_dirs()], input_dir=tmp_path / "input",
                            output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp", builtin_packs=False,
                            entry_point_packs=False)
    if type_id.startswith("personalise."):
        inputs, settings = personalise_inputs(type_id, tmp_path)
    elif type_id in ("unclip.prior", "instruct.edit"):
        # the optional embedding input, one row (the EMBEDDING example has 16): one per image, or one for all
        port = "init" if type_id == "unclip.prior" else "image_embedding"
        inputs = {port: SPECS[type_id].inputs[port].type.link.example()[:1]}
    elif type_id == "compose.multidiffusion":
        # the example mask on the default 96×32 canvas leaves rows outside every window of the tiny 16 px
        # decoder (a clear input error); on a canvas of the decoder's size its window covers everything
        inputs = {"width": 16, "height": 16, "steps": 2}
    check_node(_REGISTRY, type_id, tmp_path, inputs=inputs, settings=settings)


def personalise_inputs(type_id: str, tmp_path):
    """Training nodes at a few steps, on a render with one object, one embedding row; models written to tmp."""
    import numpy as np

    from nodes.shapes.api import domain
    from nodes.unclip.models import tiny

    scene = domain.make_scene(np.random.default_rng(0), "red", "white", "square", "large", "center")
    image = domain.render(scene, 64)[None].astype(np.float32) / 255.0
    ports = SPECS[type_id].inputs
    small = {"steps": 2, "batch": 2, "class_images": 2, "class_steps": 2, "image": image, "images": image}
    inputs = {k: v for k, v in small.items() if k in ports}
    for name in ("embedding", "optimised", "target", "init", "reference"):
        if name in ports:
            import torch

            inputs[name] = torch.randn(1, tiny.TEXT_DIM, generator=torch.Generator().manual_seed(0))
    settings = Settings(model_dirs=[tmp_path / "models", *default_model_dirs()], input_dir=tmp_path / "input",
                        output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp", builtin_packs=False,
                        entry_point_packs=False)
    return inputs, settings


Const = _REGISTRY.get("toy.const").cls  # a node that keeps the contract (a number in, the same out)


class Undocumented(Const):
    name = "undocumented"


class Unexplained(Const):
    """A port without a description."""

    name = "unexplained"

    class Inputs(nodegraph.Inputs):
        value: float = Port(0.0)


class WrongOutputs(Const):
    """Returns something else than its Outputs."""

    name = "wrong_outputs"

    def run(self, inputs, ctx):
        return {"value": inputs.value}


class BadDefault(Const):
    """A default its own constraint refuses."""

    name = "bad_default"

    class Inputs(nodegraph.Inputs):
        value: float = Port(0.0, ge=1.0, description="A number.")


@pytest.mark.parametrize(("cls", "message"), [
    (Undocumented, "mine.undocumented: the node class has no docstring"),
    (Unexplained, "mine.unexplained.value has no description"),
    (WrongOutputs, "mine.wrong_outputs: run returned dict, not WrongOutputs.Outputs"),
    (BadDefault, "mine.bad_default.value: the default 0.0 is invalid"),
])
def test_the_contract_names_the_node_and_what_breaks_it(cls, message, tmp_path):
    registry = pack_registry(nodegraph.Pack("mine", nodes=[Const, cls]))
    assert check_node(registry, "mine.const", tmp_path, inputs={"value": 2.5}).value == 2.5
    with pytest.raises(AssertionError, match=message):
        check_node(registry, f"mine.{cls.name}", tmp_path)


class LoadsAFile(Const):
    """Reads an input image named with a subfolder, as the input folder's examples are."""

    name = "loads_a_file"

    class Inputs(nodegraph.Inputs):
        image: nodegraph.ImageFile = Port(description="An input image.", examples=["examples/cat.png"])

    def run(self, inputs, ctx):
        assert ctx.resolve_file("input", inputs.image).is_file()
        return self.Outputs(value=1.0)


def test_the_contract_writes_an_example_input_file_in_its_subfolder(tmp_path):
    registry = pack_registry(nodegraph.Pack("mine", nodes=[LoadsAFile]))
    assert check_node(registry, "mine.loads_a_file", tmp_path).value == 1.0
    assert (tmp_path / "input" / "examples" / "cat.png").is_file()


def test_public_api_is_versioned_and_exports_what_packs_use():
    assert nodegraph.API_VERSION == 1
    for name in ("Node", "Inputs", "Outputs", "Port", "Pack", "NodeContext", "IMAGE", "MASK", "Seed", "MAX_SEED",
                 "link_type", "safe_join", "save_png", "to_pil", "from_pil", "to_tensor", "from_tensor",
                 "save_images", "preview_images", "file_signature", "FingerprintContext", "CheckContext",
                 "Upstream", "refuse_pickles"):
        assert hasattr(nodegraph, name), name
