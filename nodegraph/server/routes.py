"""The HTTP API of docs/api.md (v1): catalogue, validation, queue, history, files, workflows, system.

Handlers are thin: parse (the route declarations in :mod:`.openapi` have already checked content
type, size and shape), call the engine or the job store, answer with a model from :mod:`.schemas`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import platform
import uuid
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from ..catalogue import PackFailureSchema, PackSchema
from ..upgrade import upgrade_workflow
from ..validation import ValidationResult
from ..workflow import WorkflowFormatError, load_workflow
from . import files
from .errors import ApiError
from .keys import CONFIG, ENGINE, HUB, OPENAPI, RUNNER, STORE
from .messages import WS_VERSION, ValidationFailedData, ValidationFailedMessage
from .openapi import ApiRoutes, json_response, read_json
from .schemas import (
    ExtensionList,
    FileList,
    HistoryPage,
    HistoryQuery,
    InterruptRequest,
    InterruptResponse,
    InvalidWorkflowBody,
    Job,
    JobList,
    ModelList,
    ModelsQuery,
    MoveRequest,
    MoveResponse,
    NodeCatalogue,
    QueueInfo,
    QueueRequest,
    QueueResponse,
    RequeueRequest,
    SavedWorkflow,
    SystemInfo,
    UnreadableWorkflowBody,
    UpgradeResponse,
    UploadResponse,
    ValidateRequest,
    ViewQuery,
    WorkflowBody,
    WorkflowList,
    WsQuery,
)
from .store import FINISHED, QueueFull

__all__ = ["api", "body_limit", "check_workflow"]

api = ApiRoutes()
IMAGE_MEDIA = {"image/png": "binary", "image/jpeg": "binary", "image/webp": "binary", "image/bmp": "binary"}


def body_limit(request: web.Request) -> int:
    return request.app[CONFIG].max_body_bytes


# --- validation ------------------------------------------------------------------------------------


async def check_workflow(request: web.Request, workflow: Any, targets: list[str] | None) -> ValidationResult:
    """The engine's validation (file names included), off the event loop."""
    engine = request.app[ENGINE]
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: engine.validate(workflow, targets=targets))


# --- catalogue and validation --------------------------------------------------------------------


@api.route("GET", "/api/nodes", summary="The node catalogue", responses={200: NodeCatalogue}, tag="nodes")
async def get_nodes(request: web.Request) -> web.StreamResponse:
    """Every node type's schema (from the registry), the packs, and the packs that failed to load."""
    return json_response(request.app[ENGINE].registry.catalogue())


@api.route("POST", "/api/validate", summary="Validate a workflow", body=ValidateRequest,
           responses={200: ValidationResult, 400: None, 413: None, 415: None}, tag="nodes")
async def validate_workflow(request: web.Request, body: ValidateRequest) -> web.StreamResponse:
    """Every issue in one pass; nothing runs."""
    return json_response(await check_workflow(request, body.workflow, body.targets))


@api.route("POST", "/api/upgrade", summary="Bring a workflow up to date", body=WorkflowBody,
           responses={200: UpgradeResponse, 400: UnreadableWorkflowBody, 413: None, 415: None}, tag="nodes")
async def upgrade(request: web.Request, body: WorkflowBody) -> web.StreamResponse:
    """The body is a workflow in any format this server reads. The answer is that workflow in the current
    format, with renamed node types and nodes saved with older versions upgraded as a run would upgrade
    them; nodes that cannot be are listed in ``issues`` and left as they were. Nothing is validated
    beyond that (POST /api/validate does). A body that is no workflow is answered 400."""
    registry = request.app[ENGINE].registry
    workflow, issues = await asyncio.get_running_loop().run_in_executor(
        None, lambda: upgrade_workflow(body.root, registry))
    if workflow is None:
        raise ApiError(400, issues[0].code, issues[0].message, issues=[i.model_dump() for i in issues])
    return json_response(UpgradeResponse(workflow=workflow, issues=issues))


