"""Test helpers for pack authors: the node contract every built-in node passes, for your nodes too.

With pytest, in a pack's tests::

    import pytest
    from nodegraph.testing import check_node, pack_registry

    import mypack

    REGISTRY = pack_registry(mypack.PACK)

    @pytest.mark.parametrize("type_id", sorted(spec.type_id for spec in REGISTRY.specs()))
    def test_node_contract(type_id, tmp_path):
        check_node(REGISTRY, type_id, tmp_path)

:func:`check_node` raises ``AssertionError`` naming the node and what is wrong; :func:`node_context`
gives a context for calling ``run`` directly in other tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .config import Settings
from .context import CancelToken, NodeContext
from .modelstore import ModelStore
from .node import NodeSpec
from .registry import Pack, Registry

__all__ = ["check_node", "example_inputs", "node_context", "pack_registry"]

TYPE_ID = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")


def pack_registry(*packs: Pack) -> Registry:
    """A registry holding only ``packs`` (no discovery), as the engine registers them."""
    registry = Registry()
    for pack in packs:
        registry.add_pack(pack, f"test:{pack.name}")
    return registry


def node_context(settings: Settings, *, models: ModelStore | None = None, type_id: str = "test.node",
                 node_id: str = "n", sink: Callable[[Any], None] | None = None, cancel: CancelToken | None = None,
                 workflow: dict[str, Any] | None = None) -> NodeContext:
    """A :class:`NodeContext` for calling a node's ``run`` outside a run (events go to ``sink``)."""
    if models is None:
        models = ModelStore(settings.model_dirs, max_items=settings.model_cache_items,
                            max_bytes=settings.model_memory, allow_paths=settings.allow_model_paths,
                            threads=settings.threads)
    return NodeContext(node_id=node_id, type_id=type_id, run_id="test", settings=settings, models=models,
                       cancel=cancel or CancelToken(), sink=sink or (lambda event: None),
                       output_dir=Path(settings.output_dir),
                       workflow=workflow if workflow is not None else {"format": "nodegraph/1", "nodes": {}})


def example_inputs(spec: NodeSpec, input_dir: Path) -> dict[str, Any]:
    """Small valid inputs for ``spec``: link types' examples, defaults, and the first of ``Port(examples=...)``
    for required widgets; an input-file widget's example file is written to ``input_dir``."""
    values: dict[str, Any] = {}
    for name, port in spec.inputs.items():
        where = f"{spec.type_id}.{name}"
        if port.link_only:
            link = port.type.link
            _require(link is not None and link.example is not None,
                     f"{where}: link type {port.type.name} declares no example; give link_type(..., example=fn)")
            values[name] = link.example()  # type: ignore[union-attr]
        elif not port.required:
            values[name] = port.default
        else:
            examples = spec.cls.Inputs.model_fields[name].examples
            _require(bool(examples), f"{where} is required: give it Port(..., examples=[...]) for the contract")
            values[name] = examples[0]  # type: ignore[index]
        widget = port.type.widget
        if widget is not None and widget.kind == "file" and widget.folder == "input":
            from PIL import Image

            path = input_dir / values[name]
            path.parent.mkdir(parents=True, exist_ok=True)  # an example in a subfolder: "examples/cat.png"
            Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    return values


def check_node(registry: Registry, type_id: str, workdir: Path, *, inputs: Mapping[str, Any] | None = None,
               settings: Settings | None = None) -> Any:
    """The node contract: identity, docstring, schema, defaults, and ``run`` on example inputs returning
    exactly the declared outputs. ``inputs`` override examples; returns the node's outputs.

    Runs with folders under ``workdir`` (``input``, ``out``, ``tmp``) unless ``settings`` are given.
    """
    spec = registry.get(type_id)
    if spec is None or spec.type_id != type_id:
        raise AssertionError(f"{type_id}: not a node type of this registry")
    cls = spec.cls
    _require(bool(TYPE_ID.fullmatch(type_id)), f"{type_id}: a type id is 'pack.name', lower-case identifiers")
    _require(isinstance(cls.version, int) and cls.version >= 1, f"{type_id}: version must be an integer >= 1")
    _require(bool((cls.__doc__ or "").strip()), f"{type_id}: the node class has no docstring (its tooltip)")
    schema = json.loads(json.dumps(spec.schema()))
    _require(schema["type"] == type_id and bool(schema["category"]), f"{type_id}: the schema lacks type or category")
    for port in [*schema["inputs"], *schema["outputs"]]:
        _require(bool(port["description"]), f"{type_id}.{port['name']} has no description")
    for name, port in spec.inputs.items():
        if not port.required and not port.link_only:
            try:
                port.validate_value(port.default)
            except Exception as exc:  # noqa: BLE001 - reported as the contract's failure
                raise AssertionError(f"{type_id}.{name}: the default {port.default!r} is invalid: {exc}") from exc
    settings = settings or Settings(input_dir=workdir / "input", output_dir=workdir / "out",
                                    temp_dir=workdir / "tmp", builtin_packs=False, entry_point_packs=False)
    Path(settings.input_dir).mkdir(parents=True, exist_ok=True)
    values = {**example_inputs(spec, Path(settings.input_dir)), **(inputs or {})}
    for name, port in spec.inputs.items():
        if not port.link_only:
            values[name] = port.validate_value(values[name])
    ctx = node_context(settings, type_id=type_id)
    node = cls()
    node.check_lazy(cls.Inputs.model_construct(**values), ctx)
    result = node.run(cls.Inputs.model_construct(**values), ctx)
    _require(isinstance(result, cls.Outputs), f"{type_id}: run returned {type(result).__name__}, "
             f"not {cls.__name__}.Outputs")
    _require(set(type(result).model_fields) == set(spec.outputs), f"{type_id}: run's outputs differ from the "
             "declared ones")
    for name in spec.outputs:
        getattr(result, name)
    try:
        json.dumps(ctx.ui)
    except TypeError as exc:
        raise AssertionError(f"{type_id}: what it shows (ctx.show) is not JSON: {exc}") from exc
    return result


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
