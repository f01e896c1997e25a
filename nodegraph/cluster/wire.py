"""What travels between the head and a worker: plain data only (no code, no node classes).

Head → worker: a :class:`JobSpec` (the workflow JSON and what to run of it). Worker → head: batches
(lists) of the run's events, interleaved with :class:`FilesOut` (files a node wrote, to land in the
head's folders), :class:`Exported` (an object reference to a node's outputs that another part of
the run needs) and, last, :class:`PartDone`. :class:`WorkerHello` is the worker's answer at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Exported", "FilesOut", "JobSpec", "OutFile", "PartDone", "WorkerHello"]


@dataclass(frozen=True)
class JobSpec:
    """One run (or one part of a run spread over workers), as the worker plans and runs it."""

    run_id: str
    workflow: dict[str, Any]  # the head's workflow JSON: output nodes embed exactly this in their files
    targets: list[str]  # what the worker walks to, exports first
    report: list[str]  # the targets whose outputs go back in PartDone.outputs
    key_dir: str  # the head's output folder: part of output nodes' cache keys, as on the head
    run_nonce: str  # the head's nonce: volatile nodes without a fingerprint key alike
    inputs: dict[str, bytes] = field(default_factory=dict)  # input-folder files the literal inputs name
    imports: dict[str, list[Any]] = field(default_factory=dict)  # node id -> [ObjectRef of its outputs]
    exports: list[str] = field(default_factory=list)  # nodes whose outputs other parts import
    preview_interval: float | None = None  # seconds between previews sent per node; None: none sent


@dataclass(frozen=True)
class OutFile:
    """A file a node wrote: ``folder`` is ``output`` or ``temp``, ``subfolder`` relative to it."""

    folder: str
    subfolder: str
    filename: str
    data: bytes


@dataclass(frozen=True)
class FilesOut:
    """Node ``node`` wrote ``files``; the worker waits for their names on the head before it goes on."""

    node: str
    files: list[OutFile]


@dataclass(frozen=True)
class Exported:
    """The outputs of ``node``, in the object store, for the parts of the run that import them."""

    node: str
    ref: list[Any]  # [ObjectRef]: in a list so that it travels as a reference, not as the value


@dataclass
class PartDone:
    """How the worker's run ended (its events have been sent before)."""

    status: str  # "success" | "failed" | "cancelled"
    outputs: dict[str, dict[str, Any]]
    ui: dict[str, dict[str, Any]]
    executed: list[str]
    cached: list[str]
    error: Any = None  # NodeFailed
    duration: float = 0.0
    model_nodes: list[str] = field(default_factory=list)  # nodes whose outputs hold a loaded model
    model_loads: int = 0  # models the worker's model store loaded (read from disk) for this run
    loaded: list[str] = field(default_factory=list)  # the worker's model store after the run


@dataclass
class WorkerHello:
    """Who a worker is and what it can run (the head compares ``packs`` and ``types`` with its own)."""

    pid: int
    host: str
    ip: str
    node: str
    resources: dict[str, float]
    packs: dict[str, str]
    types: dict[str, int]
    failures: list[str]
    device: str