# --- jobs ------------------------------------------------------------------------------------------


async def _status(request: web.Request) -> None:
    await request.app[RUNNER].publish_status()


@api.route("POST", "/api/jobs", summary="Queue a workflow", body=QueueRequest,
           responses={201: QueueResponse, 400: InvalidWorkflowBody, 413: None, 415: None, 429: None}, tag="jobs")
async def queue_job(request: web.Request, body: QueueRequest) -> web.StreamResponse:
    """Validate and queue; an invalid workflow is answered 400 with every issue (and, when ``client_id``
    is given, a ``validation_failed`` message to that WebSocket client)."""
    config, store = request.app[CONFIG], request.app[STORE]
    result = await check_workflow(request, body.workflow, body.targets)
    if not result.valid:
        if body.client_id:
            msg = ValidationFailedMessage(data=ValidationFailedData(issues=result.issues))
            request.app[HUB].send_to(body.client_id, msg.model_dump_json())
        raise ApiError(400, "invalid_workflow", f"the workflow is invalid ({len(result.issues)} issue(s))",
                       issues=[i.model_dump() for i in result.issues])
    job_id = uuid.uuid4().hex
    try:
        position = await store(lambda s: s.add(job_id, body.workflow, targets=body.targets,
                                               client_id=body.client_id, front=body.front,
                                               max_queue=config.max_queue))
    except QueueFull as exc:
        raise ApiError(429, "queue_full", str(exc)) from None
    request.app[RUNNER].wake()
    await _status(request)
    return json_response(QueueResponse(job_id=job_id, position=position), status=201)


@api.route("GET", "/api/jobs", summary="The running job and the queue", responses={200: JobList}, tag="jobs")
async def list_jobs(request: web.Request) -> web.StreamResponse:
    running, queued = await request.app[STORE](lambda s: (s.running(), s.queued()))
    return json_response({"running": running, "queued": queued})


async def _job_or_404(request: web.Request, job_id: str) -> dict[str, Any]:
    job = await request.app[STORE](lambda s: s.get(job_id))
    if job is None:
        raise ApiError(404, "not_found", f"there is no job {job_id!r}")
    return job


@api.route("GET", "/api/jobs/{id}", summary="One job", responses={200: Job, 404: None}, tag="jobs")
async def get_job(request: web.Request) -> web.StreamResponse:
    return json_response(await _job_or_404(request, request.match_info["id"]))


@api.route("DELETE", "/api/jobs/{id}", summary="Remove a queued job", responses={204: None, 404: None, 409: None},
           tag="jobs")
async def delete_job(request: web.Request) -> web.StreamResponse:
    """Only queued jobs; a running job answers 409 (interrupt it), a finished one 409 (DELETE /api/history/{id})."""
    job_id = request.match_info["id"]
    outcome = await request.app[STORE](lambda s: s.delete_queued(job_id))
    if outcome == "missing":
        raise ApiError(404, "not_found", f"there is no job {job_id!r}")
    if outcome == "running":
        raise ApiError(409, "conflict", f"job {job_id} is running; use POST /api/interrupt to stop it")
    if outcome != "deleted":
        raise ApiError(409, "conflict", f"job {job_id} is {outcome}, not queued; use DELETE /api/history/{job_id}")
    await _status(request)
    return web.Response(status=204)


@api.route("POST", "/api/jobs/{id}/move", summary="Reorder a queued job", body=MoveRequest,
           responses={200: MoveResponse, 404: None, 409: None}, tag="jobs")
async def move_job(request: web.Request, body: MoveRequest) -> web.StreamResponse:
    job_id = request.match_info["id"]
    position = await request.app[STORE](lambda s: s.move(job_id, body.position))
    if position is None:
        job = await _job_or_404(request, job_id)
        raise ApiError(409, "conflict", f"job {job_id} is {job['status']}; only queued jobs can be moved")
    await _status(request)
    return json_response(MoveResponse(position=position))


