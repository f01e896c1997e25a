"""One contract test over every registered node (built-in packs, the toy pack, the sample pack)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import TESTS

import nodegraph
from nodegraph import CancelToken, Engine, NodeContext, Settings

_SETTINGS = Settings(nodes_dirs=[TESTS / "packs", TESTS / "sample_pack"], entry_point_packs=False)
_REGISTRY = Engine.from_settings(_SETTINGS).registry
SPECS = {s.type_id: s for s in _REGISTRY.specs()}


def test_every_pack_loaded():
    assert not _REGISTRY.failures, [f.message for f in _REGISTRY.failures]


def example_inputs(spec, tmp_path):
    values = {}
    for name, port in spec.inputs.items():
        field = spec.cls.Inputs.model_fields[name]
        if port.link_only:
            assert port.type.link is not None and port.type.link.example is not None, \
                f"{spec.type_id}.{name}: link type {port.type.name} declares no example"
            values[name] = port.type.link.example()
        elif not port.required:
            values[name] = port.default
        else:
            assert field.examples, f"{spec.type_id}.{name} is required: give it Port(..., examples=[...])"
            values[name] = field.examples[0]
        if port.type.widget is not None and port.type.widget.kind == "file" and port.type.widget.folder == "input":
            from PIL import Image

            Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "input" / values[name])
    return values


@pytest.mark.parametrize("type_id", sorted(SPECS))
def test_node_contract(type_id, tmp_path):
    spec = SPECS[type_id]
    cls = spec.cls
    # identity
    assert re.fullmatch(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*", type_id)
    assert isinstance(cls.version, int) and cls.version >= 1
    assert (cls.__doc__ or "").strip(), f"{type_id} has no docstring (its tooltip)"
    # schema
    schema = json.loads(json.dumps(spec.schema()))
    assert schema["type"] == type_id and schema["category"]
    for port in [*schema["inputs"], *schema["outputs"]]:
        assert port["description"], f"{type_id}.{port['name']} has no description"
    # defaults validate
    for port in spec.inputs.values():
        if not port.required and not port.link_only:
            port.validate_value(port.default)
    # run on tiny inputs returns exactly the declared outputs
    (tmp_path / "input").mkdir()
    settings = Settings(input_dir=tmp_path / "input", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                        builtin_packs=False, entry_point_packs=False)
    engine = Engine(_REGISTRY, settings)
    ctx = NodeContext(node_id="n", type_id=type_id, run_id="r", settings=settings, models=engine.models,
                      cancel=CancelToken(), sink=lambda e: None, output_dir=settings.output_dir,
                      workflow={"format": "nodegraph/1", "nodes": {}})
    values = example_inputs(spec, tmp_path)
    for name, port in spec.inputs.items():
        if not port.link_only:
            values[name] = port.validate_value(values[name])
    if type_id == "toy.fail":
        values["fail"] = False
    node = cls()
    node.check_lazy(cls.Inputs.model_construct(**values), ctx)
    result = node.run(cls.Inputs.model_construct(**values), ctx)
    assert isinstance(result, cls.Outputs)
    assert set(type(result).model_fields) == set(spec.outputs)
    for name in spec.outputs:
        getattr(result, name)
    json.dumps(ctx.ui)


def test_public_api_is_versioned_and_exports_what_packs_use():
    assert nodegraph.API_VERSION == 1
    for name in ("Node", "Inputs", "Outputs", "Port", "Pack", "NodeContext", "IMAGE", "MASK", "Seed",
                 "link_type", "safe_join", "save_png", "to_pil", "from_pil"):
        assert hasattr(nodegraph, name), name
