"""Accepting the common literal values without calling pydantic.

Validation checks every literal of every node, and nearly all of them are a plain ``float``, ``int``,
``str`` or ``bool`` inside simple bounds, or one of a ``Literal``'s strings. For such annotations
:func:`quick_accept` builds a predicate that is true only for values pydantic would accept *and
return unchanged*: the exact built-in type (no coercion, so ``True`` is not an ``int`` and ``1`` is
not a ``float`` here), inside ``ge``/``gt``/``le``/``lt`` and ``min_length``/``max_length``. Any
other value — and every value of an annotation with other metadata (patterns, strictness,
validators) — goes to pydantic, which gives the answer and the error message; NaN fails every
comparison, so a bounded NaN goes to pydantic too.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import annotated_types as at

from .types import WidgetKind

__all__ = ["quick_accept"]

_BASES = (float, int, str, bool)
_HASHED = (str, int)


def quick_accept(annotation: Any) -> Callable[[Any], bool] | None:
    """A predicate for the values of ``annotation`` that need no pydantic call (``None``: always call it)."""
    base, meta = annotation, ()
    if typing.get_origin(annotation) is Annotated:
        base, *meta = typing.get_args(annotation)
    if typing.get_origin(base) is Literal:
        choices = typing.get_args(base)
        if meta or not all(type(c) in (str, int) for c in choices):
            return None
        allowed = frozenset((type(c), c) for c in choices)
        return lambda v: type(v) in _HASHED and (type(v), v) in allowed
    if base not in _BASES:
        return None
    lo = hi = None
    lo_open = hi_open = False
    min_len = max_len = None
    for m in meta:
        if isinstance(m, WidgetKind):
            continue  # the editor's marker; pydantic ignores it
        if type(m) is at.Ge and base in (int, float):
            lo = m.ge
        elif type(m) is at.Gt and base in (int, float):
            lo, lo_open = m.gt, True
        elif type(m) is at.Le and base in (int, float):
            hi = m.le
        elif type(m) is at.Lt and base in (int, float):
            hi, hi_open = m.lt, True
        elif type(m) is at.MinLen and base is str:
            min_len = m.min_length
        elif type(m) is at.MaxLen and base is str:
            max_len = m.max_length
        else:
            return None
    for bound in (lo, hi):
        if bound is not None and type(bound) not in (int, float):
            return None
    if base is str:
        return _str_check(min_len, max_len)
    if lo is None and hi is None:
        return lambda v: type(v) is base
    return _number_check(base, lo, lo_open, hi, hi_open)


def _str_check(min_len: int | None, max_len: int | None) -> Callable[[Any], bool]:
    lo = 0 if min_len is None else min_len
    if max_len is None:
        return lambda v: type(v) is str and len(v) >= lo
    return lambda v: type(v) is str and lo <= len(v) <= max_len


def _number_check(base: type, lo: float | None, lo_open: bool, hi: float | None,
                  hi_open: bool) -> Callable[[Any], bool]:
    low = float("-inf") if lo is None else lo
    high = float("inf") if hi is None else hi
    if not lo_open and not hi_open:
        return lambda v: type(v) is base and low <= v <= high
    if lo_open and not hi_open:
        return lambda v: type(v) is base and low < v <= high
    if hi_open and not lo_open:
        return lambda v: type(v) is base and low <= v < high
    return lambda v: type(v) is base and low < v < high
