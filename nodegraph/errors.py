"""Exceptions the engine raises; each carries a message that says what went wrong and the fix."""

from __future__ import annotations


class NodegraphError(Exception):
    """Base of every error the engine raises on purpose."""


class Cancelled(NodegraphError):
    """The run was cancelled (cooperatively: between nodes or inside a progress callback)."""


class PackError(NodegraphError):
    """A pack could not be registered (malformed node, duplicate type id, duplicate pack name)."""


class DuplicateNodeType(PackError):
    """Two packs define the same node type id."""


class WorkflowInvalid(NodegraphError):
    """A workflow failed validation; ``issues`` lists every problem found."""

    def __init__(self, issues: list) -> None:
        self.issues = issues
        lines = "\n".join(f"  [{i.code}] {i.message}" for i in issues)
        super().__init__(f"the workflow is invalid ({len(issues)} issue(s)):\n{lines}")


class NodeExecutionError(NodegraphError):
    """Raised by nodes for a failure the user can fix (bad file, wrong shape); shown without traceback noise."""


class UnsafePath(NodegraphError):
    """A file name tried to leave its folder (``..``, absolute path, symlink out, NUL byte...)."""


def exit_call(exc: SystemExit) -> str:
    """How ``exc`` was raised, for messages: ``sys.exit()`` or ``sys.exit(3)``."""
    return "sys.exit()" if exc.code is None else f"sys.exit({exc.code!r})"
