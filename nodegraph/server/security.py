"""Safe by default: the request guard (host, cross-site, token), JSON errors and security headers.

- **Host check** (without a token): the ``Host`` header must name a loopback address (or the bound
  host), which defeats DNS-rebinding pages that would otherwise reach a 127.0.0.1 server.
- **Cross-site refusal**: ``Sec-Fetch-Site: cross-site`` or ``same-site`` and an ``Origin`` other
  than the server's own are refused (403). Only a plain top-level navigation to the editor page
  (``GET``, ``Sec-Fetch-Mode: navigate``, not ``/api`` or ``/ws``) may come from a link elsewhere.
- **Token** (``--token``): every route and the WebSocket need it, as ``Authorization: Bearer T``,
  ``?token=T`` or the ``nodegraph_token`` cookie (set, HttpOnly and SameSite=Strict, by
  ``GET /?token=T``); compared in constant time.
- **Headers** on every answer: ``X-Content-Type-Options: nosniff``, no referrer, no framing, and a
  ``Content-Security-Policy`` (a strict one for the editor's HTML, ``default-src 'none'`` for
  everything else).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import DecompressSizeError, HttpProcessingError

from .config import ServerConfig, is_loopback
from .errors import ApiError
from .store import StoreFull, is_disk_full

__all__ = ["TOKEN_COOKIE", "editor_csp", "error_middleware", "guard_middleware", "security_headers",
           "token_matches"]

log = logging.getLogger(__name__)

TOKEN_COOKIE = "nodegraph_token"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                 415: "unsupported_media_type", 429: "queue_full", 507: "disk_full"}
_STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"


#: First path parts of the ComfyUI-compatible routes (nodegraph/server/comfy): API routes like /api's.
COMFY_ROOTS = frozenset({"prompt", "queue", "history", "interrupt", "object_info", "view", "upload", "system_stats",
                         "embeddings", "extensions"})


def _is_api(path: str) -> bool:
    return path.startswith("/api/") or path in ("/api", "/ws") or path.split("/", 2)[1] in COMFY_ROOTS


def _error_response(request: web.Request, status: int, code: str, message: str,
                    extra: dict | None = None, headers: dict[str, str] | None = None) -> web.Response:
    if _is_api(request.path) or request.path.startswith("/extensions/"):
        import json

        body = json.dumps({"error": code, "message": message, **(extra or {})})
        return web.Response(status=status, text=body, content_type="application/json", headers=headers)
    return web.Response(status=status, text=f"{status} {code}: {message}\n", content_type="text/plain",
                        headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes ``{"error": CODE, "message": TEXT}`` (plain text outside /api)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(request, exc.status, exc.code, exc.message, exc.extra, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "error")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else (exc.reason or code)
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return _error_response(request, exc.status, code, message.strip(), headers=headers or None)
    except (HttpProcessingError, web.RequestPayloadError) as exc:
        # A body aiohttp cannot read: bad chunked framing, a Content-Encoding that does not decode (or
        # decodes past its limit), a malformed multipart part header. The client's fault, never a 500.
        too_large = isinstance(exc, DecompressSizeError) or isinstance(exc.__cause__, DecompressSizeError)
        status, code = (413, "payload_too_large") if too_large else (400, "malformed_request")
        return _error_response(request, status, code, f"the request is malformed: {_reason(exc)}")
    except ConnectionResetError:  # the client went away mid-body: nobody reads the answer
        log.debug("%s %s: the client closed the connection", request.method, request.path)
        return _error_response(request, 400, "malformed_request", "the connection closed before the body ended")
    except StoreFull as exc:
        return _error_response(request, 507, "disk_full", str(exc), {"folder": str(exc.folder)})
    except OSError as exc:
        if not is_disk_full(exc):
            log.exception("unhandled error in %s %s", request.method, request.path)
            return _error_response(request, 500, "internal_error", "the server hit an unexpected error; see its log")
        where = Path(exc.filename).parent if exc.filename else None
        message = (f"the disk of {where} is full; free space there and try again" if where is not None else
                   "a disk the server writes to is full; free space and try again")
        return _error_response(request, 507, "disk_full", message, {"folder": str(where) if where else None})
    except Exception:  # noqa: BLE001 - a bug in a handler must not take the server down
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _error_response(request, 500, "internal_error", "the server hit an unexpected error; see its log")


def _reason(exc: Exception) -> str:
    """aiohttp's text of a parse error, on one line ("400, message: ..." prefixes dropped)."""
    text = exc.message if isinstance(exc, HttpProcessingError) and exc.message else str(exc)
    text = " ".join(line.strip() for line in str(text).splitlines() if line.strip())
    text = re.sub(r"^\d{3}, message:\s*", "", text)
    return text or type(exc).__name__


