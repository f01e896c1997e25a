"""Static files: the editor (``web/``) at ``/`` and the packs' front-end folders at ``/extensions/<pack>/``.

Names are confined like every other file name (:func:`.files.confined`); of ``web/node_modules``
only the editor's canvas library (``@comfyorg/litegraph``) is served. HTML pages get the editor's
Content-Security-Policy; ``node_modules`` (pinned versions) may be cached for a day, everything else
is revalidated on each load (``Last-Modified`` / ``If-Modified-Since`` answer 304).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from ..errors import UnsafePath
from ..paths import safe_join
from ..registry import Registry
from .errors import ApiError
from .files import confined
from .keys import CONFIG, ENGINE
from .security import TOKEN_COOKIE, editor_csp, token_matches

__all__ = ["editor_file", "extension_file", "extension_scripts"]

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".json": "application/json", ".map": "application/json", ".svg": "image/svg+xml",
          ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
          ".ico": "image/x-icon", ".woff2": "font/woff2", ".woff": "font/woff", ".txt": "text/plain; charset=utf-8"}
_ALLOWED_MODULES = "node_modules/@comfyorg/litegraph/"


def _file_response(request: web.Request, path: Path, cache: str) -> web.FileResponse:
    headers = {"Cache-Control": cache}
    ctype = _TYPES.get(path.suffix.lower())
    if ctype:
        headers["Content-Type"] = ctype
    if path.suffix.lower() == ".html":
        headers["Content-Security-Policy"] = editor_csp(path, request.host)
    return web.FileResponse(path, headers=headers)


def _not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"there is no {what}")


async def editor_file(request: web.Request) -> web.StreamResponse:
    """``GET /`` and ``GET /<path>``: the editor's files. ``/?token=T`` also sets the token cookie."""
    tail = request.match_info.get("tail", "")
    if tail.startswith(("api/", "ws/")) or tail in ("api", "ws"):
        raise _not_found(f"route {request.path}")
    web_dir = request.app[CONFIG].web_dir
    name = tail or "index.html"
    if name.startswith("node_modules/") and not name.startswith(_ALLOWED_MODULES):
        raise _not_found(f"file {tail!r}")
    path = confined(web_dir, name)
    if path.is_dir():
        path = confined(web_dir, name.rstrip("/") + "/index.html")
    if not path.is_file():
        if not tail and not web_dir.is_dir():
            raise ApiError(404, "not_found", f"the editor is not installed: {web_dir} is missing (set "
                           "NODEGRAPH_WEB_DIR); the API is under /api")
        raise _not_found(f"file {tail!r}")
    cache = "private, max-age=86400" if name.startswith("node_modules/") else "no-cache"
    response = _file_response(request, path, cache)
    token = request.app[CONFIG].token
    if token and path.suffix == ".html" and token_matches(request.query.get("token"), token):
        # Lets the page's own module imports (which carry no header) authenticate.
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


async def extension_file(request: web.Request) -> web.StreamResponse:
    """``GET /extensions/<pack>/<path>``: a file of a pack's ``web/`` folder."""
    pack = request.app[ENGINE].registry.packs.get(request.match_info["pack"])
    if pack is None or pack.web_dir is None:
        raise _not_found(f"front-end folder for pack {request.match_info['pack']!r}")
    path = confined(pack.web_dir, request.match_info["tail"])
    if not path.is_file():
        raise _not_found(f"file {request.match_info['tail']!r} in pack {pack.name!r}")
    return _file_response(request, path, "no-cache")


def extension_scripts(registry: Registry) -> list[str]:
    """URLs of every ``.js`` file of the packs' ``web/`` folders (hidden names and symlinks out skipped)."""
    urls: list[str] = []
    for pack in registry.packs.values():
        if pack.web_dir is None or not pack.web_dir.is_dir():
            continue
        root = Path(os.path.realpath(pack.web_dir))
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "node_modules")
            for fn in sorted(filenames):
                if fn.startswith(".") or not fn.endswith((".js", ".mjs")):
                    continue
                rel = (Path(dirpath) / fn).relative_to(root).as_posix()
                try:
                    safe_join(root, rel)
                except UnsafePath:
                    continue
                urls.append(f"/extensions/{quote(pack.name)}/{quote(rel)}")
    return urls
