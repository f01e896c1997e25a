"""The ComfyUI-compatible routes: ComfyUI's paths and shapes over nodegraph's queue, store and hub.

``POST /prompt`` takes ComfyUI's API-format prompt for our node types (class names are our type ids, or
the ComfyUI class a node declares), validates it as the native API does, and queues it in the same
queue; ``GET /prompt``, ``GET /queue``, ``POST /queue``, ``GET /history[/{id}]``, ``POST /history``,
``POST /interrupt``, ``GET /object_info[/{class}]``, ``GET /view``, ``POST /upload/image``,
``GET /system_stats``, ``GET /embeddings`` and ``GET /extensions`` answer as ComfyUI's server does. The
WebSocket is ``/ws?clientId=ID`` (:mod:`.bridge`). The same guard covers them as every route (token,
Origin and Host checks, loopback by default). One deliberate difference: the body of ``POST /prompt`` is
read as JSON whatever its content type says (as ComfyUI does; its example clients send urllib's default
``application/x-www-form-urlencoded``), because the guard, not the content type, refuses other sites.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import sys
import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ...issues import Issue
from ..errors import ApiError
from ..keys import BRIDGE, CONFIG, ENGINE, RUNNER, STORE
from ..openapi import ApiRoutes, json_response, read_body
from ..routes import check_workflow, enqueue, upload, view
from ..schemas import UploadResponse, ViewQuery
from .convert import object_info, prompt_to_workflow, workflow_to_prompt

__all__ = ["comfy_api"]

comfy_api = ApiRoutes()
_PROMPT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TAG = "comfyui"


class PromptRequest(BaseModel):
    """ComfyUI's ``POST /prompt`` body."""

    model_config = ConfigDict(extra="allow")
    prompt: dict[str, Any] = Field(description="API format: {node_id: {class_type, inputs: {name: value | "
                                   "[node_id, output_index]}}}; class_type is a nodegraph type id.")
    client_id: str | None = Field(None, description="The WebSocket client (/ws?clientId=) that gets its messages.")
    prompt_id: str | None = Field(None, description="The id to give the job (default: a new uuid).")
    extra_data: dict[str, Any] = Field(default_factory=dict, description="Kept with the job (not extra_pnginfo).")
    front: bool = Field(False, description="Queue at the front.")


class PromptResponse(BaseModel):
    prompt_id: str
    number: int = Field(description="When it was queued (unix milliseconds): orders the queue and the history.")
    node_errors: dict[str, Any]


class PromptError(BaseModel):
    """400 answer of POST /prompt, as ComfyUI's."""

    error: dict[str, Any] = Field(description="{type, message, details, extra_info}")
    node_errors: dict[str, Any] = Field(description="node id -> {errors: [{type, message, details, extra_info}], "
                                        "dependent_outputs, class_type}")


class QueueEdit(BaseModel):
    """``POST /queue`` and ``POST /history``: clear all, or delete some ids."""

    clear: bool = False
    delete: list[str] = Field(default_factory=list)


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    max_items: int | None = Field(None, ge=1, le=10_000)
    offset: int = Field(0, ge=0)


async def _body(request: web.Request, required: bool) -> Any:
    """The body as JSON whatever the content type (ComfyUI's clients send urllib's form type); no body: ``{}``."""
    if request.content_type.startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type", "send a JSON body")
    data = await read_body(request, request.app[CONFIG].max_body_bytes) if request.body_exists else b""
    if not data.strip():
        if required:
            raise ApiError(400, "invalid_request", "this route needs a JSON body")
        return {}
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


async def _queue_edit(request: web.Request) -> QueueEdit:
    try:
        return QueueEdit.model_validate(await _body(request, required=True))
    except ValueError as exc:
        raise ApiError(400, "invalid_request", f'body: {exc}; send {{"clear": true}} or {{"delete": [ids]}}') from None


def _number(job: dict[str, Any]) -> int:
    return int(job["created"] * 1000)


