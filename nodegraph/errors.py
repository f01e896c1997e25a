"""Exceptions the engine raises; each carries a message that says what went wrong and the fix."""

from __future__ import annotations

import threading


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


def exit_call(exc: BaseException) -> str:
    """What the code did, for messages: ``called sys.exit()``, ``called sys.exit(3)`` or ``raised
    KeyboardInterrupt``."""
    if not isinstance(exc, SystemExit):
        return f"raised {type(exc).__name__}"
    return "called sys.exit()" if exc.code is None else f"called sys.exit({exc.code!r})"


def stray_exit(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a node's code, must fail only that node (or job), never end the process:
    a ``SystemExit``, or a ``KeyboardInterrupt`` outside the main thread, where no Ctrl-C is delivered (a
    server's jobs and validations run there; the command line's Ctrl-C in the main thread stays one)."""
    if isinstance(exc, SystemExit):
        return True
    return isinstance(exc, KeyboardInterrupt) and threading.current_thread() is not threading.main_thread()