def token_matches(presented: str | None, token: str) -> bool:
    """Constant-time comparison (``hmac.compare_digest`` on bytes)."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass"))


def _presented(request: web.Request) -> list[str]:
    found = []
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        found.append(auth[7:].strip())
    if "token" in request.query:
        found.append(request.query["token"])
    cookie = request.cookies.get(TOKEN_COOKIE)
    if cookie:
        found.append(cookie)
    return found


def _hostname(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin_netloc(origin: str) -> str | None:
    m = re.match(r"^[a-z][a-z0-9+.-]*://([^/?#]+)$", origin.strip().lower())
    return m.group(1) if m else None


def _same_host(netloc: str, host_header: str) -> bool:
    a, b = netloc.lower(), host_header.strip().lower()
    if a == b:
        return True
    # Default ports: an Origin of http://host equals a Host of host:80 (and https/443).
    for port in (":80", ":443"):
        if a + port == b or b + port == a:
            return True
    return False


def guard_middleware(config: ServerConfig) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The request guard: host check (no token), cross-site refusal, token check."""
    allowed_hosts = None if config.token else {"127.0.0.1", "localhost", "::1", config.host.strip("[]").lower()}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if allowed_hosts is not None:
            name = _hostname(request.host)
            if name not in allowed_hosts and not is_loopback(name):
                raise ApiError(403, "forbidden_host",
                               f"this server answers only to loopback host names, not {name!r}; start it "
                               "with --token to use it under another name")
        navigation = (request.method in ("GET", "HEAD") and request.headers.get("Sec-Fetch-Mode") == "navigate"
                      and not _is_api(request.path))
        site = request.headers.get("Sec-Fetch-Site", "").lower()
        if site in ("cross-site", "same-site") and not navigation:
            raise ApiError(403, "cross_site", "cross-site requests are refused; use the editor this server serves")
        origin = request.headers.get("Origin")
        if origin is not None and not navigation:
            netloc = _origin_netloc(origin)
            if netloc is None or not _same_host(netloc, request.host):
                raise ApiError(403, "cross_site", f"requests from origin {origin!r} are refused; only the "
                               "server's own origin may call it")
        if config.token and not any(token_matches(t, config.token) for t in _presented(request)):
            raise ApiError(401, "unauthorized", "this server needs its token: send 'Authorization: Bearer TOKEN', "
                           "or open the editor as /?token=TOKEN",
                           headers={"WWW-Authenticate": 'Bearer realm="nodegraph"'})
        return await handler(request)

    return guard


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: headers every answer carries (the editor page sets its own CSP)."""
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    h.setdefault("Content-Security-Policy", _STRICT_CSP)


_INLINE_SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script>", re.S | re.I)
_csp_cache: dict[tuple[str, int, int], list[str]] = {}


def _inline_hashes(path: Path) -> list[str]:
    """``'sha256-…'`` sources of the inline scripts of an HTML file (the editor's import map)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _csp_cache:
        html = path.read_text(encoding="utf-8", errors="replace")
        hashes = []
        for body in _INLINE_SCRIPT.findall(html):
            if body.strip():
                digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
                hashes.append(f"'sha256-{digest}'")
        _csp_cache.clear()
        _csp_cache[key] = hashes
    return _csp_cache[key]


def editor_csp(path: Path, host: str) -> str:
    """The editor page's policy: scripts only from the server itself (plus its import map, by hash).

    No inline scripts, no other origins, no ``eval``, no plugins, no framing. (The canvas library's
    number prompt used ``eval``; the editor replaces it with a parser, web/js/arith.js.)
    """
    scripts = " ".join(["'self'", *_inline_hashes(path)])
    sockets = f" ws://{host} wss://{host}" if re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", host) else ""
    return ("default-src 'self'; "
            f"script-src {scripts}; "
            "style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; "
            "font-src 'self' data:; "
            f"connect-src 'self'{sockets}; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
