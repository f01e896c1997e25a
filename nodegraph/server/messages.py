"""The WebSocket messages (v1) the server sends, as pydantic models.

Every message is ``{"v": 1, "type": TYPE, "data": {...}, "t": float or null}`` (docs/api.md). The
messages of a run are derived from the event models of :mod:`nodegraph.events`: their ``data`` is
``job_id`` followed by the event's own fields, so the event models are the one description of
both. ``status`` and ``validation_failed`` come from the queue, not from a run. Changes within v1
are additive only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model

from ..events import NodeCached, NodeCompleted, NodeFailed, NodeStarted, Progress, RunFinished, RunStarted
from ..validation import Issue
from .schemas import JobError

__all__ = [
    "EVENT_MESSAGES",
    "WS_MESSAGES",
    "WS_VERSION",
    "EventMessage",
    "JobFinishedData",
    "JobFinishedMessage",
    "PreviewMessage",
    "StatusData",
    "StatusMessage",
    "ValidationFailedData",
    "ValidationFailedMessage",
    "WsMessage",
]

WS_VERSION = 1

_ENVELOPE = frozenset({"run_id", "t", "event"})  # event fields the message envelope replaces


class _Message(BaseModel):
    v: Literal[1] = WS_VERSION
    t: float | None = Field(None, description="Unix seconds at which the event happened on the server "
                            "(receive time minus t is the event latency).")


class EventMessage(_Message):
    """Base of the messages derived from a run event."""

    @classmethod
    def of(cls, job_id: str, event: BaseModel, **data: Any) -> EventMessage:
        """The message of ``event`` in job ``job_id``; ``data`` replaces or adds fields."""
        fields = cls.model_fields["data"].annotation.model_fields
        values = {name: getattr(event, name) for name in fields if name != "job_id" and name not in data}
        return cls(t=event.t, data={"job_id": job_id, **values, **data})


def _event_message(event: type[BaseModel], kind: str, doc: str, *, drop: Iterable[str] = (),
                   fields: dict[str, Any] | None = None) -> type[EventMessage]:
    """The message class of ``event``: ``data`` holds ``job_id`` and the event's fields (every one
    sent, so every one required), less ``drop``, with ``fields`` replacing or adding some."""
    stem = "".join(part.title() for part in kind.split("_"))
    defs: dict[str, Any] = {"job_id": (str, ...)}
    for name, info in event.model_fields.items():
        if name not in _ENVELOPE and name not in drop and not info.exclude:
            defs[name] = (info.annotation, Field(description=info.description))
    defs.update(fields or {})
    data = create_model(f"{stem}Data", __module__=__name__, **defs)
    return create_model(f"{stem}Message", __base__=EventMessage, __module__=__name__, __doc__=doc,
                        type=(Literal[kind], kind), data=(data, ...))


JobStartedMessage = _event_message(RunStarted, "job_started", "A job began running.", drop={"targets"})
NodeStartedMessage = _event_message(NodeStarted, "node_started", "A node began running.")
ProgressMessage = _event_message(Progress, "progress", "A node reported progress.")
PreviewMessage = _event_message(
    Progress, "preview", "An in-progress image from a node (throttled per node).", drop={"total"},
    fields={"image": (str, Field(description="data:image/png;base64,..."))})
NodeCachedMessage = _event_message(NodeCached, "node_cached", "A node's outputs came from the cache.")
NodeCompletedMessage = _event_message(NodeCompleted, "node_completed", "A node finished.")
NodeFailedMessage = _event_message(NodeFailed, "node_failed", "A node failed; the run stops.")
JobFinishedMessage = _event_message(
    RunFinished, "job_finished", "A job ended.",
    fields={"status": (Literal["success", "failed", "cancelled", "interrupted"], ...),
            "error": (JobError | None, ...)})
JobFinishedData: type[BaseModel] = JobFinishedMessage.model_fields["data"].annotation

#: The run events sent as they happen, and their messages. ``run_finished`` is not among them: the
#: runner sends ``job_finished`` once the job's record is written.
EVENT_MESSAGES: dict[type[BaseModel], type[EventMessage]] = {
    RunStarted: JobStartedMessage, NodeStarted: NodeStartedMessage, Progress: ProgressMessage,
    NodeCached: NodeCachedMessage, NodeCompleted: NodeCompletedMessage, NodeFailed: NodeFailedMessage,
}


class StatusData(BaseModel):
    queue_remaining: int
    running: str | None


class StatusMessage(_Message):
    """Queue status: on connect and on every change."""

    type: Literal["status"] = "status"
    data: StatusData


class ValidationFailedData(BaseModel):
    job_id: None = None
    issues: list[Issue]


class ValidationFailedMessage(_Message):
    """The workflow this client queued is invalid (sent to that client only)."""

    type: Literal["validation_failed"] = "validation_failed"
    data: ValidationFailedData


WS_MESSAGES: tuple[type[BaseModel], ...] = (
    StatusMessage, JobStartedMessage, NodeStartedMessage, ProgressMessage, PreviewMessage, NodeCachedMessage,
    NodeCompletedMessage, NodeFailedMessage, JobFinishedMessage, ValidationFailedMessage,
)

#: Any server -> client message (discriminated by ``type``).
WsMessage = Annotated[
    StatusMessage | JobStartedMessage | NodeStartedMessage | ProgressMessage | PreviewMessage
    | NodeCachedMessage | NodeCompletedMessage | NodeFailedMessage | JobFinishedMessage
    | ValidationFailedMessage,
    Field(discriminator="type"),
]