@api.route("POST", "/api/jobs/{id}/requeue", summary="Queue a copy of a finished job", body=RequeueRequest,
           responses={201: QueueResponse, 404: None, 409: None, 429: None}, tag="jobs")
async def requeue_job(request: web.Request, body: RequeueRequest) -> web.StreamResponse:
    """A finished, failed, cancelled or interrupted job runs again as a new job (same workflow and targets)."""
    config, store = request.app[CONFIG], request.app[STORE]
    old = await _job_or_404(request, request.match_info["id"])
    if old["status"] not in FINISHED:
        raise ApiError(409, "conflict", f"job {old['id']} is {old['status']}; only finished jobs can be re-queued")
    job_id = uuid.uuid4().hex
    try:
        position = await store(lambda s: s.add(job_id, old["workflow"], targets=old["targets"],
                                               client_id=body.client_id or old["client_id"], front=body.front,
                                               max_queue=config.max_queue, requeued_from=old["id"]))
    except QueueFull as exc:
        raise ApiError(429, "queue_full", str(exc)) from None
    request.app[RUNNER].wake()
    await _status(request)
    return json_response(QueueResponse(job_id=job_id, position=position), status=201)


@api.route("POST", "/api/interrupt", summary="Interrupt the running job", body=InterruptRequest,
           responses={200: InterruptResponse}, tag="jobs")
async def interrupt(request: web.Request, body: InterruptRequest) -> web.StreamResponse:
    """Cooperative: the job stops at its next progress report or between nodes, and is recorded cancelled."""
    return json_response(InterruptResponse(interrupted=request.app[RUNNER].interrupt(body.job_id)))


@api.route("GET", "/api/history", summary="Finished jobs, newest first", query=HistoryQuery,
           responses={200: HistoryPage}, tag="jobs")
async def history(request: web.Request, query: HistoryQuery) -> web.StreamResponse:
    jobs, total = await request.app[STORE](lambda s: s.history(query.limit, query.offset))
    return json_response({"jobs": jobs, "total": total})


@api.route("DELETE", "/api/history/{id}", summary="Forget a finished job (its files stay)",
           responses={204: None, 404: None, 409: None}, tag="jobs")
async def delete_history(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["id"]
    outcome = await request.app[STORE](lambda s: s.delete_finished(job_id))
    if outcome == "missing":
        raise ApiError(404, "not_found", f"there is no job {job_id!r}")
    if outcome != "deleted":
        raise ApiError(409, "conflict", f"job {job_id} is {outcome}; only finished jobs are in the history")
    return web.Response(status=204)


# --- files -----------------------------------------------------------------------------------------


@api.route("GET", "/api/view", summary="An image from the output, temp or input folder", query=ViewQuery,
           responses={200: IMAGE_MEDIA, 400: None, 404: None}, tag="files")
async def view(request: web.Request, query: ViewQuery) -> web.StreamResponse:
    """Served with the content type of its decoded format (PNG, JPEG, WebP, BMP), never as HTML or SVG."""
    base = request.app[ENGINE].settings.folders()[query.type]
    name = f"{query.subfolder.strip('/')}/{query.filename}" if query.subfolder.strip("/") else query.filename
    path = files.confined(base, name)
    loop = asyncio.get_running_loop()
    content_type = await loop.run_in_executor(None, lambda: files.image_content_type(path) if path.is_file() else "")
    if content_type == "":
        raise ApiError(404, "not_found", f"there is no file {name!r} in the {query.type} folder")
    if content_type is None:
        raise ApiError(415, "unsupported_media_type", f"{name!r} is not a PNG, JPEG, WebP or BMP image")
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "private, no-cache",
                                           "Content-Disposition": "inline"})


