"""Execution events: every step of a run, as pydantic models delivered to sinks.

The CLI renders them; the server streams them over its WebSocket (``model_dump(mode="json")``;
the ``preview`` of a progress event is raw data and is encoded by the sink that wants it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Event",
    "EventSink",
    "NodeCached",
    "NodeCompleted",
    "NodeFailed",
    "NodeStarted",
    "Progress",
    "RunFinished",
    "RunStarted",
    "fanout",
]


class _Base(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    run_id: str
    t: float = Field(default_factory=time.time)


class RunStarted(_Base):
    event: Literal["run_started"] = "run_started"
    nodes: list[str] = Field(description="The planned nodes, in order.")
    targets: list[str]


class NodeStarted(_Base):
    event: Literal["node_started"] = "node_started"
    node: str
    type: str


class Progress(_Base):
    event: Literal["progress"] = "progress"
    node: str
    step: int
    total: int | None = None
    preview: Any = Field(default=None, exclude=True)  # e.g. an IMAGE array; sinks encode it if they want


class NodeCached(_Base):
    event: Literal["node_cached"] = "node_cached"
    node: str
    type: str
    ui: dict[str, Any] = Field(default_factory=dict)


class NodeCompleted(_Base):
    event: Literal["node_completed"] = "node_completed"
    node: str
    type: str
    duration: float
    ui: dict[str, Any] = Field(default_factory=dict)


class NodeFailed(_Base):
    event: Literal["node_failed"] = "node_failed"
    node: str
    type: str
    error_type: str
    message: str
    traceback: str


class RunFinished(_Base):
    event: Literal["run_finished"] = "run_finished"
    status: Literal["success", "failed", "cancelled"]
    duration: float
    executed: int
    cached: int
    error: NodeFailed | None = None


Event = Annotated[
    RunStarted | NodeStarted | Progress | NodeCached | NodeCompleted | NodeFailed | RunFinished,
    Field(discriminator="event"),
]
EventSink = Callable[[Any], None]


def fanout(*sinks: EventSink | None) -> EventSink:
    """One sink that forwards to several (``None`` entries are skipped)."""
    live = [s for s in sinks if s is not None]

    def sink(event: Any) -> None:
        for s in live:
            s(event)

    return sink
