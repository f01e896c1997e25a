"""The literal fast path (nodegraph.quickcheck) accepts only what pydantic accepts unchanged."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import annotated_types as at
import pytest
from pydantic import Field, TypeAdapter, ValidationError

from nodegraph import Settings
from nodegraph.plugins import load_settings_packs
from nodegraph.quickcheck import quick_accept

SAMPLES = [0, 1, -1, 7, 10**6, 0.0, 0.5, -0.5, 1.0, 3.7, 1e9, math.inf, -math.inf, math.nan, True, False, "",
           "a", "add", "x" * 300, "1", None, [1], {"a": 1}]


def _pydantic(annotation, value):
    try:
        return True, TypeAdapter(annotation).validate_python(value)
    except ValidationError:
        return False, None


def _agree(annotation, quick) -> None:
    for value in SAMPLES:
        if quick(value):
            ok, got = _pydantic(annotation, value)
            assert ok, f"{annotation}: fast path accepted {value!r}, pydantic refuses it"
            assert type(got) is type(value) and (got == value or (got != got and value != value)), \
                f"{annotation}: pydantic turns {value!r} into {got!r}"


@pytest.fixture(scope="module")
def registry():
    return load_settings_packs(Settings(builtin_packs=True, entry_point_packs=False))


def test_fast_path_agrees_with_pydantic_on_every_builtin_port(registry) -> None:
    checked = 0
    for spec in registry.specs():
        for port in spec.inputs.values():
            quick = quick_accept(port.annotation)
            if quick is not None:
                _agree(port.annotation, quick)
                checked += 1
    assert checked > 100  # the usual widgets (bounded numbers, strings, choices) take the fast path


@pytest.mark.parametrize("annotation", [
    Annotated[float, at.Ge(0.0), at.Le(1.0)], Annotated[float, at.Gt(0.0), at.Lt(1.0)],
    Annotated[int, at.Ge(1)], Annotated[int, at.Lt(5)], Annotated[str, at.MinLen(1), at.MaxLen(3)],
    float, int, str, bool, Literal["add", "min"], Literal[1, 2],
])
def test_fast_path_agrees_with_pydantic(annotation) -> None:
    quick = quick_accept(annotation)
    assert quick is not None
    _agree(annotation, quick)


def test_coercions_and_errors_are_left_to_pydantic() -> None:
    bounded = quick_accept(Annotated[float, at.Ge(0.0), at.Le(1.0)])
    assert bounded(0.5) and not bounded(1)  # an int becomes a float: pydantic's job
    assert not bounded(math.nan) and not bounded(2.0)
    assert not quick_accept(int)(True)  # bool is not an int here
    assert not quick_accept(Literal[1, 2])(True)
    pattern = Annotated[str, *Field(pattern="^a").metadata]
    assert quick_accept(pattern) is None  # other metadata: always pydantic


def test_file_names_always_reach_validation_of_the_file(registry) -> None:
    ports = [p for spec in registry.specs() for p in spec.inputs.values()
             if p.type.widget is not None and p.type.widget.kind == "file"]
    assert ports and not any(p.quick("example.png") for p in ports)
