"""Declared routes: one declaration gives the aiohttp route, body/query parsing and the OpenAPI entry.

A handler is declared with the pydantic models of its JSON body, its query string and its answers::

    @api.route("POST", "/api/jobs", body=QueueRequest, responses={201: QueueResponse, 400: InvalidWorkflowBody})
    async def queue_job(request: web.Request, body: QueueRequest) -> web.StreamResponse: ...

The wrapper refuses a body that is not ``application/json`` (415), larger than the limit (413) or
that does not fit the model (400), parses the query string with its model (400), and passes the
parsed objects to the handler. :func:`openapi_document` turns the same declarations into the
OpenAPI 3.1 document served at ``/api/openapi.json`` (schemas from the models, never written twice).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema

from .errors import ApiError

__all__ = ["ApiRoutes", "RouteDecl", "json_response", "openapi_document", "read_body"]

Handler = Callable[..., Awaitable[web.StreamResponse]]
#: A response declared as a media type (images, the editor page) rather than a JSON model.
Media = dict[str, str]

_REF = "#/components/schemas/{model}"


@dataclass
class RouteDecl:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | Media | None = None
    query: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | Media | None] = field(default_factory=dict)
    tag: str = "api"
    raw_body: bool = False  # the handler reads the body itself (multipart uploads, whole workflows)


def json_response(value: BaseModel | dict[str, Any] | list[Any], status: int = 200) -> web.Response:
    """A JSON answer; models are dumped in JSON mode, dicts as they are."""
    if isinstance(value, BaseModel):
        text = value.model_dump_json()
    else:
        text = json.dumps(value, separators=(",", ":"), default=str)
    return web.Response(text=text, status=status, content_type="application/json")


def _first_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(body)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes with 413 (also for chunked bodies)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the request body is {request.content_length} bytes; "
                       f"the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request, limit: int, *, required: bool = True) -> Any:
    """The JSON body (``None`` when absent and not required); 415 unless ``Content-Type: application/json``."""
    has_body = request.body_exists
    if not has_body:
        if required:
            raise ApiError(400, "invalid_request", "this route needs a JSON body")
        return None
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", f"send the body as Content-Type: application/json "
                       f"(got {request.content_type or 'none'})")
    data = await read_body(request, limit)
    if not data.strip() and not required:
        return None
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


class ApiRoutes:
    """The declared routes of the app, in declaration order."""

    def __init__(self) -> None:
        self.routes: list[RouteDecl] = []

    def route(self, method: str, path: str, *, summary: str, body: type[BaseModel] | Media | None = None,
              query: type[BaseModel] | None = None,
              responses: dict[int, type[BaseModel] | Media | None] | None = None,
              tag: str = "api", raw_body: bool = False) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append(RouteDecl(method, path, handler, summary, body, query, dict(responses or {}),
                                         tag, raw_body))
            return handler

        return register

    def install(self, app: web.Application, body_limit: Callable[[web.Request], int]) -> None:
        for decl in self.routes:
            if decl.method == "GET":
                app.router.add_get(decl.path, _wrap(decl, body_limit))  # HEAD too
            else:
                app.router.add_route(decl.method, decl.path, _wrap(decl, body_limit))


def _wrap(decl: RouteDecl, body_limit: Callable[[web.Request], int]) -> Handler:
    body_model = decl.body if isinstance(decl.body, type) else None
    query_model = decl.query

    async def handler(request: web.Request) -> web.StreamResponse:
        kwargs: dict[str, Any] = {}
        if query_model is not None:
            try:
                kwargs["query"] = query_model.model_validate(dict(request.query))
            except ValidationError as exc:
                raise ApiError(400, "invalid_request", f"query string: {_first_error(exc)}") from None
        if body_model is not None:
            data = await read_json(request, body_limit(request), required=not _all_optional(body_model))
            try:
                kwargs["body"] = body_model.model_validate(data if data is not None else {})
            except ValidationError as exc:
                raise ApiError(400, "invalid_request", f"body: {_first_error(exc)}") from None
        elif not decl.raw_body and request.method in ("POST", "PUT", "PATCH", "DELETE") and request.body_exists:
            # A route without a body still refuses a non-JSON one (no form posts from other sites).
            await read_json(request, body_limit(request), required=False)
        return await decl.handler(request, **kwargs)

    handler.__name__ = decl.handler.__name__
    handler.__doc__ = decl.handler.__doc__
    return handler


def _all_optional(model: type[BaseModel]) -> bool:
    return all(not f.is_required() for f in model.model_fields.values())


# --- the OpenAPI document ---------------------------------------------------------------------------


def _content(item: type[BaseModel] | Media | None) -> dict[str, Any] | None:
    if item is None:
        return None
    if isinstance(item, dict):
        return {media: {"schema": {"type": "string", "format": "binary"} if desc == "binary" else {"type": "string"}}
                for media, desc in item.items()}
    return {"application/json": {"schema": {"$ref": _REF.format(model=item.__name__)}}}


_STATUS_TEXT = {200: "OK", 201: "Created", 204: "No content", 400: "Bad request", 401: "Unauthorized",
                403: "Forbidden", 404: "Not found", 409: "Conflict", 413: "Payload too large",
                415: "Unsupported media type", 429: "Too many requests (queue full)"}


def openapi_document(routes: ApiRoutes, *, version: str, extra_models: tuple[type[BaseModel], ...] = (),
                     extra_schemas: dict[str, Any] | None = None, description: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``; component schemas come from the pydantic models."""
    from .schemas import ApiErrorBody

    models: dict[str, type[BaseModel]] = {ApiErrorBody.__name__: ApiErrorBody}
    for decl in routes.routes:
        for item in (decl.body, decl.query, *decl.responses.values()):
            if isinstance(item, type) and issubclass(item, BaseModel):
                models[item.__name__] = item
    for m in extra_models:
        models[m.__name__] = m
    _, top = models_json_schema([(m, "validation") for m in models.values()], ref_template=_REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas.update(extra_schemas or {})

    paths: dict[str, Any] = {}
    for decl in routes.routes:
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", decl.path)
        paths.setdefault(path, {})[decl.method.lower()] = _operation(decl)
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "nodegraph server API", "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Needed when the server was started with --token."},
                "query": {"type": "apiKey", "in": "query", "name": "token"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "nodegraph_token"},
            },
        },
        "security": [{}, {"bearer": []}, {"query": []}, {"cookie": []}],
    }
    return _replace_marks(doc)