def _comfy_error(issues: list[Issue], prompt: dict[str, Any]) -> dict[str, Any]:
    """Our issues in the shape of ComfyUI's validation answer."""
    node_errors: dict[str, Any] = {}
    for issue in issues:
        if issue.node in prompt and isinstance(prompt[issue.node], dict):
            entry = node_errors.setdefault(issue.node, {"errors": [], "dependent_outputs": [],
                                                        "class_type": prompt[issue.node].get("class_type")})
            entry["errors"].append({"type": issue.code, "message": issue.message, "details": issue.port or "",
                                    "extra_info": {"input_name": issue.port} if issue.port else {}})
    details = "\n".join(i.message for i in issues)
    if issues and all(i.code == "no_outputs" for i in issues):
        error = {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": details, "extra_info": {}}
    elif any(i.code == "unknown_node_type" for i in issues):
        first = next(i for i in issues if i.code == "unknown_node_type")
        error = {"type": "invalid_prompt", "message": f"Cannot execute because a node does not exist: {first.message}",
                 "details": details, "extra_info": {}}
    else:
        error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                 "details": details, "extra_info": {}}
    return PromptError(error=error, node_errors=node_errors).model_dump()


# --- queueing ----------------------------------------------------------------------------------------


@comfy_api.route("POST", "/prompt", summary="Queue a ComfyUI API-format prompt", body={"application/json": "json"},
                 responses={200: PromptResponse, 400: PromptError, 413: None, 429: None}, tag=TAG, raw_body=True)
async def post_prompt(request: web.Request) -> web.StreamResponse:
    """Validates the prompt as the native API validates a workflow (every issue, as ComfyUI's node_errors) and
    queues it in the same queue; its messages go to ``client_id``'s WebSocket."""
    data = await _body(request, required=True)
    if not isinstance(data, dict) or "prompt" not in data:
        return web.json_response(PromptError(error={"type": "no_prompt", "message": "No prompt provided",
                                                    "details": "the body needs a 'prompt'", "extra_info": {}},
                                             node_errors={}).model_dump(), status=400)
    try:
        body = PromptRequest.model_validate(data)
    except ValueError as exc:
        raise ApiError(400, "invalid_request", f"body: {exc}") from None
    registry, store = request.app[ENGINE].registry, request.app[STORE]
    workflow, issues = prompt_to_workflow(body.prompt, registry)
    if workflow is not None and not issues:
        issues = (await check_workflow(request, workflow, None)).issues
    if issues or workflow is None:
        return web.json_response(_comfy_error(issues, body.prompt), status=400)
    prompt_id = body.prompt_id or str(uuid.uuid4())
    if not _PROMPT_ID.match(prompt_id):
        raise ApiError(400, "invalid_request", f"prompt_id {prompt_id!r}: use up to 64 letters, digits, '-' or '_'")
    if await store(lambda s: s.get(prompt_id)) is not None:
        raise ApiError(409, "conflict", f"there is already a job {prompt_id!r}; send another prompt_id or none")
    extra = {k: v for k, v in body.extra_data.items() if k != "extra_pnginfo"}  # the ComfyUI editor's copy of itself
    workflow["meta"]["comfyui"] = {"prompt": body.prompt, "extra_data": extra}
    client_id = body.client_id if body.client_id and _CLIENT_ID.match(body.client_id) else None
    request.app[BRIDGE].queued(prompt_id, body.client_id)
    await enqueue(request, workflow, client_id=client_id, front=body.front, job_id=prompt_id)
    job = await store(lambda s: s.get(prompt_id))
    return json_response(PromptResponse(prompt_id=prompt_id, number=_number(job) if job else 0, node_errors={}))


@comfy_api.route("GET", "/prompt", summary="How many prompts are left (ComfyUI)", tag=TAG,
                 responses={200: {"application/json": "json"}})
async def get_prompt(request: web.Request) -> web.StreamResponse:
    counts = await request.app[STORE](lambda s: s.counts())
    return json_response({"exec_info": {"queue_remaining": counts["queued"] + counts["running"]}})


def _queue_item(job: dict[str, Any], registry: Any) -> list[Any]:
    """A job as ComfyUI lists one: [number, prompt_id, prompt, extra_data, outputs_to_execute]."""
    workflow = job.get("workflow") or {}
    comfy = (workflow.get("meta") or {}).get("comfyui") or {}
    prompt = comfy.get("prompt") or workflow_to_prompt(workflow, registry)
    outputs = job.get("targets") or [nid for nid, n in (workflow.get("nodes") or {}).items()
                                     if (spec := registry.get(str(n.get("type")))) is not None and spec.output_node]
    extra = {**(comfy.get("extra_data") or {}), **({"client_id": job["client_id"]} if job.get("client_id") else {})}
    return [_number(job), job["id"], prompt, extra, outputs]


