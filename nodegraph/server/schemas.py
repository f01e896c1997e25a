"""Pydantic models of the API's request and response bodies (v1); WebSocket messages are in :mod:`.messages`.

These models are the single description of the wire format: request bodies are parsed with them,
the OpenAPI document at ``/api/openapi.json`` is generated from them, and the tests check every
answer against them. Changes within v1 are additive only (docs/api.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, WithJsonSchema

from ..catalogue import NodeCatalogue, PackFailureSchema, PackSchema
from ..validation import Issue, ValidationResult

__all__ = [
    "WORKFLOW_MARK",
    "ApiErrorBody",
    "CacheInfo",
    "ExtensionList",
    "FileList",
    "HistoryPage",
    "HistoryQuery",
    "InterruptRequest",
    "InterruptResponse",
    "InvalidWorkflowBody",
    "Issue",
    "Job",
    "JobError",
    "JobList",
    "ModelList",
    "ModelsQuery",
    "MoveRequest",
    "MoveResponse",
    "NodeCatalogue",
    "QueueInfo",
    "QueueRequest",
    "QueueResponse",
    "RequeueRequest",
    "SavedWorkflow",
    "SystemInfo",
    "UnreadableWorkflowBody",
    "UpgradeResponse",
    "UploadResponse",
    "ValidateRequest",
    "ValidationResult",
    "ViewQuery",
    "WorkflowBody",
    "WorkflowList",
    "WsQuery",
]


#: A workflow as sent by clients: validated by the engine (which reports structured issues), so the
#: body model accepts any JSON here and documents it as the workflow format.
WORKFLOW_MARK = {"x-nodegraph": "workflow"}  # replaced by a $ref to the Workflow schema in the OpenAPI document
WorkflowJson = Annotated[Any, WithJsonSchema(WORKFLOW_MARK)]
JobId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ClientId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
JobStatus = Literal["queued", "running", "success", "failed", "cancelled", "interrupted"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. ?token= rides along on any URL


# --- errors ----------------------------------------------------------------------------------------


class ApiErrorBody(BaseModel):
    """Every error answer: a machine-readable code and a message saying what to do."""

    error: str = Field(description="e.g. not_found, invalid_request, unsupported_media_type, payload_too_large, "
                       "queue_full, unauthorized, forbidden, conflict, invalid_workflow, unsafe_path")
    message: str


class InvalidWorkflowBody(ApiErrorBody):
    """400 answer of POST /api/jobs: every issue found in the workflow."""

    error: Literal["invalid_workflow"] = "invalid_workflow"
    issues: list[Issue]


class UnreadableWorkflowBody(ApiErrorBody):
    """400 answer when the body is no workflow at all: why, as issues."""

    error: Literal["invalid_json", "unsupported_format", "invalid_workflow"]
    issues: list[Issue]


# --- validation and jobs -------------------------------------------------------------------------


class ValidateRequest(_Body):
    workflow: WorkflowJson
    targets: list[str] | None = Field(None, max_length=10_000, description="Validate only what these nodes need.")


class WorkflowBody(RootModel[WorkflowJson]):
    """A request body that is a workflow itself, in any format the engine reads."""


class UpgradeResponse(BaseModel):
    """POST /api/upgrade: the workflow as this install reads it, and what could not be upgraded."""

    workflow: WorkflowJson = Field(description="The workflow in the current format: node types as they are "
                                   "named now, inputs of the nodes' current versions; everything else as sent.")
    issues: list[Issue] = Field(description="The nodes that could not be upgraded (unknown_node_type, "
                                "version_mismatch); they are left as they were.")


class QueueRequest(_Body):
    workflow: WorkflowJson
    client_id: ClientId | None = Field(None, description="The WebSocket client that queued (gets validation_failed).")
    targets: list[str] | None = Field(None, max_length=10_000, description="Run only what these nodes need.")
    front: bool = Field(False, description="Put the job at the front of the queue.")


class QueueResponse(BaseModel):
    job_id: str
    position: int = Field(description="Place in the queue when queued (0 = next).")


class JobError(BaseModel):
    node: str | None
    type: str | None
    error_type: str
    message: str
    traceback: str = ""


class Job(BaseModel):
    """A job, queued, running or finished."""

    id: str
    status: JobStatus
    created: float = Field(description="Unix seconds.")
    started: float | None
    finished: float | None
    position: int | None = Field(description="Place in the queue (queued jobs only).")
    client_id: str | None
    workflow: WorkflowJson
    targets: list[str] | None
    error: JobError | None
    outputs: dict[str, dict[str, Any]] = Field(description="node id -> what the node showed, e.g. "
                                               '{"images": [{"filename", "subfolder", "type", "url"}]}')
    requeued_from: str | None = Field(None, description="The job this one is a re-queued copy of.")


class JobList(BaseModel):
    """GET /api/jobs: the running job and the queue in order."""

    running: Job | None
    queued: list[Job]


class RequeueRequest(_Body):
    client_id: ClientId | None = Field(None, description="Client of the new job (default: the original's).")
    front: bool = Field(False, description="Put the new job at the front of the queue.")


class MoveRequest(_Body):
    position: int = Field(ge=0, description="New place in the queue (0 = next); clamped to its length.")


class MoveResponse(BaseModel):
    position: int


class InterruptRequest(_Body):
    job_id: JobId | None = Field(None, description="Interrupt only if this job is the running one.")


class InterruptResponse(BaseModel):
    interrupted: str | None = Field(description="The job that was asked to stop, or null.")


class HistoryQuery(_Query):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0)


class WsQuery(_Query):
    client_id: ClientId | None = Field(None, description="Names this connection (validation_failed replies).")


class HistoryPage(BaseModel):
    jobs: list[Job] = Field(description="Finished jobs, newest first.")
    total: int


# --- files -----------------------------------------------------------------------------------------


class ViewQuery(_Query):
    filename: str = Field(min_length=1, max_length=255)
    subfolder: str = Field("", max_length=1024)
    type: Literal["output", "temp", "input"] = "output"


class UploadResponse(BaseModel):
    name: str
    subfolder: str = ""
    type: Literal["input"] = "input"


class FileList(BaseModel):
    files: list[str]


class ModelsQuery(_Query):
    kind: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
                             description="Model folder, e.g. 'unclip'; omit for the top level.")


class ModelList(BaseModel):
    models: list[str]


class WorkflowList(BaseModel):
    workflows: list[str]


class SavedWorkflow(BaseModel):
    name: str


# --- system --------------------------------------------------------------------------------------------


class CacheInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int
    models_loaded: list[str] = Field(default_factory=list)


class QueueInfo(BaseModel):
    queued: int
    running: int
    finished: int
    max_queue: int


class SystemInfo(BaseModel):
    versions: dict[str, str | int | None]
    packs: list[PackSchema]
    failed_packs: list[PackFailureSchema]
    device: str
    cache: CacheInfo
    queue: QueueInfo


class ExtensionList(BaseModel):
    scripts: list[str] = Field(description="URLs of the packs' front-end modules, /extensions/<pack>/<file>.js")