@api.route("POST", "/api/upload", summary="Upload an image to the input folder",
           body={"multipart/form-data": "binary"},
           responses={200: UploadResponse, 400: None, 413: None, 415: None}, tag="files", raw_body=True)
async def upload(request: web.Request) -> web.StreamResponse:
    """Multipart field ``image`` (and optionally ``overwrite=true``). The file must decode as a PNG, JPEG,
    WebP or BMP image; a workflow embedded in a PNG is kept in the file and never run."""
    config = request.app[CONFIG]
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the image as multipart/form-data, field 'image'")
    limit = config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise ApiError(413, "payload_too_large", f"the upload is {request.content_length} bytes; the limit is "
                       f"{limit} bytes")
    data: bytes | None = None
    filename: str | None = None
    overwrite = False
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):  # a nested multipart: not ours
            continue
        chunks, size = [], 0
        while chunk := await part.read_chunk(65536):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "payload_too_large", f"the image exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if part.name == "image":
            data, filename = b"".join(chunks), part.filename
        elif part.name == "overwrite":
            overwrite = b"".join(chunks).strip().lower() in (b"true", b"1", b"yes")
    if not data:
        raise ApiError(400, "invalid_request", "no image: send the file in the multipart field 'image'")
    folder = Path(request.app[ENGINE].settings.input_dir)

    def save() -> str:
        fmt = files.check_image(data, config.max_image_pixels)
        return files.store_upload(folder, files.upload_name(filename, fmt), data, overwrite=overwrite)

    name = await asyncio.get_running_loop().run_in_executor(None, save)
    return json_response(UploadResponse(name=name))


@api.route("GET", "/api/files/input", summary="Input images (for image widgets)", responses={200: FileList},
           tag="files")
async def input_files(request: web.Request) -> web.StreamResponse:
    folder = Path(request.app[ENGINE].settings.input_dir)
    names = await asyncio.get_running_loop().run_in_executor(None, files.list_images, folder)
    return json_response(FileList(files=names))


@api.route("GET", "/api/models", summary="Models available by name", query=ModelsQuery,
           responses={200: ModelList}, tag="files")
async def models(request: web.Request, query: ModelsQuery) -> web.StreamResponse:
    """Names in the model folders (under ``<folder>/<kind>/`` when ``kind`` is given)."""
    store = request.app[ENGINE].models
    names = await asyncio.get_running_loop().run_in_executor(None, store.list, query.kind)
    return json_response(ModelList(models=[n for n in names if not n.startswith(".")]))


# --- saved workflows -------------------------------------------------------------------------------


def _workflows_dir(request: web.Request) -> Path:
    return request.app[CONFIG].data_dir / "workflows"


@api.route("GET", "/api/workflows", summary="Saved workflows", responses={200: WorkflowList}, tag="workflows")
async def list_workflows(request: web.Request) -> web.StreamResponse:
    folder = _workflows_dir(request)
    names = sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith(".")) if folder.is_dir() else []
    return json_response(WorkflowList(workflows=names))


@api.route("GET", "/api/workflows/{name}", summary="A saved workflow", responses={200: {"application/json": "json"},
           404: None}, tag="workflows")
async def get_workflow(request: web.Request) -> web.StreamResponse:
    path = files.workflow_path(_workflows_dir(request), request.match_info["name"])
    if not path.is_file():
        raise ApiError(404, "not_found", f"there is no saved workflow {request.match_info['name']!r}")
    return web.Response(body=path.read_bytes(), content_type="application/json")


@api.route("PUT", "/api/workflows/{name}", summary="Save a workflow", body={"application/json": "json"},
           responses={200: SavedWorkflow, 400: None, 413: None, 415: None}, tag="workflows", raw_body=True)