@comfy_api.route("GET", "/queue", summary="The running and pending prompts (ComfyUI)", tag=TAG,
                 responses={200: {"application/json": "json"}})
async def get_queue(request: web.Request) -> web.StreamResponse:
    registry = request.app[ENGINE].registry

    def read(s: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        # The store lists summaries; ComfyUI's queue items carry each prompt, so read the jobs whole.
        def whole(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [job for j in jobs if (job := s.get(j["id"])) is not None]

        return whole(s.running()), whole(s.queued())

    running, queued = await request.app[STORE](read)
    return json_response({"queue_running": [_queue_item(j, registry) for j in running],
                          "queue_pending": [_queue_item(j, registry) for j in queued]})


@comfy_api.route("POST", "/queue", summary="Clear the queue or delete some of it (ComfyUI)",
                 body={"application/json": "json"}, responses={200: None}, tag=TAG, raw_body=True)
async def post_queue(request: web.Request) -> web.StreamResponse:
    edit = await _queue_edit(request)
    store = request.app[STORE]
    ids = [j["id"] for j in await store(lambda s: s.queued())] if edit.clear else edit.delete
    await store(lambda s: [s.delete_queued(i) for i in ids])
    await request.app[RUNNER].publish_status()
    return web.Response(status=200)


@comfy_api.route("POST", "/interrupt", summary="Interrupt the running prompt (ComfyUI)",
                 body={"application/json": "json"}, responses={200: None}, tag=TAG, raw_body=True)
async def post_interrupt(request: web.Request) -> web.StreamResponse:
    """With ``{"prompt_id": ID}``, only if that prompt is the one running."""
    data = await _body(request, required=False)
    target = data.get("prompt_id") if isinstance(data, dict) else None
    request.app[RUNNER].interrupt(target if isinstance(target, str) else None)
    return web.Response(status=200)


# --- history -----------------------------------------------------------------------------------------


def _history_entry(job: dict[str, Any], registry: Any) -> dict[str, Any]:
    status = job["status"]
    start = {"prompt_id": job["id"], "timestamp": int((job.get("started") or job["created"]) * 1000)}
    end = {"prompt_id": job["id"], "timestamp": int((job.get("finished") or job["created"]) * 1000)}
    error = job.get("error") or {}
    if status == "success":
        last = ["execution_success", end]
    elif status in ("cancelled", "interrupted"):
        last = ["execution_interrupted", {**end, "node_id": error.get("node"), "node_type": error.get("type"),
                                          "executed": []}]
    else:
        last = ["execution_error", {**end, "node_id": error.get("node"), "node_type": error.get("type"),
                                    "executed": [], "exception_message": error.get("message", ""),
                                    "exception_type": error.get("error_type", ""),
                                    "traceback": (error.get("traceback") or "").splitlines(keepends=True),
                                    "current_inputs": {}, "current_outputs": {}}]
    outputs = {nid: {k: ([{f: v for f, v in i.items() if f != "url"} for i in val] if k == "images" else val)
                     for k, val in ui.items()} for nid, ui in (job.get("outputs") or {}).items()}
    return {"prompt": _queue_item(job, registry), "outputs": outputs,
            "status": {"status_str": "success" if status == "success" else "error", "completed": status == "success",
                       "messages": [["execution_start", start], last]},
            "meta": {nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                     for nid in outputs}}


@comfy_api.route("GET", "/history", summary="Finished prompts, oldest first (ComfyUI)", query=HistoryQuery,
                 responses={200: {"application/json": "json"}}, tag=TAG)
async def get_history(request: web.Request, query: HistoryQuery) -> web.StreamResponse:
    """``max_items`` the newest ones (all by default, at most 10,000), ``offset`` skips the newest."""
    registry = request.app[ENGINE].registry
    limit = query.max_items or 10_000

    def read(s: Any) -> list[dict[str, Any]]:
        newest, _ = s.history(limit, query.offset)
        return [job for j in reversed(newest) if (job := s.get(j["id"])) is not None]

    jobs = await request.app[STORE](read)
    return json_response({job["id"]: _history_entry(job, registry) for job in jobs})


@comfy_api.route("GET", "/history/{prompt_id}", summary="One finished prompt (ComfyUI; {} when unknown)",
                 responses={200: {"application/json": "json"}}, tag=TAG)
async def get_history_item(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["prompt_id"]
    job = await request.app[STORE](lambda s: s.get(job_id))
    if job is None or job["status"] in ("queued", "running"):
        return json_response({})
    return json_response({job_id: _history_entry(job, request.app[ENGINE].registry)})


@comfy_api.route("POST", "/history", summary="Clear the history or delete some of it (ComfyUI)",
                 body={"application/json": "json"}, responses={200: None}, tag=TAG, raw_body=True)
async def post_history(request: web.Request) -> web.StreamResponse:
    edit = await _queue_edit(request)

    def apply(s: Any) -> None:
        ids = [j["id"] for j in s.history(1_000_000, 0)[0]] if edit.clear else edit.delete
        for job_id in ids:
            s.delete_finished(job_id)

    await request.app[STORE](apply)
    return web.Response(status=200)


# --- nodes, files, system ------------------------------------------------------------------------------


async def _object_info(request: web.Request) -> dict[str, Any]:
    engine = request.app[ENGINE]
    registry = engine.registry

    def build() -> dict[str, Any]:
        from ..files import list_images

        models = {name: engine.models.list_kind(kind) for name, kind in registry.model_kinds().items()}
        return object_info(registry.catalogue(), sorted(registry.specs(), key=lambda s: s.type_id),
                           input_files=list_images(engine.settings.input_dir), models=models)

    return await asyncio.get_running_loop().run_in_executor(None, build)


@comfy_api.route("GET", "/object_info", summary="Every node type, as ComfyUI describes its nodes", tag=TAG,
                 responses={200: {"application/json": "json"}})
async def get_object_info(request: web.Request) -> web.StreamResponse:
    return json_response(await _object_info(request))


@comfy_api.route("GET", "/object_info/{node_class}", summary="One node type, as ComfyUI describes it", tag=TAG,
                 responses={200: {"application/json": "json"}})
async def get_object_info_node(request: web.Request) -> web.StreamResponse:
    info = await _object_info(request)
    name = request.match_info["node_class"]
    return json_response({name: info[name]} if name in info else {})


@comfy_api.route("GET", "/view", summary="An image (ComfyUI's path of GET /api/view)", query=ViewQuery,
                 responses={200: {"image/png": "binary"}, 400: None, 404: None}, tag=TAG)
async def comfy_view(request: web.Request, query: ViewQuery) -> web.StreamResponse:
    return await view(request, query)


@comfy_api.route("POST", "/upload/image", summary="Upload an image (ComfyUI's path of POST /api/upload)",
                 body={"multipart/form-data": "binary"}, responses={200: UploadResponse, 400: None, 413: None, 415: None},
                 tag=TAG, raw_body=True)
async def comfy_upload(request: web.Request) -> web.StreamResponse:
    return await upload(request)


@comfy_api.route("GET", "/system_stats", summary="System facts, as ComfyUI states them", tag=TAG,
                 responses={200: {"application/json": "json"}})
async def system_stats(request: web.Request) -> web.StreamResponse:
    import importlib.metadata

    from ... import __version__

    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    free = os.sysconf("SC_AVPHYS_PAGES") * page
    device = request.app[ENGINE].settings.device
    return json_response({
        "system": {"os": os.name, "ram_total": pages * page, "ram_free": free,
                   "comfyui_version": f"nodegraph {__version__}", "python_version": sys.version,
                   "pytorch_version": torch_version, "embedded_python": False, "argv": sys.argv,
                   "platform": platform.platform()},
        "devices": [{"name": device, "type": device.split(":")[0], "index": None, "vram_total": 0, "vram_free": 0,
                     "torch_vram_total": 0, "torch_vram_free": 0}],
    })


@comfy_api.route("GET", "/embeddings", summary="Textual-inversion embeddings (none: unCLIP has none)", tag=TAG,
                 responses={200: {"application/json": "json"}})
async def embeddings(request: web.Request) -> web.StreamResponse:
    return json_response([])


@comfy_api.route("GET", "/extensions", summary="ComfyUI front-end extensions (none: ours are for our editor)",
                 tag=TAG, responses={200: {"application/json": "json"}})
async def comfy_extensions(request: web.Request) -> web.StreamResponse:
    return json_response([])
