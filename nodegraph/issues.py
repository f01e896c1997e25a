"""What validation reports: an :class:`Issue` per problem, and the :class:`ValidationResult`.

Each issue has a ``code`` from :data:`CODES`, the ``node`` and ``port`` it concerns, and a message
saying what was expected, what was found, and how to fix it (docs/workflows.md lists the codes).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel

__all__ = ["CODES", "Issue", "ValidationResult", "close_matches", "close_names"]

CODES = (
    "invalid_json",
    "unsupported_format",
    "invalid_workflow",
    "unknown_node_type",
    "version_mismatch",
    "unknown_port",
    "missing_input",
    "type_mismatch",
    "invalid_value",
    "too_large",
    "unsafe_path",
    "file_not_found",
    "dangling_link",
    "cycle",
    "no_outputs",
    "unknown_target",
    "bypass_no_input",
    "invalid_model",
)


class Issue(BaseModel):
    """One problem in a workflow."""

    code: str
    node: str | None = None
    port: str | None = None
    message: str


class ValidationResult(BaseModel):
    """``valid`` is true when there are no issues."""

    valid: bool
    issues: list[Issue]

    def codes(self) -> set[str]:
        return {i.code for i in self.issues}


def close_matches(name: str, choices: Iterable[str], n: int = 1) -> list[str]:
    """Up to ``n`` of ``choices`` that look like ``name``, for "did you mean" hints: those that differ
    only in case first (difflib alone misses ``OUT`` for ``out``), then difflib's close ones."""
    choices = list(choices)
    folded = name.casefold()
    same = [c for c in choices if c.casefold() == folded]
    return (same + [c for c in difflib.get_close_matches(name, choices, n=n) if c not in same])[:n]


def close_names(name: str, choices: Iterable[str], shown: int = 20, *, listing: str = "they are") -> str:
    """``did you mean 'x'?`` for the choice that looks most like ``name`` (:func:`close_matches`), else
    ``<listing>: a, b, ...``: the first ``shown`` choices, ``and k more`` after them, or ``none``."""
    choices = list(choices)
    close = close_matches(name, choices)
    if close:
        return f"did you mean {close[0]!r}?"
    more = f" and {len(choices) - shown} more" if len(choices) > shown else ""
    return f"{listing}: {', '.join(choices[:shown]) or 'none'}{more}"