async def put_workflow(request: web.Request) -> web.StreamResponse:
    """The body is a workflow (checked against the workflow format; it need not be runnable)."""
    name = request.match_info["name"]
    folder = _workflows_dir(request)
    path = files.workflow_path(folder, name)
    data = await read_json(request, request.app[CONFIG].max_body_bytes)
    try:
        load_workflow(data)
    except WorkflowFormatError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    except ValueError as exc:  # pydantic's ValidationError
        raise ApiError(400, "invalid_workflow", f"not a workflow: {exc}") from None
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return json_response(SavedWorkflow(name=name))


@api.route("DELETE", "/api/workflows/{name}", summary="Delete a saved workflow", responses={204: None, 404: None},
           tag="workflows")
async def delete_workflow(request: web.Request) -> web.StreamResponse:
    path = files.workflow_path(_workflows_dir(request), request.match_info["name"])
    if not path.is_file():
        raise ApiError(404, "not_found", f"there is no saved workflow {request.match_info['name']!r}")
    path.unlink()
    return web.Response(status=204)


# --- system ----------------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)  # reads metadata; never imports the package
    except importlib.metadata.PackageNotFoundError:
        return None


@api.route("GET", "/api/system", summary="Versions, packs, device, cache and queue", responses={200: SystemInfo},
           tag="system")
async def system(request: web.Request) -> web.StreamResponse:
    import aiohttp
    import pydantic

    from .. import API_VERSION, __version__

    engine, config = request.app[ENGINE], request.app[CONFIG]
    counts = await request.app[STORE](lambda s: s.counts())
    registry = engine.registry
    info = SystemInfo(
        versions={"nodegraph": __version__, "api": API_VERSION, "ws": WS_VERSION,
                  "python": platform.python_version(), "aiohttp": aiohttp.__version__,
                  "pydantic": pydantic.VERSION, "torch": _version("torch"), "numpy": _version("numpy"),
                  "pillow": _version("pillow")},
        packs=[PackSchema.of(p) for p in registry.packs.values()],
        failed_packs=[PackFailureSchema.of(f) for f in registry.failures], device=engine.settings.device,
        cache={**engine.cache.stats(), "models_loaded": engine.models.loaded()},
        queue=QueueInfo(max_queue=config.max_queue, **counts),
    )
    return json_response(info)


@api.route("GET", "/api/extensions", summary="The packs' front-end modules", responses={200: ExtensionList},
           tag="system")
async def extensions(request: web.Request) -> web.StreamResponse:
    from .static import extension_scripts

    return json_response(ExtensionList(scripts=extension_scripts(request.app[ENGINE].registry)))


@api.route("GET", "/ws", summary="WebSocket of queue status and run events", query=WsQuery,
           responses={101: None}, tag="events")
async def websocket(request: web.Request, query: WsQuery) -> web.StreamResponse:
    """Messages server -> client are JSON text frames ``{"v": 1, "type", "data", "t"}`` (schema:
    ``WsMessage``). A client may send ``{"type": "subscribe", "job_id": ID}`` to get only the events of
    the jobs it names (``"job_id": null``: every job again) and ``{"type": "unsubscribe", "job_id": ID}``."""
    return await request.app[HUB].handle(request, query.client_id)


@api.route("GET", "/extensions/{pack}/{tail:.+}", summary="A file of a pack's front-end folder",
           responses={200: {"text/javascript": "text"}, 404: None}, tag="static")
async def pack_file(request: web.Request) -> web.StreamResponse:
    from .static import extension_file

    return await extension_file(request)


@api.route("GET", "/", summary="The editor (and every file of web/ below /)", responses={200: {"text/html": "text"}},
           tag="static")
async def editor_page(request: web.Request) -> web.StreamResponse:
    """``/?token=T`` also sets the ``nodegraph_token`` cookie (HttpOnly, SameSite=Strict) so that the page's
    module imports authenticate."""
    from .static import editor_file

    return await editor_file(request)


@api.route("GET", "/api/openapi.json", summary="This document", responses={200: {"application/json": "json"}},
           tag="system")
async def openapi(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[OPENAPI])

