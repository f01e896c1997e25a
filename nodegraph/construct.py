"""Building a pydantic model instance from values that are already valid (the engine's own data).

The executor builds a node's ``Inputs`` (whose values may be any object) for every node it runs;
``model_construct``'s per-field loop is a large share of its cost per node. (Models of plain data,
such as events, are built faster by pydantic's own validation.)
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["construct", "construct_in_order"]

M = TypeVar("M", bound=BaseModel)

_set = object.__setattr__
_FIELDS: dict[type, tuple[str, ...] | None] = {}  # model -> its field names, when construction is plain
_NAMES: dict[type, frozenset[str]] = {}  # model -> its field names, as a set


def _plain_fields(model: type[BaseModel]) -> tuple[str, ...] | None:
    """The model's field names when ``model_construct`` only copies the given values (no aliases,
    private attributes, post-init or extra fields), else ``None``."""
    try:
        return _FIELDS[model]
    except KeyError:
        pass
    fields = model.__pydantic_fields__
    plain = (not model.__pydantic_post_init__ and not model.__private_attributes__
             and not model.__pydantic_root_model__ and model.model_config.get("extra") != "allow"
             and all(f.alias is None and f.validation_alias is None for f in fields.values()))
    _NAMES[model] = frozenset(fields)  # first: another thread may read both once _FIELDS has the model
    names = _FIELDS[model] = tuple(fields) if plain else None
    return names


def construct_in_order(model: type[M], values: dict[str, Any]) -> M:
    """:func:`construct` for ``values`` whose keys are field names of ``model`` in declaration order
    (a subset of them, e.g. built by walking the fields): no key comparison when they are all there."""
    names = _plain_fields(model)
    if names is None or len(values) != len(names):
        return model.model_construct(**values)
    return _instance(model, values, names)


def construct(model: type[M], values: dict[str, Any]) -> M:
    """``model.model_construct(**values)`` for trusted ``values`` that pydantic could not validate
    (any Python object); when they give every field of a plain model (see :func:`_plain_fields`),
    the same instance is built without the per-field loop, its fields in declaration order.
    ``values`` may become the instance's ``__dict__``: pass a dict nothing else holds."""
    names = _plain_fields(model)
    if names is None or values.keys() != _NAMES[model]:
        return model.model_construct(**values)
    return _instance(model, values if tuple(values) == names else {n: values[n] for n in names}, names)


def _instance(model: type[M], fields: dict[str, Any], names: tuple[str, ...]) -> M:
    """The instance ``model_construct`` would build from ``fields`` (every field, in declaration order)."""
    m = model.__new__(model)
    _set(m, "__dict__", fields)
    _set(m, "__pydantic_fields_set__", set(names))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m