def _operation(decl: RouteDecl) -> dict[str, Any]:
    """The OpenAPI operation of one declared route: parameters, body and answers (errors as ApiErrorBody)."""
    from .schemas import ApiErrorBody

    op: dict[str, Any] = {"summary": decl.summary, "operationId": decl.handler.__name__, "tags": [decl.tag]}
    if decl.handler.__doc__:
        op["description"] = " ".join(decl.handler.__doc__.split())
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"\{(\w+)", decl.path)]
    if decl.query is not None:
        qschema = decl.query.model_json_schema(ref_template=_REF)
        required = set(qschema.get("required", []))
        for name, prop in qschema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    if params:
        op["parameters"] = params
    if decl.body is not None:
        op["requestBody"] = {"required": True, "content": _content(decl.body)}
    responses: dict[str, Any] = {}
    for status, item in sorted(decl.responses.items()):
        entry: dict[str, Any] = {"description": _STATUS_TEXT.get(status, str(status))}
        content = _content(ApiErrorBody if item is None and status >= 400 else item)
        if content:
            entry["content"] = content
        responses[str(status)] = entry
    for status in (401, 403):
        responses.setdefault(str(status), {"description": _STATUS_TEXT[status], "content": _content(ApiErrorBody)})
    op["responses"] = responses
    return op


def _replace_marks(node: Any) -> Any:
    """Workflow fields carry a marker schema (pydantic cannot $ref a model it does not build): link them."""
    from .schemas import WORKFLOW_MARK

    if isinstance(node, dict):
        if all(node.get(k) == v for k, v in WORKFLOW_MARK.items()):
            return {"$ref": _REF.format(model="Workflow")}
        return {k: _replace_marks(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_marks(v) for v in node]
    return node


def ws_message_schemas() -> dict[str, Any]:
    """JSON Schemas of every WebSocket message (components of the OpenAPI document)."""
    from .messages import WS_MESSAGES, WsMessage

    _, top = models_json_schema([(m, "serialization") for m in WS_MESSAGES], ref_template=_REF)
    schemas = dict(top.get("$defs", {}))
    union = TypeAdapter(WsMessage).json_schema(ref_template=_REF, mode="serialization")
    schemas["WsMessage"] = {k: v for k, v in union.items() if k != "$defs"}
    return _replace_marks(schemas)
