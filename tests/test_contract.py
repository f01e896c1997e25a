"""One contract test over every registered node (built-in packs, the toy pack, the sample pack).

The contract is `nodegraph.testing.check_node`, the same a third-party pack runs on its own nodes.
"""

from __future__ import annotations

import pytest
from conftest import TESTS

import nodegraph
from nodegraph import Engine, Node, Port, Settings
from nodegraph.testing import check_node, pack_registry

_SETTINGS = Settings(nodes_dirs=[TESTS / "packs", TESTS / "sample_pack"], entry_point_packs=False)
_REGISTRY = Engine.from_settings(_SETTINGS).registry
SPECS = {s.type_id: s for s in _REGISTRY.specs()}


def test_every_pack_loaded():
    assert not _REGISTRY.failures, [f.message for f in _REGISTRY.failures]


@pytest.mark.parametrize("type_id", sorted(SPECS))
def test_node_contract(type_id, tmp_path):
    check_node(_REGISTRY, type_id, tmp_path, inputs={"fail": False} if type_id == "toy.fail" else None)


class Good(Node):
    """Says hello."""

    name = "good"

    class Inputs(nodegraph.Inputs):
        who: str = Port("world", description="Whom to greet.")

    class Outputs(nodegraph.Outputs):
        text: str = Port(description="The greeting.")

    def run(self, inputs, ctx):
        return self.Outputs(text=f"hello {inputs.who}")


class Undocumented(Good):
    name = "undocumented"


class Unexplained(Good):
    """A port without a description."""

    name = "unexplained"

    class Inputs(nodegraph.Inputs):
        who: str = Port("world")


class WrongOutputs(Good):
    """Returns something else than its Outputs."""

    name = "wrong_outputs"

    def run(self, inputs, ctx):
        return {"text": "hello"}


class BadDefault(Good):
    """A default its own constraint refuses."""

    name = "bad_default"

    class Inputs(nodegraph.Inputs):
        n: int = Port(0, ge=1, description="A count.")


@pytest.mark.parametrize(("cls", "message"), [
    (Undocumented, "mine.undocumented: the node class has no docstring"),
    (Unexplained, "mine.unexplained.who has no description"),
    (WrongOutputs, "mine.wrong_outputs: run returned dict, not WrongOutputs.Outputs"),
    (BadDefault, "mine.bad_default.n: the default 0 is invalid"),
])
def test_the_contract_names_the_node_and_what_breaks_it(cls, message, tmp_path):
    registry = pack_registry(nodegraph.Pack("mine", nodes=[Good, cls]))
    assert check_node(registry, "mine.good", tmp_path).text == "hello world"
    with pytest.raises(AssertionError, match=message):
        check_node(registry, f"mine.{cls.name}", tmp_path)


def test_public_api_is_versioned_and_exports_what_packs_use():
    assert nodegraph.API_VERSION == 1
    for name in ("Node", "Inputs", "Outputs", "Port", "Pack", "NodeContext", "IMAGE", "MASK", "Seed", "MAX_SEED",
                 "link_type", "safe_join", "save_png", "to_pil", "from_pil", "to_tensor", "from_tensor",
                 "save_images", "preview_images", "file_signature", "FingerprintContext"):
        assert hasattr(nodegraph, name), name
