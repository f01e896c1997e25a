"""Files the API names: confinement, image checks by decoding, upload names, saved-workflow names.

Every name a client sends goes through :func:`nodegraph.safe_join` (``..``, absolute paths,
backslashes, NUL bytes and symlinks out of the folder are refused); hidden names (a part starting
with ``.``) are refused too. Whether a file is an image is decided by decoding it with Pillow,
restricted to a few formats (never by its name), and the content type served comes from that.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from pathlib import Path
from urllib.parse import unquote

from ..errors import UnsafePath
from ..paths import list_files, safe_join
from .errors import ApiError

__all__ = [
    "IMAGE_TYPES",
    "check_image",
    "confined",
    "image_content_type",
    "list_images",
    "store_upload",
    "upload_name",
    "workflow_path",
]

#: Pillow format -> (content type, file extensions). Only these are accepted and served.
IMAGE_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "PNG": ("image/png", (".png",)),
    "JPEG": ("image/jpeg", (".jpg", ".jpeg")),
    "WEBP": ("image/webp", (".webp",)),
    "BMP": ("image/bmp", (".bmp",)),
}
_IMAGE_EXTS = tuple(ext for _, exts in IMAGE_TYPES.values() for ext in exts)


def confined(base: Path, name: str) -> Path:
    """``safe_join(base, name)`` that also refuses hidden parts; a 400 ``unsafe_path`` otherwise."""
    try:
        return safe_join(base, name, hidden=False)
    except UnsafePath as exc:
        raise ApiError(400, "unsafe_path", str(exc)) from None


def check_image(data: bytes, max_pixels: int) -> str:
    """Decode ``data`` completely; returns its Pillow format or raises a 415/413 :class:`ApiError`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=list(IMAGE_TYPES)) as img:
            fmt = img.format or ""
            width, height = img.size
            if width * height > max_pixels:
                raise ApiError(413, "payload_too_large", f"the image is {width}x{height} pixels; the limit is "
                               f"{max_pixels} pixels")
            img.load()  # a full decode: truncated or corrupt data fails here
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ApiError(415, "unsupported_media_type", f"the upload is not a readable PNG, JPEG, WebP or BMP "
                       f"image ({type(exc).__name__}: {exc})") from None
    if fmt not in IMAGE_TYPES:
        raise ApiError(415, "unsupported_media_type", f"images of format {fmt or 'unknown'} are not accepted; "
                       "upload PNG, JPEG, WebP or BMP")
    return fmt


def image_content_type(path: Path) -> str | None:
    """The content type of an image file, from its decoded header (``None`` if it is not one we serve)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=list(IMAGE_TYPES)) as img:
            fmt = img.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    return IMAGE_TYPES[fmt][0] if fmt in IMAGE_TYPES else None


def upload_name(filename: str | None, fmt: str) -> str:
    """A safe file name for an upload: the client's base name, cleaned, with an extension of its format."""
    # Some clients percent-encode the name in Content-Disposition: decode once, then keep the base name.
    base = re.split(r"[/\\]", unquote(filename or ""))[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    stem, ext = os.path.splitext(base)
    stem = re.sub(r"[^\w\-. ()]", "_", stem).strip(" .")[:100] or "upload"
    exts = IMAGE_TYPES[fmt][1]
    ext = ext.lower() if ext.lower() in exts else exts[0]
    return stem + ext


def store_upload(folder: Path, name: str, data: bytes, *, overwrite: bool) -> str:
    """Write ``data`` as ``name`` in ``folder`` atomically; without ``overwrite`` pick a free name.

    Returns the name used. Never follows a symlink out of ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tmp = confined(folder, f"upload-{uuid.uuid4().hex}.part")
    stem, ext = os.path.splitext(name)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        for i in range(1000):
            candidate = name if i == 0 else f"{stem} ({i}){ext}"
            target = confined(folder, candidate)
            if overwrite:
                if target.is_dir():
                    raise ApiError(409, "conflict", f"{candidate!r} is a folder")
                os.replace(tmp, target)
                return candidate
            try:
                os.link(tmp, target)  # fails if the name exists: no race with another upload
            except FileExistsError:
                continue
            return candidate
        raise ApiError(409, "conflict", f"too many files named like {name!r}")
    finally:
        if tmp.exists():
            tmp.unlink()


def list_images(folder: Path, limit: int = 10_000) -> list[str]:
    """Image files under ``folder`` (by extension), ``/``-separated, hidden names and symlinks out skipped."""
    return list_files(folder, _IMAGE_EXTS, limit)


_WORKFLOW_NAME = re.compile(r"^[^/\\\x00-\x1f\x7f.][^/\\\x00-\x1f\x7f]{0,99}$")


def workflow_path(folder: Path, name: str) -> Path:
    """The file of the saved workflow ``name`` (one path component, no leading dot, ≤ 100 characters)."""
    if not _WORKFLOW_NAME.match(name) or name != name.strip():
        raise ApiError(400, "unsafe_path", f"workflow name {name!r}: use up to 100 characters without '/', "
                       "'\\', control characters, a leading '.' or surrounding spaces")
    return confined(folder, name + ".json")
