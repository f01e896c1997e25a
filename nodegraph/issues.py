"""What validation reports: an :class:`Issue` per problem, and the :class:`ValidationResult`.

Each issue has a ``code`` from :data:`CODES`, the ``node`` and ``port`` it concerns, and a message
saying what was expected, what was found, and how to fix it (docs/workflows.md lists the codes).
"""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["CODES", "Issue", "ValidationResult"]

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
    "unsafe_path",
    "file_not_found",
    "dangling_link",
    "cycle",
    "no_outputs",
    "unknown_target",
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
